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
from gradwatch._output import to_json_number
from gradwatch.errors import ConfigError, GradwatchError, GradwatchWarning, NonFiniteError
from gradwatch.monitor import distributed, timeline
from gradwatch.monitor.history import History, NonFinite, from_json_number
from gradwatch.monitor.nonfinite import NonFiniteTracer
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


_SIGMOID_EDGE = (1 - math.sqrt(0.99)) / 2
_TANH_EDGE = math.sqrt(0.99)


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
    loss: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    activations: dict[str, tuple[torch.Tensor, int, int]] = field(default_factory=dict)
    profile: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    scale: torch.Tensor | None = None


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


def _count_beyond(y: torch.Tensor, center: float, half_width: float, buf: torch.Tensor) -> torch.Tensor:
    """[#{|y − c| > half_width}, Σ(y − c), Σ(y − c)²], in float arithmetic on a reused buffer.

    Comparison kernels that produce bool masks are several times slower on CPU than
    in-place float arithmetic, and a persistent buffer avoids fresh allocations. The sums
    are taken around the centre c, which keeps the variance free of cancellation.
    """
    torch.sub(y, center, out=buf)
    s1, s2 = buf.sum(), torch.linalg.vector_norm(buf) ** 2
    count = buf.abs_().sub_(half_width).clamp_(min=0).sign_().sum()
    return torch.stack([count, s1, s2])


def _activation_stats(
    module: nn.Module, kind: str, y: torch.Tensor, buf: torch.Tensor
) -> tuple[torch.Tensor, int, int]:
    """Raw sums for one activation output: ([count, Σy, Σy²] on its device, count's denominator, n).

    The fraction (count / denominator) and the std are finished on the host at sync time,
    so that the device does three reductions and no scalar arithmetic.

    Saturated: the derivative is below 1 % of its maximum. Sigmoid: σ' = y(1 − y) < 1/400
    ⇔ |y − ½| > ½ − a with a = (1 − √0.99)/2; tanh (and tanh RNN outputs): 1 − y² < 0.01
    ⇔ |y| > √0.99; softsign: (1 − |y|)² < 0.01 ⇔ |y| > 0.9; hardtanh: at its limits.
    Dead (ReLU family): the unit's output is ≤ 0 for every sample of the batch.
    """
    y = y.detach()
    n = y.numel()
    denom = n
    if kind == "saturation":
        if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
            return _count_beyond(y, 0.5, 0.5 - _SIGMOID_EDGE, buf).float(), denom, n
        if isinstance(module, nn.Softsign):
            return _count_beyond(y, 0.0, 0.9, buf).float(), denom, n
        if isinstance(module, nn.Hardtanh):
            mid, half = (module.max_val + module.min_val) / 2, (module.max_val - module.min_val) / 2
            return _count_beyond(y, mid, half * (1 - 1e-6), buf).float(), denom, n
        return _count_beyond(y, 0.0, _TANH_EDGE, buf).float(), denom, n
    if kind == "dead":
        batch_dim = 1 if isinstance(module, nn.RNNBase) and not module.batch_first and y.dim() == 3 else 0
        if y.dim() <= 1:
            count = (y <= 0).sum()
        else:
            per_unit_max = y.movedim(batch_dim, 0).reshape(y.shape[batch_dim], -1).amax(dim=0)
            count = (per_unit_max <= 0).sum()
            denom = per_unit_max.numel()
    else:
        count = torch.full((), math.nan, device=y.device)
    return torch.stack([count.float(), y.sum().float(), torch.linalg.vector_norm(y).float() ** 2]), denom, n


def _json_rows(a: np.ndarray) -> list[list[float | str | None]]:
    """Rows of floats as JSON-ready lists; the per-value conversion only where something is non-finite."""
    rows = a.tolist()
    if np.isfinite(a).all():
        return rows
    return [[to_json_number(v) for v in row] for row in rows]


def _finish_activation(raw: np.ndarray, denom: int, n: int) -> tuple[float, float]:
    """(fraction, std) from the raw sums of :func:`_activation_stats` (sums of y − c for any c)."""
    count, total, sq = (float(v) for v in raw)
    var = (sq - total * total / n) / (n - 1) if n > 1 else 0.0
    return count / denom, math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan


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
        grad_max: record max |g| per layer at every recorded step (one more pass over the
            gradients). When False, the non-finite check reads the L2 norms instead: exact
            for NaN; an Inf is then indistinguishable from a norm above ~1.8e19 (float32).
        weights_every: take the parameter norm ‖θ‖ and, with an optimizer, the update/weight
            ratio ‖Δθ‖/‖θ‖ on recorded steps that are multiples of this (≥ 1); None: off.
            Each costs full passes over the weights (and, for the update, a copy of them
            into a persistent buffer), hence its own period.
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
        scaler: the ``torch.amp.GradScaler`` of a mixed-precision loop. Norms are then
            always those of the *unscaled* gradient, whether ``mon.step()`` runs before or
            after ``scaler.unscale_``/``scaler.step``/``scaler.update`` (the monitor divides
            its own numbers by the scale in force; it never touches the gradients), each
            record carries ``"loss_scale"``, and steps the scaler skipped (inf/NaN found)
            carry ``"skipped": true`` and ``"skip_reason"``. Fused optimizers that unscale
            inside their step (``_step_supports_amp_scaling``): call ``mon.step()`` before
            ``scaler.step``.
        accumulation_steps: with gradient accumulation, the number of micro-batches per
            optimizer step when ``mon.step()`` is called after every micro-batch: only
            every ``accumulation_steps``-th call records (the accumulated gradient), with
            the mean of the losses passed. Leave at 1 when ``mon.step()`` is called once per
            optimizer step.
        clip: with an optimizer, the global norm is measured again just before the
            optimizer consumes the gradient; if it differs from the norm ``mon.step()``
            read (the user clipped in between), the record carries
            ``"clip": {"pre": ..., "post": ...}``. None (default): only on steps where the
            gradient changed; True: on every step where both were measured; False: never.
            Needs ``mon.step()`` before clipping (see docs/integrations.md).
        sinks_on_all_ranks: under torch.distributed, every rank writes its sinks;
            default False: only rank 0 does (all ranks still record, for ``verdict()``).

    Raises:
        ConfigError: no parameter requires grad, a filter matches nothing, or a
            parameter is out of range; a scaler without an optimizer.
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
        grad_max: bool = True,
        activations_every: int | None = 10,
        weights_every: int | None = 10,
        time_profile_every: int | None = None,
        time_dim: int = 1,
        batch_dim: int = 0,
        profile_module: str | None = None,
        on_nonfinite: str = "record",
        trace_nonfinite: bool = False,
        thresholds: Thresholds | None = None,
        scaler: torch.amp.GradScaler | None = None,
        accumulation_steps: int = 1,
        clip: bool | None = None,
        sinks_on_all_ranks: bool = False,
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
        self.weights_every = (
            None if weights_every is None else _checks.positive_int(weights_every, "weights_every", owner)
        )
        self.time_profile_every = (
            None
            if time_profile_every is None
            else _checks.positive_int(time_profile_every, "time_profile_every", owner)
        )
        self.grad_max = bool(grad_max)
        self.accumulation_steps = _checks.positive_int(accumulation_steps, "accumulation_steps", owner)
        if clip not in (None, True, False):
            raise ConfigError(f"The 'clip' parameter of Monitor must be None, True or False. Got {clip!r} instead.")
        self.clip = clip
        if scaler is not None:
            if not hasattr(scaler, "update") or not hasattr(scaler, "unscale_"):
                raise ConfigError(
                    f"The 'scaler' parameter of Monitor must be a torch.amp.GradScaler or None. "
                    f"Got {type(scaler).__name__}."
                )
            if optimizer is None:
                raise ConfigError(
                    "Monitor(scaler=...) needs the optimizer too: the scaler's state is kept per optimizer."
                )
        self.scaler = scaler
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
                if pname in layer.parameters and p.numel() > 0:
                    self._params.append(p)
                    self._param_names.append(f"{layer.name}.{pname}" if layer.name else pname)
                    owner_of.append(i)
        self._sharded = (
            distributed.ShardedNorms(self._params) if any(distributed.is_dtensor(p) for p in self._params) else None
        )
        self._device = distributed.local(self._params[0]).device
        self._owner_np = np.asarray(owner_of, dtype=np.int64)
        self._layer_starts = np.searchsorted(self._owner_np, np.arange(len(self.layers)))
        self._uniform = all(p.device == self._device and p.dtype == self._params[0].dtype for p in self._params)
        self._zero = torch.zeros((), dtype=self._params[0].dtype, device=self._device)
        self._n_layers = len(self.layers)
        self._depth_order: list[int] | None = None

        self._sinks: list[Sink] = list(sinks or [])
        if log is not None:
            self._sinks.append(JSONL(log))
        if not sinks_on_all_ranks and distributed.rank() != 0:
            for sink in self._sinks:
                sink.close()
            self._sinks = []
        self._micro = 0
        self._micro_losses: list[torch.Tensor] = []
        self._opt_steps = 0
        self._opt_steps_at_record = 0
        self._warned_accumulation = False
        self._post: dict[int, torch.Tensor | None] = {}  # None: the gradient did not change
        self._grad_versions: list[tuple[int, int]] = []
        self._skips: dict[int, torch.Tensor] = {}
        self._skip_next: torch.Tensor | None = None
        self._scaler_updated = False  # scaler.update() ran since the last step() call
        self._call_since_update = False  # a step() call in this scaler iteration (scale() … update())
        self._last_call_recorded = False
        self._last_record: int | None = None
        self._scaler_shadows: tuple[Any, Any] | None = None  # our scaler.update, scaler.scale
        self._scale_used: torch.Tensor | None = None
        self._in_opt_step = False  # between the optimizer's step pre- and post-hooks
        self._closure_record: int | None = None  # a record made inside optimizer.step
        self._staged: torch.Tensor | None = None  # a gradient reading taken by read_grads()
        self._staged_versions: list[tuple[int, int]] = []
        self._calls = 0
        self._closed = False
        self._pending: list[_Pending] = []
        self._updates: dict[int, torch.Tensor] = {}
        self._records: list[dict[str, Any]] = []
        self._written = 0
        self._first_nonfinite: NonFinite | None = None
        self._handles: list[RemovableHandle] = []
        self._act_handles: list[RemovableHandle] = []
        self._act_buffer: dict[str, list[tuple[torch.Tensor, int, int]]] = {}
        self._act_scratch: dict[str, torch.Tensor] = {}
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
        self._activation_kinds = {name: kind for name, _, kind in self._activation_modules}
        self._snapshot_norms: torch.Tensor | None = None
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
        if scaler is not None:
            self._wrap_scaler_update()
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
        seen: set[int] = set()
        for name, module in model.named_modules():
            # A shared (tied) parameter belongs to the first module that owns it, as in
            # model.named_parameters(): counting it twice would inflate every global norm.
            params = [
                (pn, p)
                for pn, p in module.named_parameters(recurse=False)
                if p.requires_grad and id(p) not in seen and not seen.add(id(p))  # type: ignore[func-returns-value]
            ]
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

        return torch.compiler.disable(hook)

    # ------------------------------------------------------------------ arming per-step hooks
    def _is_due(self, step: int, period: int | None) -> bool:
        return period is not None and step % self.every == 0 and (step // self.every) % period == 0

    def _arm(self, step: int) -> None:
        """Register the hooks needed for the forward/backward that precede ``step()`` number ``step``."""
        want_acts = self._is_due(step, self.activations_every) and bool(self._activation_modules)
        if want_acts and not self._act_handles:
            for name, m, kind in self._activation_modules:
                self._act_handles.append(m.register_forward_hook(self._activation_hook(name, kind)))
        elif not want_acts and self._act_handles:
            # kept registered while due step after step: re-registering costs more than the hook
            for h in self._act_handles:
                h.remove()
            self._act_handles.clear()
        if self._is_due(step, self.time_profile_every) and not self._profile_disabled:
            self._profile_handle = self._profile_target.register_forward_pre_hook(self._profile_hook)
            self._hidden_ctx = timeline.collect_hidden()
            self._profile_hidden = self._hidden_ctx.__enter__()

    def _disarm(self, everything: bool = False) -> None:
        """Drop the per-step profile hooks (and, with ``everything``, the activation hooks too)."""
        if everything:
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
                buf = self._act_scratch.get(name)
                if buf is None or buf.shape != y.shape or buf.device != y.device:
                    buf = self._act_scratch[name] = torch.empty(y.shape, dtype=torch.float32, device=y.device)
                self._act_buffer.setdefault(name, []).append(_activation_stats(module, kind, y, buf))

        # Under torch.compile the hook runs eagerly (a graph break on the steps it is armed):
        # traced, its side effects on the monitor's buffers would be lost.
        return torch.compiler.disable(hook)

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

    # ------------------------------------------------------------------ AMP
    def _wrap_scaler_update(self) -> None:
        """Shadow ``scaler.update`` and ``scaler.scale`` (instance attributes, removed at close).

        ``update`` tells which steps the scaler skipped and that the gradients are now
        unscaled; ``scale`` (called before each backward) that they are scaled again.
        """
        scaler = self.scaler
        original_update, original_scale = scaler.update, scaler.scale

        def update(*args: Any, **kwargs: Any) -> Any:
            self._on_scaler_update()
            if scaler._scale is not None:  # the scale this iteration's gradients were computed with
                self._scale_used = scaler._scale.detach().reshape(1).clone()
            return original_update(*args, **kwargs)

        def scale(*args: Any, **kwargs: Any) -> Any:
            # a new iteration: its gradients will be scaled, and no step() call belongs to it yet
            self._scaler_updated = False
            self._call_since_update = False
            return original_scale(*args, **kwargs)

        scaler.update = update  # type: ignore[method-assign]
        scaler.scale = scale  # type: ignore[method-assign]
        self._scaler_shadows = (update, scale)

    def _on_scaler_update(self) -> None:
        state = self.scaler._per_optimizer_states.get(id(self.optimizer))
        found = list((state or {}).get("found_inf_per_device", {}).values())
        self._scaler_updated = True  # until the next scaler.scale(): the gradients are unscaled
        if not found:
            return  # scaler.step(optimizer) was not called this iteration
        flag = torch.stack([f.reshape(()).to(self._device, torch.float32) for f in found]).sum()
        if self._call_since_update:  # mon.step() ran before scaler.update() in this iteration
            if self._last_call_recorded and self._last_record is not None:
                self._skips[self._last_record] = flag
        else:  # mon.step() comes after scaler.update(): the flag is for the next call
            self._skip_next = flag
        self._call_since_update = False

    def _skip_pending(self) -> bool:
        """Whether a scaler.update() ran since the last record (a skipped step looks like accumulation)."""
        return self.scaler is not None and (self._skip_next is not None or not self._call_since_update)

    def _inverse_scale(self) -> torch.Tensor | None:
        """1/scale when the gradients are still scaled now, else None.

        The gradients are scaled from backward until ``unscale_`` (explicit, or inside
        ``scaler.step``); after ``scaler.update`` they stay unscaled until the next backward.
        """
        scaler = self.scaler
        if scaler is None or not scaler.is_enabled() or scaler._scale is None:
            return None
        from torch.amp.grad_scaler import OptState

        state = scaler._per_optimizer_states.get(id(self.optimizer))
        stage = OptState.READY if state is None else state["stage"]
        if stage is not OptState.READY or self._scaler_updated:
            return None
        return scaler._scale.double().reciprocal().to(self._device)

    # ------------------------------------------------------------------ optimizer hooks
    def _before_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # Snapshot θ only when this optimizer step belongs to a recorded weights step: either
        # step() was already called for it, or (optimizer-first loops, and closure loops such
        # as Lightning's, where step() runs inside optimizer.step) it is about to be.
        self._in_opt_step = True
        if self._optimizer_first is None:
            self._optimizer_first = self._calls == 0
        if (
            self.clip is not False
            and self._optimizer_first is False
            and self._last_record is not None
            and self._opt_steps_at_record == self._opt_steps
            and self._last_record not in self._post
        ):
            # the gradient the optimizer is about to consume (after any clipping)
            self._post[self._last_record] = self._post_clip()
        if self._optimizer_first:
            if not self._is_due(self._calls, self.weights_every):
                return
        elif self._awaiting_update is None:
            return
        with torch.no_grad():
            live = [distributed.local(p.detach()) for p in self._params]
            if self._prev_params is None:
                self._prev_params = [p.clone() for p in live]
            else:
                torch._foreach_copy_(self._prev_params, live)  # persistent buffers: no allocation
            self._snapshot_norms = self._l2_row(self._prev_params)
        self._snapshot_taken = True

    def _after_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._opt_steps += 1
        self._in_opt_step = False
        closure_record, self._closure_record = self._closure_record, None
        if closure_record is not None and self.clip is not False:
            # step() ran inside optimizer.step (a closure), before the clipping that followed
            # it: the optimizer leaves .grad as it consumed it, so read the post-clip norm now
            self._post[closure_record] = self._post_clip()
        if not self._snapshot_taken or self._prev_params is None:
            return
        self._snapshot_taken = False
        with torch.no_grad():
            torch._foreach_sub_(
                self._prev_params, [distributed.local(p.detach()) for p in self._params]
            )  # now θ_old − θ_new
            both = torch.cat([self._snapshot_norms, self._l2_row(self._prev_params)])
        if closure_record is not None:
            self._updates[closure_record] = both
        elif self._awaiting_update is not None:
            self._updates[self._awaiting_update] = both
            self._awaiting_update = None
        else:
            self._orphan_update = both

    # ------------------------------------------------------------------ the hot path
    def _stack(self, scalars: Sequence[torch.Tensor]) -> torch.Tensor:
        if self._uniform:
            return torch.stack(list(scalars))
        return torch.stack([t.to(self._device, torch.float32) for t in scalars])

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
        if self.accumulation_steps > 1:
            self._micro += 1
            if loss is not None:
                self._micro_losses.append(
                    loss.detach().reshape(-1)[:1].double() if torch.is_tensor(loss) else torch.tensor([float(loss)])
                )
            if self._micro < self.accumulation_steps:
                return  # a partial gradient: the record comes with the last micro-batch
            self._micro = 0
            losses, self._micro_losses = self._micro_losses, []
            loss = torch.cat([t.to(losses[0].device) for t in losses]).mean() if losses else None
        elif (
            self.optimizer is not None
            and self._optimizer_first is False
            and self._last_record is not None
            and self._opt_steps == self._opt_steps_at_record
            and not self._skip_pending()
            and not self._warned_accumulation
        ):
            self._warned_accumulation = True
            warnings.warn(
                "Monitor.step() was called twice with no optimizer step in between: with gradient "
                "accumulation, call it once per optimizer step (after the last micro-batch) or pass "
                "Monitor(accumulation_steps=k); otherwise each micro-batch's partial gradient is a record.",
                GradwatchWarning,
                stacklevel=2,
            )
        if self._awaiting_update is not None and self._opt_steps == self._opt_steps_at_record:
            self._awaiting_update = None  # that optimizer step never ran (e.g. skipped by a GradScaler)
        inv_scale = self._inverse_scale()
        skip_flag, self._skip_next = self._skip_next, None
        staged, self._staged = self._staged, None
        self._call_since_update = True
        self._last_call_recorded = False
        s = self._calls
        if self._first_calls and self._depth_order is None:
            self._fix_depth_order()
        if s % self.every != 0:
            self._advance()
            return
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            self._advance()
            warnings.warn(
                "Monitor.step() found no gradient on any monitored parameter: call loss.backward() "
                "before mon.step() (nothing was recorded for this step).",
                GradwatchWarning,
                stacklevel=2,
            )
            return
        pending = _Pending(step=s, row=staged if staged is not None else self._grad_row(grads, inv_scale))
        if self.optimizer is not None and self.clip is not False:
            self._grad_versions = self._staged_versions if staged is not None else self._versions(grads)
        self._opt_steps_at_record = self._opt_steps
        self._last_record = s
        self._last_call_recorded = True
        if self.scaler is not None:
            if skip_flag is not None:
                self._skips[s] = skip_flag
            if self._scaler_updated and self._scale_used is not None:
                pending.scale = self._scale_used
            elif self.scaler.is_enabled() and self.scaler._scale is not None:
                pending.scale = self.scaler._scale.detach().reshape(1).clone()
        if loss is not None:
            pending.loss = loss.detach().reshape(-1)[:1] if torch.is_tensor(loss) else torch.tensor([float(loss)])
        for name, calls in self._act_buffer.items():
            # several forwards in one step (accumulation): pool the raw sums
            raw = calls[0][0] if len(calls) == 1 else torch.stack([c[0] for c in calls]).sum(dim=0)
            pending.activations[name] = (raw, sum(c[1] for c in calls), sum(c[2] for c in calls))
        self._act_buffer.clear()
        if self._profile_input is not None:
            self._take_profile(pending)
        weights_due = self._is_due(s, self.weights_every)
        if weights_due and self.optimizer is None:
            pending.weights = self._l2_row([p.detach() for p in self._params])
        self._pending.append(pending)
        if self._in_opt_step:
            self._closure_record = s  # its update and post-clip norm come with the post-hook
        elif weights_due and self.optimizer is not None:
            if self._orphan_update is not None:
                self._updates[s] = self._orphan_update
                self._orphan_update = None
            elif self._optimizer_first is not True:
                self._awaiting_update = s
            # (optimizer-first loops with no update to attribute: that optimizer step was skipped)
        self._advance()
        if self.on_nonfinite != "record":
            self._check_now(pending)
        if len(self._pending) >= self.sync_every:
            self._sync()

    @staticmethod
    def _versions(grads: Sequence[torch.Tensor | None]) -> list[tuple[int, int]]:
        return [(-1, -1) if g is None else (id(g), g._version) for g in grads]

    def _post_clip(self) -> torch.Tensor | None:
        """Per-parameter norms of the gradient the optimizer consumes; None when it is the one recorded.

        Clipping (and AMP unscaling) modify ``.grad`` in place, which bumps its version
        counter, or replace it: comparing versions costs no pass over the gradients.
        """
        grads = [p.grad for p in self._params]
        if self._versions(grads) == self._grad_versions:
            return None
        return self._l2_row(grads, self._inverse_scale())

    def read_grads(self) -> None:
        """Read the gradients now; the next :meth:`step` records this reading.

        For loops whose only hook after backward comes after clipping (the Hugging Face
        Trainer): call this right after backward, and ``step()`` later. The norms are then
        those of the gradient before clipping, and the post-clip norm is still measured
        when the optimizer steps. Costs what ``step()`` would.
        """
        if self._closed:
            raise GradwatchError("Monitor.read_grads() called after close(): create a new Monitor.")
        grads = [p.grad for p in self._params]
        self._staged = self._grad_row(grads, self._inverse_scale())
        self._staged_versions = self._versions(grads)

    def _advance(self) -> None:
        self._calls += 1
        self._orphan_update = None if self._optimizer_first is False else self._orphan_update
        self._disarm()
        self._arm(self._calls)

    def _locals(self, tensors: Sequence[torch.Tensor | None]) -> Sequence[torch.Tensor]:
        """This rank's part of each tensor, a zero scalar for a missing one."""
        if self._sharded is None:  # the common case: no per-tensor DTensor check
            if any(t is None for t in tensors):
                return [self._zero if t is None else t for t in tensors]
            return tensors  # type: ignore[return-value]
        return [self._zero if t is None else distributed.local(t) for t in tensors]

    def _norms(self, local: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-tensor L2 norms of local tensors, made global under sharding (one device tensor)."""
        l2 = self._stack(torch._foreach_norm(local))
        return l2 if self._sharded is None else self._sharded.l2(l2)

    @staticmethod
    def _unscaled(row: torch.Tensor, inv_scale: torch.Tensor | None) -> torch.Tensor:
        return row if inv_scale is None else (row.double() * inv_scale).to(row.dtype)

    def _l2_row(self, tensors: Sequence[torch.Tensor | None], inv_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Per-parameter L2 norms (global under sharding, unscaled under AMP) as one device tensor."""
        with torch.no_grad():
            return self._unscaled(self._norms(self._locals(tensors)), inv_scale)

    def _grad_row(self, grads: list[torch.Tensor | None], inv_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Per parameter: [‖g‖₂ (P), max |g| (P)] (or just ‖g‖₂) in one small device tensor.

        ``torch._foreach_norm`` reads every gradient once for the L2 norms. For max |g|, CUDA
        has a fused ord=inf foreach kernel; on CPU that path allocates |g| and is ~30× slower
        than ``amax``/``amin``, so there max |g| = max(max g, −min g). Grouping into layers
        and the global norm happen on the host at sync time.
        """
        with torch.no_grad():
            local = self._locals(grads)
            l2 = self._norms(local)
            if not self.grad_max:
                return self._unscaled(l2, inv_scale)
            if self._device.type == "cuda" and self._uniform:
                top = self._stack(torch._foreach_norm(local, ord=math.inf))
            else:
                zero = self._zero  # an empty local shard has no max: 0 is neutral for max |g|
                hi = self._stack([torch.amax(g) if g.numel() else zero for g in local])
                lo = self._stack([torch.amin(g) if g.numel() else zero for g in local])
                # NaN must win, as it does in max |g|: torch.maximum propagates NaN.
                top = torch.maximum(hi, lo.neg())
            if self._sharded is not None:
                top = self._sharded.amax(top)
            return self._unscaled(torch.cat([l2, top]), inv_scale)

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
            pending.profile = timeline.input_profile(grad, time_dim=self.time_dim, batch_dim=self.batch_dim)
            states = self._profile_hidden or []
            norms = [h.grad.double().norm() if h.grad is not None else torch.zeros((), device=h.device) for h in states]
            if norms:
                pending.hidden = torch.stack([n.to(self._device, torch.float64) for n in norms])
        # Retained gradients would otherwise keep the inputs' graph alive until the next step.
        if data.is_leaf:
            data.grad = None
        self._profile_hidden = None

    def _check_now(self, pending: _Pending) -> None:
        finite = torch.isfinite(pending.row).all()
        if self._tracer is not None:
            for *_, span in self._tracer.flags:
                finite = finite & torch.isfinite(span.to(finite.device))
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
            parts += [t for t in (p.loss, p.weights, p.profile, p.hidden, p.scale) if t is not None]
            parts += [raw for raw, _, _ in p.activations.values()]
        upd_steps = list(updates)
        parts += [updates[s] for s in upd_steps]
        # post-clip norms and scaler skips arrive after their record: only those whose record exists
        known = {p.step for p in pending} | {r["step"] for r in self._records[-2:]}
        post_steps = [s for s in self._post if s in known]
        skip_steps = [s for s in self._skips if s in known]
        posts = [self._post.pop(s) for s in post_steps]
        parts += [t for t in posts if t is not None]
        parts += [self._skips.pop(s).reshape(1) for s in skip_steps]
        parts += [f[4].reshape(1) for f in flags]
        if not parts:
            return
        flat = torch.cat([t.reshape(-1).to(self._device, torch.float64) for t in parts]).cpu().numpy()
        pos = 0

        def take(n: int) -> np.ndarray:
            nonlocal pos
            out = flat[pos : pos + n]
            pos += n
            return out

        P = len(self._params)
        taken = []
        for p in pending:
            row = take(2 * P if self.grad_max else P)
            loss = float(take(1)[0]) if p.loss is not None else None
            weights = take(P) if p.weights is not None else None
            prof = take(p.profile.numel()) if p.profile is not None else None
            hid = take(p.hidden.numel()) if p.hidden is not None else None
            scale = float(take(1)[0]) if p.scale is not None else None
            acts = [take(3) for _ in p.activations]
            taken.append((row, loss, weights, prof, hid, acts, scale))
        new_records = self._records_from_rows(pending, [t[0] for t in taken]) if pending else []
        for p, rec, (_, loss, weights, prof, hid, acts, scale) in zip(pending, new_records, taken, strict=True):
            if loss is not None:
                rec["loss"] = to_json_number(loss)
            if scale is not None:
                rec["loss_scale"] = to_json_number(scale)
            if weights is not None:
                self._fill_weights(rec, weights, None)
            if prof is not None:
                rec["time_profile"] = {
                    "input": [to_json_number(v) for v in prof],
                    "hidden": None if hid is None else [to_json_number(v) for v in hid],
                }
            if p.activations:
                rec["activations"] = {}
                for (name, (_, denom, n)), raw in zip(p.activations.items(), acts, strict=True):
                    frac, std = _finish_activation(raw, denom, n)
                    rec["activations"][name] = {
                        "kind": self._activation_kinds[name],
                        "fraction": to_json_number(frac),
                        "std": to_json_number(std),
                    }
        # An update belongs to the newest records: those synced before their optimizer step ran.
        by_step = {r["step"]: r for r in self._records[-(len(upd_steps) + 2) :]}
        by_step.update({r["step"]: r for r in new_records})
        for s in upd_steps:
            both = take(2 * P)
            rec = by_step.get(s)
            if rec is not None:
                self._fill_weights(rec, both[:P], both[P:])
        for s, t in zip(post_steps, posts, strict=True):
            pre = from_json_number(by_step[s]["global_grad_norm"])
            self._fill_clip(by_step[s], pre if t is None else float(np.sqrt(np.sum(take(P) ** 2))))
        for s in skip_steps:
            if take(1)[0] > 0:
                by_step[s]["skipped"] = True
                by_step[s]["skip_reason"] = "GradScaler found inf/NaN in the gradients; the optimizer step was skipped"
        flag_vals = take(len(flags))
        self._records.extend(new_records)
        self._locate_nonfinite(new_records, flags, flag_vals)
        self._write_sinks(final=False)

    def _fill_clip(self, rec: dict[str, Any], post: float) -> None:
        pre = from_json_number(rec["global_grad_norm"])
        changed = not (post == pre or abs(post - pre) <= 1e-6 * max(abs(pre), 1e-30))
        if self.clip or (changed and self.clip is None):
            rec["clip"] = {"pre": to_json_number(pre), "post": to_json_number(post)}

    def _per_layer(self, per_param_sq: np.ndarray) -> np.ndarray:
        return np.sqrt(np.bincount(self._owner_np, weights=per_param_sq, minlength=self._n_layers))

    def _fill_weights(self, rec: dict[str, Any], param_norms: np.ndarray, delta_norms: np.ndarray | None) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            pn = self._per_layer(param_norms**2)
            ratio = self._per_layer(delta_norms**2) / pn if delta_norms is not None else None
        for i, layer in enumerate(self.layers):
            stats = rec["layers"][layer.name]
            stats["param_norm"] = to_json_number(pn[i])
            if ratio is not None:
                stats["update_ratio"] = to_json_number(ratio[i])

    def _records_from_rows(self, pending: list[_Pending], rows: list[np.ndarray]) -> list[dict[str, Any]]:
        """Turn per-parameter rows into JSON records, vectorized across records and layers."""
        R = np.stack(rows)
        P = len(self._params)
        with np.errstate(invalid="ignore", over="ignore"):
            sq = R[:, :P] * R[:, :P]
            # parameters are contiguous per layer: sum each layer's run (a one-hot matmul would
            # spread an Inf of one layer as NaN (inf · 0) into every other layer)
            layer_norm = np.sqrt(np.add.reduceat(sq, self._layer_starts, axis=1))
            global_norm = np.sqrt(sq.sum(axis=1))
            if self.grad_max:
                pmax = R[:, P:]
                layer_max = np.maximum.reduceat(pmax, self._layer_starts, axis=1)  # NaN propagates
            else:
                pmax, layer_max = R[:, :P], None
        order = self._depth_order or list(range(self._n_layers))
        names = [self.layers[i].name for i in order]
        numels = [self.layers[i].numel for i in order]
        norm_rows = _json_rows(layer_norm[:, order])
        max_rows = _json_rows(layer_max[:, order]) if layer_max is not None else [[None] * len(order)] * len(pending)
        out = []
        for r, p in enumerate(pending):
            layers = {
                n: {"grad_norm": g, "grad_max": m, "param_norm": None, "update_ratio": None, "numel": k}
                for n, g, m, k in zip(names, norm_rows[r], max_rows[r], numels, strict=True)
            }
            rec: dict[str, Any] = {
                "step": p.step,
                "global_grad_norm": to_json_number(global_norm[r]),
                "loss": None,
                "layers": layers,
                "_param_max": pmax[r],
            }
            out.append(rec)
        return out

    def _locate_nonfinite(
        self,
        records: list[dict[str, Any]],
        flags: list[tuple[int, int, str, str, torch.Tensor]],
        values: list[float],
    ) -> None:
        candidates: list[tuple[int, float, NonFinite]] = []
        for (step, seq, name, kind, _), ok in zip(flags, values, strict=True):
            if not math.isfinite(ok):
                candidates.append((step, seq, NonFinite(step, name, kind)))
        for rec in records:
            pmax = rec.pop("_param_max")
            bad = np.flatnonzero(~np.isfinite(pmax))
            if bad.size:
                j = int(bad[0])
                value = "nan" if math.isnan(pmax[j]) else "inf"
                layer = self.layers[int(self._owner_np[j])].name
                nf = NonFinite(rec["step"], layer, "parameter gradient", self._param_names[j], value)
                # parameter gradients come after every forward/backward flag of their step
                candidates.append((rec["step"], math.inf, nf))
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
        if not final and end > self._written and self._records[-1]["step"] == self._last_record:
            # The newest record may still learn its optimizer step's update ratio or post-clip
            # norm, or whether the GradScaler skipped it: hold it back until then.
            step_pending = (
                self.optimizer is not None
                and self._optimizer_first is not True
                and self._opt_steps == self._opt_steps_at_record
            )
            if (
                self._awaiting_update == self._last_record
                or step_pending
                or self._closure_record == self._last_record
                or (self.scaler is not None and self._call_since_update)
            ):
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

    def last_record(self) -> dict[str, Any] | None:
        """The newest JSON record (syncing first), or None before the first; no copy of the others."""
        self._sync()
        return self._records[-1] if self._records else None

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
            self._disarm(everything=True)
            for h in self._handles:
                h.remove()
            self._handles.clear()
            if self._tracer is not None:
                self._tracer.detach()
            if self._scaler_shadows is not None:
                for attr, fn in zip(("update", "scale"), self._scaler_shadows, strict=True):
                    if self.scaler.__dict__.get(attr) is fn:
                        delattr(self.scaler, attr)  # the class's method shows through again
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
