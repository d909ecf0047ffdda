"""Locating the first NaN/Inf: forward or backward, which module, which tensor.

By default the monitor pays nothing extra for this: at each sync it reads the loss and the
per-parameter gradient maxima it moves to the host anyway. A non-finite loss means the
forward pass made the value (``origin="forward"``); a finite loss with non-finite
gradients means the backward pass did (``origin="backward"``), and since a backward NaN
reaches every layer *before* it but none after it, the deepest layer whose gradient is
non-finite brackets where it arose. :class:`NonFiniteTracer` adds hooks on every leaf
module that check, on the device and without a host sync, whether each forward output,
each gradient w.r.t. a module's output and each gradient w.r.t. a module's input is
finite; the flags are kept in call order and read at the monitor's next sync, so the
earliest offending tensor of the earliest step is found. The monitor arms it for good
with ``trace_nonfinite=True``, and by default (``"auto"``) only once a non-finite value
has been seen, so that the next occurrence is located precisely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from gradwatch.errors import NonFiniteError

__all__ = ["ORIGINS", "TENSOR_KINDS", "NonFinite", "NonFiniteError", "NonFiniteTracer"]

TENSOR_KINDS = (
    "loss",
    "forward output",
    "gradient w.r.t. output",
    "gradient w.r.t. input",
    "parameter gradient",
    "parameter",
)
ORIGINS = ("forward", "backward")
_ORIGIN_OF_KIND = {
    "loss": "forward",
    "forward output": "forward",
    "gradient w.r.t. output": "backward",
    "gradient w.r.t. input": "backward",
    "parameter gradient": "backward",
}


@dataclass(frozen=True)
class NonFinite:
    """Where the first NaN/Inf appeared.

    Attributes:
        step: the optimizer step (0-based count of ``Monitor.step`` calls).
        module: qualified name of the module ("" is the model itself, e.g. for the loss).
        tensor: "loss", "forward output", "gradient w.r.t. output", "gradient w.r.t. input"
            or "parameter gradient".
        parameter: the parameter's qualified name, for parameter gradients; for a backward
            origin read from the gradient norms, the deepest non-finite parameter gradient
            (when ``module`` is then the one module of the user's own that ran right after its
            layer, ``tensor`` is "gradient w.r.t. input": inferred, not traced).
        value: "nan", "inf" or "nan/inf" — what was found.
        origin: "forward" (the loss itself was non-finite, or a traced forward output),
            "backward" (finite loss, non-finite gradients; or a traced gradient), or None
            (unknown: no loss was passed to ``step()`` and every layer's gradient was
            non-finite).
        traced_step: when ``module``/``tensor`` come from the tracing hooks armed after
            ``step`` (a later occurrence), the step they were traced at; else None.
    """

    step: int
    module: str
    tensor: str
    parameter: str | None = None
    value: str = "nan/inf"
    origin: str | None = None
    traced_step: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record's ``nonfinite`` object."""
        return {
            "step": self.step,
            "module": self.module,
            "tensor": self.tensor,
            "parameter": self.parameter,
            "value": self.value,
            "origin": self.origin,
            "traced_step": self.traced_step,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> NonFinite:
        """Read a record's ``nonfinite`` object back (logs written before ``origin`` existed too)."""
        traced = obj.get("traced_step")
        return cls(
            step=int(obj["step"]),
            module=str(obj.get("module", "")),
            tensor=str(obj.get("tensor", "parameter gradient")),
            parameter=obj.get("parameter"),
            value=str(obj.get("value", "nan/inf")),
            origin=obj.get("origin"),
            traced_step=None if traced is None else int(traced),
        )

    @staticmethod
    def origin_of(tensor: str) -> str | None:
        """The pass that makes a tensor kind: "forward", "backward" (None for "parameter")."""
        return _ORIGIN_OF_KIND.get(tensor)

    def __str__(self) -> str:
        inferred = self.parameter is not None and self.tensor != "parameter gradient"
        where = f"{self.tensor} of {self.parameter!r}" if self.parameter and not inferred else self.tensor
        if inferred:
            where += (
                f" (inferred: {self.parameter!r} is the deepest parameter gradient that is non-finite, and "
                f"{self.module!r} the only module of your own that ran right after its layer)"
            )
        if self.traced_step is not None and self.traced_step != self.step:
            where += f" (located when it recurred at step {self.traced_step})"
        if self.origin == "forward":
            how = (
                "made in the forward pass"
                if self.tensor != "loss"
                else "the loss was already non-finite: made in the forward pass "
                "(Monitor(trace_nonfinite=True) names the module even when it does not recur)"
            )
        elif self.origin == "backward":
            how = "made in the backward pass (the loss was finite)"
            if self.tensor == "parameter gradient" and self.traced_step is None:
                how += " at or after this layer: every layer after it has a finite gradient"
        else:
            how = "pass the loss to mon.step(loss) to tell the forward from the backward pass"
        return f"first {self.value} at step {self.step} in module {self.module or '(model)'!r}: {where} — {how}"


def register_tensor_hook(t: torch.Tensor, hook: Callable[[torch.Tensor], None]) -> None:
    """``t.register_hook(hook)`` (torch leaves it unannotated)."""
    cast(Callable[[Callable[[torch.Tensor], None]], object], t.register_hook)(hook)


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, PackedSequence):
        return [x.data]
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    return []


def _finiteness(ts: list[torch.Tensor]) -> torch.Tensor:
    """A 0-d float tensor that is finite iff every entry of every tensor is.

    max − min is NaN when any entry is NaN and infinite when any is ±Inf; ``amax``/``amin``
    are plain reductions, several times cheaper on CPU than ``isfinite(t).all()``, which
    builds a boolean mask. (A finite range above ~3e38 would also read as infinite.)
    """
    spans = [
        (t.amax() - t.amin()).float() for t in ts if (torch.is_floating_point(t) or torch.is_complex(t)) and t.numel()
    ]
    if not spans:
        return torch.zeros(())
    return spans[0] if len(spans) == 1 else torch.stack([v.to(spans[0].device) for v in spans]).sum()


class NonFiniteTracer:
    """Hooks that record, in call order, whether tensors flowing through modules are finite.

    Args:
        modules: (qualified name, module) pairs to watch (the monitor passes leaf modules).
        current_step: returns the step the current forward/backward belongs to.
        check_params: also flag, before each forward, whether the module's own parameters
            are finite ("parameter"): after a non-finite update every later forward is
            non-finite because of the weights, which is then not where a NaN came from.
    """

    def __init__(
        self, modules: list[tuple[str, nn.Module]], current_step: Callable[[], int], *, check_params: bool = False
    ) -> None:
        self._modules = modules
        self._current_step = current_step
        self.check_params = check_params
        self._handles: list[RemovableHandle] = []
        self.flags: list[tuple[int, int, str, str, torch.Tensor]] = []
        self._seq = 0

    def _add(self, name: str, kind: str, tensors: list[torch.Tensor]) -> None:
        if not tensors:
            return
        self.flags.append((self._current_step(), self._seq, name, kind, _finiteness(tensors)))
        self._seq += 1

    def attach(self) -> None:
        """Register the hooks (idempotent)."""
        if self._handles:
            return
        for name, module in self._modules:
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._fwd_hook(name)))

    def detach(self) -> None:
        """Remove every hook."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def _pre_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not torch.is_grad_enabled():
                return
            if self.check_params:
                self._add(name, "parameter", [p.detach() for p in module.parameters(recurse=False)])
            for t in _tensors(args):
                if t.requires_grad:
                    register_tensor_hook(t, lambda g: self._add(name, "gradient w.r.t. input", [g]))

        return hook

    def _fwd_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            outs = _tensors(output)
            self._add(name, "forward output", [t.detach() for t in outs])
            if not torch.is_grad_enabled():
                return
            for t in outs:
                if t.requires_grad:
                    register_tensor_hook(t, lambda g: self._add(name, "gradient w.r.t. output", [g]))

        return hook

    def take(self) -> list[tuple[int, int, str, str, torch.Tensor]]:
        """Return and forget the flags recorded so far."""
        out, self.flags = self.flags, []
        return out
