"""What every collector shares: the protocol, the monitored parameters, the loop's state.

A collector measures one statistic family. Its life, driven by the monitor:

- ``arm(due)`` after every ``Monitor.step()`` call: register the forward/backward hooks
  the *next* step needs (``due``: that step is on the collector's period), drop them
  otherwise;
- ``begin()`` at every call, ``collect(ctx)`` at every recorded call: put small device
  tensors in its outbox with :meth:`Collector.emit` (never read them: no host sync);
- ``before_optimizer_step()`` / ``after_optimizer_step(closure_record)``: the optimizer's
  step hooks, for what only exists around ``optimizer.step()``;
- ``finish(batch, store)`` at each sync: the monitor has moved every outbox to the host in
  one transfer; the collector writes its columns into the :class:`Store`.

Collectors compose like optax transforms: the monitor is a list of them, each with its own
period (``every``, in recorded steps; None: off) and a documented cost.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch

from gradwatch.errors import ConfigError
from gradwatch.monitor import distributed

if TYPE_CHECKING:
    from gradwatch.monitor.config import Layer
    from gradwatch.monitor.store import Store

__all__ = ["Accumulation", "Batch", "Collector", "Emitted", "Loop", "Params", "Shadows", "StepContext", "loss_tensor"]

HookT = TypeVar("HookT", bound=Callable[..., Any])
Fields = dict[str, torch.Tensor]
HostFields = dict[str, npt.NDArray[np.float64]]
Emitted = list[tuple[int, HostFields]]
Batch = dict[str, Emitted]  # collector name -> [(step, {field: host array})], in emission order


@dataclass
class Loop:
    """Where the training loop is: shared by the monitor and the collectors that need it.

    ``optimizer_first`` says whether the user calls ``optimizer.step()`` before
    ``mon.step()`` (decided at the first optimizer step); ``closure_record`` is a record
    made inside ``optimizer.step`` (closure loops such as Lightning's).
    """

    every: int = 1
    calls: int = 0
    opt_steps: int = 0
    opt_steps_at_record: int = 0
    optimizer_first: bool | None = None
    last_record: int | None = None
    last_call_recorded: bool = False
    in_opt_step: bool = False
    closure_record: int | None = None

    def is_due(self, call: int, period: int | None) -> bool:
        """Whether call number ``call`` is recorded and on a collector's ``period``."""
        return period is not None and call % self.every == 0 and (call // self.every) % period == 0

    def stepped_since_record(self) -> bool:
        """Whether an optimizer step ran since the last record."""
        return self.opt_steps != self.opt_steps_at_record

    def repeated_call(self) -> bool:
        """Whether ``mon.step()`` is called again with no optimizer step since the last record."""
        return self.optimizer_first is False and self.last_record is not None and not self.stepped_since_record()


class Accumulation:
    """Gradient accumulation with ``mon.step()`` after every micro-batch: record every k-th call.

    Args:
        k: micro-batches per optimizer step.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._calls = 0
        self._losses: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor | None) -> tuple[bool, torch.Tensor | None]:
        """Count one micro-batch; at the k-th: (True, mean of the losses passed, or None)."""
        self._calls += 1
        if loss is not None:
            self._losses.append(loss.double())
        if self._calls < self.k:
            return False, None  # a partial gradient: the record comes with the last micro-batch
        losses, self._losses, self._calls = self._losses, [], 0
        return True, torch.cat([t.to(losses[0].device) for t in losses]).mean() if losses else None


def loss_tensor(loss: torch.Tensor | float | None, what: str = "loss") -> torch.Tensor | None:
    """The loss as a 1-element tensor, left where it is (no host sync), or None.

    Raises:
        ConfigError: not a real number or a one-element real tensor (a batch of per-sample
            losses must be reduced first: which reduction is the user's to say).
    """
    if loss is None:
        return None
    if torch.is_tensor(loss):
        if loss.numel() != 1 or loss.is_complex() or loss.dtype == torch.bool:
            raise ConfigError(
                f"The '{what}' parameter of Monitor.step must be a number or a one-element real tensor. "
                f"Got a {loss.dtype} tensor of shape {tuple(loss.shape)}: reduce it first (e.g. loss.mean())."
            )
        return loss.detach().reshape(1)
    if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
        raise ConfigError(
            f"The '{what}' parameter of Monitor.step must be a number or a one-element real tensor. "
            f"Got {type(loss).__name__}."
        )
    return torch.tensor([float(loss)], dtype=torch.float64)  # a Python float is a double: keep it exact


@dataclass
class StepContext:
    """What a recorded ``Monitor.step()`` call hands to the collectors."""

    step: int
    loss: torch.Tensor | None
    inv_scale: torch.Tensor | None  # 1/scale while AMP gradients are still scaled, else None


class Params:
    """The monitored parameters, their layers, and per-parameter L2 norms on the device.

    Parameters are contiguous per layer (``starts`` are the first index of each layer),
    in the monitor's layer order.
    """

    def __init__(self, layers: Sequence[Layer], modules: dict[str, torch.nn.Module]) -> None:
        self.tensors: list[torch.Tensor] = []
        self.names: list[str] = []
        owner: list[int] = []
        for i, layer in enumerate(layers):
            for pname, p in modules[layer.name].named_parameters(recurse=False):
                if pname in layer.parameters and p.numel() > 0:
                    self.tensors.append(p)
                    self.names.append(f"{layer.name}.{pname}" if layer.name else pname)
                    owner.append(i)
        self.layers = list(layers)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.starts = np.searchsorted(self.owner, np.arange(len(layers)))
        self.sharded = (
            distributed.ShardedNorms(self.tensors) if any(distributed.is_dtensor(p) for p in self.tensors) else None
        )
        self.device = distributed.local(self.tensors[0]).device
        dtype = self.tensors[0].dtype
        self.uniform = all(p.device == self.device and p.dtype == dtype for p in self.tensors)
        self.half = any(p.dtype in (torch.float16, torch.bfloat16) for p in self.tensors)
        self.zero = torch.zeros((), dtype=dtype, device=self.device)
        self.depth_order: npt.NDArray[np.int64] = np.arange(len(layers))

    def __len__(self) -> int:
        return len(self.tensors)

    def grads(self) -> list[torch.Tensor | None]:
        """The current ``.grad`` of every parameter."""
        return [p.grad for p in self.tensors]

    def locals(self, tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        """This rank's part of each tensor, a zero scalar for a missing one."""
        if self.sharded is None:  # the common case: no per-tensor DTensor check
            return [self.zero if t is None else t for t in tensors]
        return [self.zero if t is None else distributed.local(t) for t in tensors]

    def stack(self, scalars: Sequence[torch.Tensor]) -> torch.Tensor:
        """One device tensor of per-parameter scalars."""
        if self.uniform:
            return torch.stack(list(scalars))
        return torch.stack([t.to(self.device, torch.float32) for t in scalars])

    def norms(self, local: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-tensor L2 norms (``torch._foreach_norm``), accumulated in float32 for 16-bit tensors.

        A float16 norm overflows to Inf above 65504 while every element is finite.
        """
        if self.half:
            return list(torch._foreach_norm(local, dtype=torch.float32))
        return list(torch._foreach_norm(local))

    def l2(self, tensors: Sequence[torch.Tensor | None], inv_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Per-parameter L2 norms (global under sharding, unscaled under AMP): one pass, shape (P,)."""
        with torch.no_grad():
            row = self.stack(self.norms(self.locals(tensors)))
            if self.sharded is not None:
                row = self.sharded.l2(row)
            return unscaled(row, inv_scale)

    def per_layer_l2(self, per_param: np.ndarray) -> np.ndarray:
        """Per-layer L2 norms from per-parameter ones, shape (..., P) -> (..., L), depth order.

        Each layer's run of parameters is summed (a one-hot matmul would spread an Inf of one
        layer as NaN, inf · 0, into every other layer).
        """
        with np.errstate(invalid="ignore", over="ignore"):
            out = np.sqrt(np.add.reduceat(per_param * per_param, self.starts, axis=-1))
        return out[..., self.depth_order]

    def per_layer_max(self, per_param: np.ndarray) -> np.ndarray:
        """Per-layer maxima from per-parameter ones (NaN propagates), depth order."""
        return np.maximum.reduceat(per_param, self.starts, axis=-1)[..., self.depth_order]


def eager(hook: HookT) -> HookT:
    """``hook`` run eagerly under ``torch.compile`` (a graph break where it runs).

    Traced, a hook's side effects on the collectors' buffers would be lost.
    """
    disable = cast(Callable[[HookT], HookT], torch.compiler.disable)  # torch leaves it unannotated
    return disable(hook)


def unscaled(row: torch.Tensor, inv_scale: torch.Tensor | None) -> torch.Tensor:
    """``row`` times 1/scale (in float64), or ``row`` itself without AMP scaling."""
    return row if inv_scale is None else (row.double() * inv_scale).to(row.dtype)


def global_l2(per_param: np.ndarray) -> np.ndarray:
    """The L2 norm over all parameters, from per-parameter norms (last axis)."""
    with np.errstate(invalid="ignore", over="ignore"):
        norm: np.ndarray = np.sqrt(np.sum(per_param * per_param, axis=-1))
    return norm


class Shadows:
    """Methods of the user's objects (optimizer, GradScaler) wrapped by instance attributes.

    ``add(obj, "zero_grad", before)`` makes ``obj.zero_grad(...)`` run ``before(...)`` with the
    same arguments, then the object's own method. :meth:`remove` deletes the instance
    attributes, so the class's methods show through again (one that someone else replaced
    since is left alone).
    """

    def __init__(self) -> None:
        self._items: list[tuple[object, str, Callable[..., Any]]] = []

    def add(self, obj: object, attr: str, before: Callable[..., None]) -> None:
        """Run ``before`` ahead of every call of ``obj.<attr>``."""
        original = getattr(obj, attr)

        def shadow(*args: Any, **kwargs: Any) -> Any:
            before(*args, **kwargs)
            return original(*args, **kwargs)

        setattr(obj, attr, shadow)
        self._items.append((obj, attr, shadow))

    def remove(self) -> None:
        """Undo every :meth:`add` (idempotent)."""
        for obj, attr, fn in self._items:
            if vars(obj).get(attr) is fn:
                delattr(obj, attr)
        self._items = []


class Collector:
    """Base class: every method is a no-op, so a collector writes only what it needs.

    Attributes:
        name: key of its entries in a sync :data:`Batch`.
        every: its period, in recorded steps (1: every recorded step; None: off).
    """

    name = "collector"
    every: int | None = 1

    def __init__(self) -> None:
        self.outbox: list[tuple[int, Fields]] = []

    def emit(self, step: int, **fields: torch.Tensor) -> None:
        """Queue device tensors for the record of ``step``; they reach the host at the next sync."""
        self.outbox.append((step, fields))

    def take(self) -> list[tuple[int, Fields]]:
        """Return and forget the queued tensors."""
        out, self.outbox = self.outbox, []
        return out

    def arm(self, due: bool) -> None:
        """Register (or drop) the hooks the next step needs; ``due``: that step is on this period."""

    def begin(self) -> None:
        """Called at every ``Monitor.step()`` call, recorded or not, before recording."""

    def collect(self, ctx: StepContext) -> None:
        """Measure what this step needs (device tensors only; :meth:`emit` them)."""

    def end(self) -> None:
        """Called at the end of every ``Monitor.step()`` call."""

    def before_optimizer_step(self) -> None:
        """The optimizer's step pre-hook."""

    def after_optimizer_step(self, closure_record: int | None) -> None:
        """The optimizer's step post-hook; ``closure_record``: a record made inside that step."""

    def finish(self, batch: Batch, store: Store) -> None:
        """Write this collector's host arrays (``batch[self.name]``) into the store."""

    def close(self) -> None:
        """Remove every hook (idempotent)."""
