"""The Monitor: gradient flow of any PyTorch model, every step, at almost no cost.

Usage::

    mon = gw.Monitor(model, opt, log="run.jsonl")
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        mon.step(loss)               # one cheap record, on the device
        opt.step(); opt.zero_grad()
    print(mon.verdict())

How it stays cheap: per recorded step it reads every parameter's gradient with a handful
of fused reductions (``torch._foreach_norm`` for L2 and max norms, one ``index_add`` to
group parameters into layers), keeps the results on the device, and moves everything to
the host in one transfer every ``sync_every`` records. Nothing in ``step`` calls
``.item()`` or branches on a tensor value, unless ``on_nonfinite`` is "warn" or "raise"
(which need one boolean per step). Activation statistics and time profiles are taken
only on their own period, through hooks that exist only for those steps.

What it never does: change training. It reads gradients and activations, never writes
them; losses and parameters are bitwise identical with and without it (tested). For the
time profile it may make the model's *input* tensor a leaf that requires grad (same
values), so that ∂L/∂u_t is computed by the same backward pass.
"""

from __future__ import annotations

import fnmatch
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from gradwatch import _checks
from gradwatch.errors import ConfigError, GradwatchError
from gradwatch.monitor import timeline
from gradwatch.monitor.history import History, NonFinite, to_json_number
from gradwatch.monitor.nonfinite import NonFiniteError, NonFiniteTracer
from gradwatch.monitor.sinks import JSONL, Sink
from gradwatch.monitor.verdict import Thresholds, Verdict, verdict

__all__ = ["GradwatchWarning", "Layer", "Monitor", "NonFiniteError"]

ON_NONFINITE = ("raise", "record", "warn")

_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid)
_RECTIFIERS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
)


class GradwatchWarning(UserWarning):
    """A recoverable problem the monitor noticed (it keeps going)."""


@dataclass(frozen=True)
class Layer:
    """A monitored layer: one module and the trainable parameters it owns directly."""

    name: str
    module_type: str
    parameters: tuple[str, ...]
    numel: int


@dataclass
class _Pending:
    step: int
    row: torch.Tensor
    has_loss: bool = False
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    profile: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


def _activation_kind(module: nn.Module) -> str | None:
    if isinstance(module, _SATURATING):
        return "saturation"
    if isinstance(module, _RECTIFIERS):
        return "dead"
    if isinstance(module, nn.RNN):
        return "saturation" if module.nonlinearity == "tanh" else "dead"
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return "none"
    return None


def _activation_stats(module: nn.Module, kind: str, y: torch.Tensor) -> torch.Tensor:
    """[saturated-or-dead fraction, std] of an activation output, on its device."""
    y = y.detach().float()
    if kind == "saturation":
        if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
            # σ' = y(1 − y), max 1/4; saturated where below 1 % of that
            frac = (y * (1 - y) < 0.0025).float().mean()
        elif isinstance(module, nn.Softsign):
            frac = ((1 - y.abs()) ** 2 < 0.01).float().mean()
        elif isinstance(module, nn.Hardtanh):
            frac = ((y <= module.min_val) | (y >= module.max_val)).float().mean()
        else:  # tanh and tanh RNNs: 1 − y², max 1
            frac = (1 - y * y < 0.01).float().mean()
    elif kind == "dead":
        batch_dim = 1 if isinstance(module, nn.RNNBase) and not module.batch_first and y.dim() == 3 else 0
        if y.dim() <= 1:
            frac = (y <= 0).float().mean()
        else:
            units = y.movedim(batch_dim, 0).reshape(y.shape[batch_dim], -1)
            frac = (units <= 0).all(dim=0).float().mean()
    else:
        frac = torch.full((), math.nan, device=y.device)
    std = y.std() if y.numel() > 1 else torch.zeros((), device=y.device)
    return torch.stack([frac, std])


class Monitor:
    """Record per-layer gradient flow of a model at every optimizer step.

    Args:
        model: the ``nn.Module`` being trained.
        optimizer: when given, its steps are hooked to measure the update/weight ratio
            ‖Δθ‖/‖θ‖ of each layer.
        every: record every ``every``-th call of :meth:`step` (≥ 1).
        sync_every: move records to the host (and to the sinks) every ``sync_every``
            recorded steps (≥ 1). Higher is cheaper on GPUs; reading ``history`` or
            ``verdict()`` syncs at once.
        sinks: where records go (see :mod:`gradwatch.monitor.sinks`).
        log: shorthand for ``sinks=[JSONL(log)]`` (appended to any ``sinks``).
        include: glob pattern(s) on layer names (``"encoder.*"``) or a compiled regex;
            only matching layers are monitored.
        exclude: glob pattern(s) or regex of layers to leave out.
        module_types: only monitor layers that are instances of these types.
        activations_every: take activation statistics (saturated/dead fraction, std) of
            activation modules on recorded steps that are multiples of this (≥ 1); None: off.
        time_profile_every: take ‖∂L/∂u_t‖ on recorded steps that are multiples of this;
            None: off. The profiled input is the first positional argument of the model
            (or of the submodule named by ``profile_module``).
        time_dim, batch_dim: where time and batch are in that input.
        profile_module: qualified name of the submodule whose input is profiled.
        on_nonfinite: "record" (default: note the first NaN/Inf, found at the next sync),
            "warn" (also warn at once) or "raise" (raise NonFiniteError at once); the
            latter two check one boolean per step.
        trace_nonfinite: also check forward outputs and gradients w.r.t. module outputs
            and inputs, to find where a NaN/Inf came from (costs hooks on every leaf module).
        thresholds: the verdict's thresholds.

    Raises:
        ConfigError: no parameter requires grad, a filter matches nothing, or a
            parameter is out of range.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        every: int = 1,
        sync_every: int = 50,
        sinks: Sequence[Sink] | None = None,
        log: str | Path | None = None,
        include: str | Sequence[str] | re.Pattern[str] | None = None,
        exclude: str | Sequence[str] | re.Pattern[str] | None = None,
        module_types: type | tuple[type, ...] | None = None,
        activations_every: int | None = 10,
        time_profile_every: int | None = None,
        time_dim: int = 1,
        batch_dim: int = 0,
        profile_module: str | None = None,
        on_nonfinite: str = "record",
        trace_nonfinite: bool = False,
        thresholds: Thresholds | None = None,
    ) -> None:
        owner = "Monitor"
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"The 'model' parameter of Monitor must be a torch.nn.Module. Got {type(model).__name__}."
            )
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"The 'optimizer' parameter of Monitor must be a torch.optim.Optimizer or None. "
                f"Got {type(optimizer).__name__}."
            )
        self.every = _checks.positive_int(every, "every", owner)
        self.sync_every = _checks.positive_int(sync_every, "sync_every", owner)
        self.activations_every = (
            None if activations_every is None else _checks.positive_int(activations_every, "activations_every", owner)
        )
        self.time_profile_every = (
            None
            if time_profile_every is None
            else _checks.positive_int(time_profile_every, "time_profile_every", owner)
        )
        self.on_nonfinite = _checks.choice(on_nonfinite, "on_nonfinite", owner, ON_NONFINITE)
        self.time_dim, self.batch_dim = int(time_dim), int(batch_dim)
        self.thresholds = thresholds or Thresholds()
        self.model = model
        self.optimizer = optimizer

        self.layers = self._select_layers(model, include, exclude, module_types)
        modules = dict(model.named_modules())
        self._layer_modules = {layer.name: modules[layer.name] for layer in self.layers}
        self._params: list[torch.Tensor] = []
        self._param_names: list[str] = []
        owner_of: list[int] = []
        for i, layer in enumerate(self.layers):
            mod = self._layer_modules[layer.name]
            for pname, p in mod.named_parameters(recurse=False):
                if p.requires_grad:
                    self._params.append(p)
                    self._param_names.append(f"{layer.name}.{pname}" if layer.name else pname)
                    owner_of.append(i)
        self._device = self._params[0].device
        self._owner = torch.tensor(owner_of, device=self._device)
        self._n_layers = len(self.layers)
        self._depth_order: list[int] | None = None

        self._sinks: list[Sink] = list(sinks or [])
        if log is not None:
            self._sinks.append(JSONL(log))
        self._calls = 0
        self._closed = False
        self._pending: list[_Pending] = []
        self._updates: dict[int, torch.Tensor] = {}
        self._records: list[dict[str, Any]] = []
        self._written = 0
        self._first_nonfinite: NonFinite | None = None
        self._handles: list[RemovableHandle] = []
        self._act_handles: list[RemovableHandle] = []
        self._act_buffer: dict[str, list[torch.Tensor]] = {}
        self._profile_handle: RemovableHandle | None = None
        self._profile_input: torch.Tensor | PackedSequence | None = None
        self._profile_hidden: list[torch.Tensor] | None = None
        self._hidden_ctx: timeline.collect_hidden | None = None
        self._profile_disabled = False
        self._prev_params: list[torch.Tensor] | None = None
        self._awaiting_update: int | None = None
        self._orphan_update: torch.Tensor | None = None
        self._snapshot_taken = False
        # Whether the user calls optimizer.step() before mon.step() (decided on the first step).
        self._optimizer_first: bool | None = None

        self._activation_modules = [
            (name, m, kind) for name, m in model.named_modules() if (kind := _activation_kind(m)) is not None
        ]
        if profile_module is not None and profile_module not in modules:
            raise ConfigError(
                f"The 'profile_module' parameter of Monitor must name a submodule. Got {profile_module!r}; "
                f"e.g. {', '.join(repr(n) for n in list(modules)[1:6])}."
            )
        self._profile_target = model if profile_module is None else modules[profile_module]

        # Depth order: the order in which layers first run; recorded once, then unhooked.
        self._first_calls: list[str] = []
        for layer in self.layers:
            self._handles.append(
                self._layer_modules[layer.name].register_forward_pre_hook(self._order_hook(layer.name))
            )
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
            self._handles.append(optimizer.register_step_post_hook(self._after_optimizer_step))
        self._tracer: NonFiniteTracer | None = None
        if trace_nonfinite:
            leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
            self._tracer = NonFiniteTracer(leaves, lambda: self._calls)
            self._tracer.attach()
        self._arm(0)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _select_layers(
        model: nn.Module,
        include: str | Sequence[str] | re.Pattern[str] | None,
        exclude: str | Sequence[str] | re.Pattern[str] | None,
        module_types: type | tuple[type, ...] | None,
    ) -> list[Layer]:
        def matcher(spec: Any) -> Any:
            if spec is None:
                return None
            if isinstance(spec, re.Pattern):
                return lambda n: spec.search(n) is not None
            pats = [spec] if isinstance(spec, str) else list(spec)
            return lambda n: any(fnmatch.fnmatchcase(n, p) for p in pats)

        inc, exc = matcher(include), matcher(exclude)
        candidates: list[Layer] = []
        for name, module in model.named_modules():
            params = [(pn, p) for pn, p in module.named_parameters(recurse=False) if p.requires_grad]
            if params:
                candidates.append(
                    Layer(
                        name,
                        type(module).__name__,
                        tuple(pn for pn, _ in params),
                        sum(p.numel() for _, p in params),
                    )
                )
        if not candidates:
            raise ConfigError("The model has no parameters that require grad: there is no gradient to monitor.")
        chosen = [
            c
            for c in candidates
            if (inc is None or inc(c.name))
            and (exc is None or not exc(c.name))
            and (module_types is None or isinstance(dict(model.named_modules())[c.name], module_types))
        ]
        if not chosen:
            names = ", ".join(repr(c.name or "(model)") for c in candidates[:8])
            more = f" and {len(candidates) - 8} more" if len(candidates) > 8 else ""
            raise ConfigError(
                f"No layer matches include={include!r}, exclude={exclude!r}, module_types={module_types!r}. "
                f"Layers with trainable parameters: {names}{more}."
            )
        return chosen

    def _order_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in self._first_calls:
                self._first_calls.append(name)

        return hook

    # ------------------------------------------------------------------ arming per-step hooks
    def _is_due(self, step: int, period: int | None) -> bool:
        return period is not None and step % self.every == 0 and (step // self.every) % period == 0

    def _arm(self, step: int) -> None:
        """Register the hooks needed for the forward/backward that precede ``step()`` number ``step``."""
        if self._is_due(step, self.activations_every) and self._activation_modules:
            for name, m, kind in self._activation_modules:
                self._act_handles.append(m.register_forward_hook(self._activation_hook(name, kind)))
        if self._is_due(step, self.time_profile_every) and not self._profile_disabled:
            self._profile_handle = self._profile_target.register_forward_pre_hook(self._profile_hook)
            self._hidden_ctx = timeline.collect_hidden()
            self._profile_hidden = self._hidden_ctx.__enter__()

    def _disarm(self) -> None:
        for h in self._act_handles:
            h.remove()
        self._act_handles.clear()
        if self._profile_handle is not None:
            self._profile_handle.remove()
            self._profile_handle = None
        if self._hidden_ctx is not None:
            self._hidden_ctx.__exit__(None, None, None)
            self._hidden_ctx = None

    def _activation_hook(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled():
                return  # evaluation passes do not describe training
            y = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(y, PackedSequence):
                y = y.data
            if torch.is_tensor(y) and y.numel() > 0:
                self._act_buffer.setdefault(name, []).append(_activation_stats(module, kind, y))

        return hook

    def _profile_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not torch.is_grad_enabled() or not args:
            return None
        x = args[0]
        data = x.data if isinstance(x, PackedSequence) else x
        if not torch.is_tensor(data) or not torch.is_floating_point(data):
            self._profile_disabled = True
            warnings.warn(
                "Monitor: the time profile needs a floating-point input; the model's first argument is "
                f"{type(data).__name__}{'' if not torch.is_tensor(data) else ' of ' + str(data.dtype)}. "
                "Pass profile_module= the name of the first module that sees float inputs (e.g. after an "
                "embedding). Time profiles are off.",
                GradwatchWarning,
                stacklevel=2,
            )
            return None
        if data.requires_grad:
            # Inside a graph (a submodule's input): keep the graph, just keep the gradient.
            data.retain_grad()
            self._profile_input = x
            return None
        leaf = data.detach().requires_grad_(True)
        new = (
            PackedSequence(leaf, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
            if isinstance(x, PackedSequence)
            else leaf
        )
        self._profile_input = new
        return (new, *args[1:])

    # ------------------------------------------------------------------ optimizer hooks
    def _before_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # Snapshot θ only when this optimizer step belongs to a recorded step: either
        # step() was already called for it, or (optimizer-first loops) it is about to be.
        if self._optimizer_first is None:
            self._optimizer_first = self._calls == 0
        if self._optimizer_first:
            if not self._is_due(self._calls, 1):
                return
        elif self._awaiting_update is None:
            return
        with torch.no_grad():
            if self._prev_params is None:
                self._prev_params = [p.detach().clone() for p in self._params]
            else:
                torch._foreach_copy_(self._prev_params, [p.detach() for p in self._params])
        self._snapshot_taken = True

    def _after_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._snapshot_taken or self._prev_params is None:
            return
        self._snapshot_taken = False
        with torch.no_grad():
            delta = torch._foreach_sub([p.detach() for p in self._params], self._prev_params)
            d = self._per_layer_sq(torch.stack(torch._foreach_norm(delta)).double())
            before = self._per_layer_sq(torch.stack(torch._foreach_norm(self._prev_params)).double())
            ratio = d.sqrt() / before.sqrt()
        if self._awaiting_update is not None:
            self._updates[self._awaiting_update] = ratio
            self._awaiting_update = None
        else:
            self._orphan_update = ratio

    # ------------------------------------------------------------------ the hot path
    def _per_layer_sq(self, norms: torch.Tensor) -> torch.Tensor:
        sq = (norms * norms).to(self._device)
        return torch.zeros(self._n_layers, dtype=sq.dtype, device=self._device).index_add_(0, self._owner, sq)

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Record the current gradients (call after ``backward()``, before or after ``optimizer.step()``).

        Args:
            loss: the step's loss, recorded as is (a tensor stays on the device).

        Raises:
            NonFiniteError: with ``on_nonfinite="raise"``, when a NaN/Inf is found.
            GradwatchError: after ``close()``.
        """
        if self._closed:
            raise GradwatchError("Monitor.step() called after close(): create a new Monitor.")
        s = self._calls
        if self._first_calls and self._depth_order is None:
            self._fix_depth_order()
        if s % self.every != 0:
            self._calls += 1
            self._orphan_update = None
            self._disarm()
            self._arm(self._calls)
            return
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            self._calls += 1
            self._disarm()
            self._arm(self._calls)
            warnings.warn(
                "Monitor.step() found no gradient on any monitored parameter: call loss.backward() "
                "before mon.step() (nothing was recorded for this step).",
                GradwatchWarning,
                stacklevel=2,
            )
            return
        row = self._grad_row(grads, loss)
        pending = _Pending(step=s, row=row, has_loss=loss is not None)
        for name, stats in self._act_buffer.items():
            pending.activations[name] = torch.stack(stats).mean(dim=0) if len(stats) > 1 else stats[0]
        self._act_buffer.clear()
        if self._profile_input is not None:
            self._take_profile(pending)
        self._pending.append(pending)
        if self.optimizer is not None:
            if self._orphan_update is not None:
                self._updates[s] = self._orphan_update
                self._orphan_update = None
            else:
                self._awaiting_update = s
        self._calls += 1
        self._disarm()
        self._arm(self._calls)
        if self.on_nonfinite != "record":
            self._check_now(pending)
        if len(self._pending) >= self.sync_every:
            self._sync()

    def _grad_row(self, grads: list[torch.Tensor | None], loss: torch.Tensor | float | None) -> torch.Tensor:
        """[global ‖g‖, loss, per-layer ‖g‖ (L), max|g| (L), ‖θ‖ (L), per-parameter max|g| (P)], float64."""
        with torch.no_grad():
            present = [i for i, g in enumerate(grads) if g is not None]
            gs = [grads[i] for i in present]
            l2 = torch.zeros(len(self._params), dtype=torch.float64, device=self._device)
            mx = torch.zeros(len(self._params), dtype=torch.float64, device=self._device)
            # One fused reduction per norm kind across all parameters (no per-parameter sync).
            l2_p = torch.stack([t.to(self._device) for t in torch._foreach_norm(gs)]).double()
            mx_p = torch.stack([t.to(self._device) for t in torch._foreach_norm(gs, ord=math.inf)]).double()
            if len(present) == len(self._params):
                l2, mx = l2_p, mx_p
            else:
                idx = torch.tensor(present, device=self._device)
                l2 = l2.index_copy(0, idx, l2_p)
                mx = mx.index_copy(0, idx, mx_p)
            pn = torch.stack([t.to(self._device) for t in torch._foreach_norm(self._params)]).double()
            layer_sq = self._per_layer_sq(l2)
            layer_max = torch.full((self._n_layers,), -math.inf, dtype=torch.float64, device=self._device)
            layer_max = layer_max.scatter_reduce(0, self._owner, mx, "amax", include_self=False)
            global_norm = layer_sq.sum().sqrt().reshape(1)
            if loss is None:
                loss_t = torch.full((1,), math.nan, dtype=torch.float64, device=self._device)
            elif torch.is_tensor(loss):
                loss_t = loss.detach().reshape(-1)[:1].to(self._device, torch.float64)
            else:
                loss_t = torch.tensor([float(loss)], dtype=torch.float64, device=self._device)
            return torch.cat([global_norm, loss_t, layer_sq.sqrt(), layer_max, self._per_layer_sq(pn).sqrt(), mx])

    def _take_profile(self, pending: _Pending) -> None:
        x = self._profile_input
        self._profile_input = None
        data = x.data if isinstance(x, PackedSequence) else x
        g = data.grad
        if g is None:
            return
        grad = (
            PackedSequence(g, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
            if isinstance(x, PackedSequence)
            else g
        )
        with torch.no_grad():
            pending.profile = timeline.input_profile(grad, time_dim=self.time_dim, batch_dim=self.batch_dim).double()
            states = self._profile_hidden or []
            norms = [h.grad.double().norm() if h.grad is not None else torch.zeros((), device=h.device) for h in states]
            if norms:
                pending.hidden = torch.stack([n.to(self._device) for n in norms]).double()
        # Retained gradients would otherwise keep the inputs' graph alive until the next step.
        if data.is_leaf:
            data.grad = None
        self._profile_hidden = None

    def _check_now(self, pending: _Pending) -> None:
        finite = torch.isfinite(pending.row[2:]).all()
        if self._tracer is not None:
            for *_, flag in self._tracer.flags:
                finite = finite & flag.to(finite.device)
        if bool(finite):  # one boolean sync per step: the price of "warn" and "raise"
            return
        self._sync()
        nf = self._first_nonfinite
        message = f"gradwatch: {nf}" if nf is not None else "gradwatch: a NaN/Inf was recorded"
        if self.on_nonfinite == "raise":
            raise NonFiniteError(message)
        warnings.warn(message, GradwatchWarning, stacklevel=3)

    # ------------------------------------------------------------------ syncing
    def _fix_depth_order(self) -> None:
        names = [layer.name for layer in self.layers]
        seen = [names.index(n) for n in self._first_calls]
        self._depth_order = seen + [i for i in range(len(names)) if i not in seen]
        # The order hooks (registered first) have done their job.
        for h in self._handles[: len(self.layers)]:
            h.remove()
        self._handles = self._handles[len(self.layers) :]

    def _sync(self) -> None:
        """Move every pending device tensor to the host in one transfer and build records."""
        if self._depth_order is None:
            self._depth_order = list(range(self._n_layers))
        pending, self._pending = self._pending, []
        updates, self._updates = self._updates, {}
        flags = self._tracer.take() if self._tracer is not None else []
        parts: list[torch.Tensor] = []
        for p in pending:
            parts.append(p.row)
            parts += list(p.activations.values())
            if p.profile is not None:
                parts.append(p.profile)
            if p.hidden is not None:
                parts.append(p.hidden)
        upd_steps = list(updates)
        parts += [updates[s] for s in upd_steps]
        parts += [f[4].reshape(1).to(self._device, torch.float64) for f in flags]
        if not parts:
            return
        flat = torch.cat([t.reshape(-1).to(self._device, torch.float64) for t in parts]).cpu().tolist()
        pos = 0

        def take(n: int) -> list[float]:
            nonlocal pos
            out = flat[pos : pos + n]
            pos += n
            return out

        L, P = self._n_layers, len(self._params)
        new_records = []
        for p in pending:
            row = take(2 + 3 * L + P)
            rec = self._record(p.step, row, p.has_loss)
            if p.activations:
                rec["activations"] = {}
                for name in p.activations:
                    frac, std = take(2)
                    kind = next(k for n, _, k in self._activation_modules if n == name)
                    rec["activations"][name] = {
                        "kind": kind,
                        "fraction": to_json_number(frac),
                        "std": to_json_number(std),
                    }
            if p.profile is not None:
                prof = take(p.profile.numel())
                hid = take(p.hidden.numel()) if p.hidden is not None else None
                rec["time_profile"] = {
                    "input": [to_json_number(v) for v in prof],
                    "hidden": None if hid is None else [to_json_number(v) for v in hid],
                }
            new_records.append(rec)
        # An update belongs to the newest records: those synced before their optimizer step ran.
        by_step = {r["step"]: r for r in self._records[-(len(upd_steps) + 1) :]}
        by_step.update({r["step"]: r for r in new_records})
        for s in upd_steps:
            vals = take(L)
            rec = by_step.get(s)
            if rec is None:
                continue
            for i in self._depth_order:
                rec["layers"][self.layers[i].name]["update_ratio"] = to_json_number(vals[i])
        flag_vals = take(len(flags))
        self._records.extend(new_records)
        self._locate_nonfinite(new_records, flags, flag_vals)
        self._write_sinks(final=False)

    def _record(self, step: int, row: list[float], has_loss: bool) -> dict[str, Any]:
        L = self._n_layers
        gn, lmax, pn = row[2 : 2 + L], row[2 + L : 2 + 2 * L], row[2 + 2 * L : 2 + 3 * L]
        layers = {}
        for i in self._depth_order or range(L):
            layer = self.layers[i]
            layers[layer.name] = {
                "grad_norm": to_json_number(gn[i]),
                "grad_max": to_json_number(lmax[i]),
                "param_norm": to_json_number(pn[i]),
                "update_ratio": None,
                "numel": layer.numel,
            }
        rec: dict[str, Any] = {
            "step": step,
            "global_grad_norm": to_json_number(row[0]),
            "loss": to_json_number(row[1]) if has_loss else None,
            "layers": layers,
        }
        rec["_param_max"] = row[2 + 3 * L :]
        return rec

    def _locate_nonfinite(
        self,
        records: list[dict[str, Any]],
        flags: list[tuple[int, int, str, str, torch.Tensor]],
        values: list[float],
    ) -> None:
        candidates: list[tuple[int, float, NonFinite]] = []
        for (step, seq, name, kind, _), ok in zip(flags, values, strict=True):
            if ok == 0.0:
                candidates.append((step, seq, NonFinite(step, name, kind)))
        for rec in records:
            pmax = rec.pop("_param_max")
            for j, v in enumerate(pmax):
                if not math.isfinite(v):
                    layer = self.layers[int(self._owner[j])].name
                    value = "nan" if math.isnan(v) else "inf"
                    candidates.append(
                        (
                            rec["step"],
                            math.inf,
                            NonFinite(rec["step"], layer, "parameter gradient", self._param_names[j], value),
                        )
                    )
                    break
        if candidates and self._first_nonfinite is None:
            nf = min(candidates, key=lambda c: (c[0], c[1]))[2]
            self._first_nonfinite = nf
            for rec in records:
                if rec["step"] == nf.step:
                    rec["nonfinite"] = nf.to_json()

    def _write_sinks(self, final: bool) -> None:
        if not self._sinks:
            self._written = len(self._records)
            return
        end = len(self._records)
        # The newest record may still be waiting for its optimizer step's update ratio.
        waiting = self._awaiting_update
        if not final and waiting is not None and end > self._written and self._records[-1]["step"] == waiting:
            end -= 1
        batch = self._records[self._written : end]
        if batch:
            for sink in self._sinks:
                sink.write(batch)
        self._written = end

    # ------------------------------------------------------------------ results
    @property
    def history(self) -> History:
        """Everything recorded so far, as numpy arrays (syncs pending records first)."""
        self._sync()
        return History.from_records(self._records)

    @property
    def first_nonfinite(self) -> NonFinite | None:
        """The first NaN/Inf recorded (step, module, tensor), or None (syncs first)."""
        self._sync()
        return self._first_nonfinite

    def verdict(self, thresholds: Thresholds | None = None) -> Verdict:
        """Diagnose the recorded gradient flow: vanishing, exploding, nonfinite or healthy."""
        return verdict(self.history, thresholds or self.thresholds)

    def records(self) -> list[dict[str, Any]]:
        """The JSON records so far (what the JSONL sink writes), syncing first."""
        self._sync()
        return list(self._records)

    def summary(self) -> Any:
        """A rich Table: per layer, the latest and median gradient norm, max |g|, update ratio."""
        from rich.table import Table

        h = self.history
        table = Table(title=f"gradwatch — {h.n_steps} recorded steps")
        for col in (
            "layer",
            "type",
            "‖g‖ last",
            "‖g‖ median",
            "max|g| last",
            "‖θ‖ last",
            "update ratio median",
        ):
            table.add_column(col, justify="right" if col != "layer" else "left")
        types = {layer.name: layer.module_type for layer in self.layers}

        def med(a: np.ndarray) -> str:
            fin = a[np.isfinite(a)]
            return f"{np.median(fin):.3g}" if fin.size else "nan"

        for name, lh in h.layers.items():
            if h.n_steps == 0:
                continue
            table.add_row(
                name or "(model)",
                types.get(name, ""),
                f"{lh.grad_norm[-1]:.3g}",
                med(lh.grad_norm),
                f"{lh.grad_max[-1]:.3g}",
                f"{lh.param_norm[-1]:.3g}",
                med(lh.update_ratio),
            )
        return table

    def plot(self, path: str | Path) -> Path:
        """Write the layer × step heat map of log10 ‖g‖ with saturation and update-ratio panels (PNG)."""
        from gradwatch.monitor.plot import plot_history

        return plot_history(self.history, path)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Remove every hook, flush the records to the sinks and close them (idempotent)."""
        if self._closed:
            return
        try:
            self._disarm()
            for h in self._handles:
                h.remove()
            self._handles.clear()
            if self._tracer is not None:
                self._tracer.detach()
            self._sync()
            self._write_sinks(final=True)
        finally:
            for sink in self._sinks:
                sink.close()
            self._closed = True

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Monitor({type(self.model).__name__}, layers={len(self.layers)}, steps={self._calls})"
