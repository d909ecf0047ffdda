"""What the monitor watches and how often: :class:`MonitorConfig`, and which layers it monitors."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TypedDict

import torch
from torch import nn

from gradwatch import _checks
from gradwatch.errors import ConfigError, out_of_range
from gradwatch.monitor.verdict import Thresholds

__all__ = [
    "ON_NONFINITE",
    "Layer",
    "MonitorConfig",
    "MonitorOptions",
    "check_objects",
    "make_config",
    "max_period",
    "select_layers",
]

ON_NONFINITE = ("raise", "record", "warn")
Filter = str | Sequence[str] | re.Pattern[str] | None


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor records: every ``Monitor(...)`` keyword except the objects it hooks.

    ``Monitor(model, opt, config=MonitorConfig(...))`` and ``Monitor(model, opt, **kwargs)``
    are the same thing; ``None`` means "off".

    Attributes:
        every: record every ``every``-th call of ``Monitor.step`` (≥ 1).
        sync_every: move records to the host (and the sinks) every ``sync_every`` recorded
            steps (≥ 1). Higher is cheaper on GPUs; reading ``history`` or ``verdict()``
            syncs at once.
        include, exclude: glob pattern(s) on layer names (``"encoder.*"``) or a compiled
            regex: only matching layers are monitored / these layers are left out.
        module_types: only monitor layers that are instances of these types.
        grad_max: period of max |g| per layer, in recorded steps (one more pass over the
            gradients, as costly as the L2 norms on a CPU): True every recorded step, an
            integer k every k-th (default 10), False off. On the other steps the non-finite
            check reads the L2 norms: exact for NaN; an Inf is then indistinguishable from a
            norm above ~1.8e19 (float32), and is reported as Inf.
        weights_every: period (in recorded steps) of ‖θ‖ and the update/weight ratio
            ‖Δθ‖/‖θ‖ (without an optimizer: θ snapshot at the record, compared at the next
            ``step()`` call); each costs full passes over the weights.
        activations_every: period of activation statistics (saturated/dead fraction, std).
        time_profile_every: period of ‖∂L/∂u_t‖; the profiled input is the first positional
            argument of the model (or of the submodule named by ``profile_module``).
        lyapunov_every: period (in recorded steps) of the Lyapunov exponents λ_1..λ_k of every
            fused ``nn.RNN``/``nn.GRU``/``nn.LSTM``, along the trajectory of its last input in
            the training forward (:class:`gradwatch.monitor.collectors.lyapunov.Lyapunov`);
            None (default): off. About k/2 forward passes of 4 sequences per measurement.
        lyapunov_k: how many exponents per module (≥ 1; capped at the state size).
        time_dim, batch_dim: where time and batch are in that input.
        profile_module: qualified name of the submodule whose input is profiled.
        on_nonfinite: "record" (note the first NaN/Inf, found at the next sync), "warn"
            (also warn at once) or "raise" (raise NonFiniteError at once); the latter two
            check one boolean per step.
        trace_nonfinite: check forward outputs and gradients w.r.t. module outputs and
            inputs, to find where a NaN/Inf came from (hooks on every leaf module). True:
            on every step; "auto" (default): only once a non-finite value has been seen, to
            locate its next occurrence (free until then: the loss and the gradient norms
            already tell forward from backward); False: never.
        thresholds: the verdict's thresholds (None: ``Thresholds()``).
        accumulation_steps: with gradient accumulation and ``mon.step()`` after every
            micro-batch, the micro-batches per optimizer step: every k-th call records the
            accumulated gradient, with the mean of the losses passed.
        clip: with an optimizer, the global norm is measured again just before the optimizer
            consumes the gradient; if it differs (the user clipped), the record carries
            ``"clip": {"pre": ..., "post": ...}``. None: only where the gradient changed;
            True: on every step where both were measured; False: never. Manual loops report
            theirs with ``step(loss, clip=total)`` or clip with ``mon.clip_grad_norm_``;
            where clipping is not measured, ``History.clip_rate`` is NaN.
        sinks_on_all_ranks: under torch.distributed, every rank writes its sinks (default:
            only rank 0; every rank still records, for ``verdict()``).
        lints: warn (once each, a ``GradwatchWarning``) and record misuses of the training
            loop: see :mod:`gradwatch.monitor.lints`.

    Raises:
        ConfigError: a value is out of range (one sentence naming it).
    """

    every: int = 1
    sync_every: int = 50
    include: Filter = None
    exclude: Filter = None
    module_types: type | tuple[type, ...] | None = None
    grad_max: bool | int = 10
    activations_every: int | None = 10
    weights_every: int | None = 10
    time_profile_every: int | None = None
    lyapunov_every: int | None = None
    lyapunov_k: int = 3
    time_dim: int = 1
    batch_dim: int = 0
    profile_module: str | None = None
    on_nonfinite: str = "record"
    trace_nonfinite: bool | str = "auto"
    thresholds: Thresholds | None = None
    accumulation_steps: int = 1
    clip: bool | None = None
    sinks_on_all_ranks: bool = False
    lints: bool = True

    def __post_init__(self) -> None:
        owner = "Monitor"
        for name in ("every", "sync_every", "accumulation_steps"):
            _checks.positive_int(getattr(self, name), name, owner)
        _checks.positive_int(self.lyapunov_k, "lyapunov_k", owner)
        for name in ("activations_every", "weights_every", "time_profile_every", "lyapunov_every"):
            if getattr(self, name) is not None:
                _checks.positive_int(getattr(self, name), name, owner)
        types = self.module_types if isinstance(self.module_types, tuple) else (self.module_types,)
        if self.module_types is not None and not all(isinstance(t, type) for t in types):
            raise out_of_range(
                "module_types", owner, "a module class or a tuple of them (e.g. nn.Linear)", self.module_types
            )
        if not isinstance(self.grad_max, bool):
            _checks.positive_int(self.grad_max, "grad_max", owner)
        for name in ("time_dim", "batch_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise out_of_range(name, owner, "an integer (a dimension of the profiled input)", value)
        if self.time_dim == self.batch_dim:
            raise out_of_range("time_dim", owner, f"a dimension other than batch_dim={self.batch_dim}", self.time_dim)
        if self.clip not in (None, True, False):
            raise ConfigError(
                f"The 'clip' parameter of Monitor must be None, True or False. Got {self.clip!r} instead."
            )
        _checks.choice(self.on_nonfinite, "on_nonfinite", owner, ON_NONFINITE)
        if self.trace_nonfinite not in (True, False, "auto") or not isinstance(self.trace_nonfinite, (bool, str)):
            raise out_of_range("trace_nonfinite", owner, "True, False or 'auto'", self.trace_nonfinite)
        if self.thresholds is not None and not isinstance(self.thresholds, Thresholds):
            raise out_of_range("thresholds", owner, "a Thresholds or None", self.thresholds)


def max_period(grad_max: bool | int) -> int | None:
    """The period of max |g| in recorded steps (None: off) from ``MonitorConfig.grad_max``."""
    if isinstance(grad_max, bool):
        return 1 if grad_max else None
    return grad_max


class MonitorOptions(TypedDict, total=False):
    """The fields of :class:`MonitorConfig`, as keywords of ``Monitor(...)`` (type-checked)."""

    every: int
    sync_every: int
    include: Filter
    exclude: Filter
    module_types: type | tuple[type, ...] | None
    grad_max: bool | int
    activations_every: int | None
    weights_every: int | None
    time_profile_every: int | None
    lyapunov_every: int | None
    lyapunov_k: int
    time_dim: int
    batch_dim: int
    profile_module: str | None
    on_nonfinite: str
    trace_nonfinite: bool | str
    thresholds: Thresholds | None
    accumulation_steps: int
    clip: bool | None
    sinks_on_all_ranks: bool
    lints: bool


def make_config(config: MonitorConfig | None, options: MonitorOptions) -> MonitorConfig:
    """``config`` (or the defaults) with ``options`` overriding it, validated."""
    unknown = sorted(set(options) - {f.name for f in fields(MonitorConfig)})
    if unknown:
        raise TypeError(f"Monitor() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}.")
    return replace(config or MonitorConfig(), **options)


def check_objects(model: object, optimizer: object, scaler: object, profile_module: str | None) -> dict[str, nn.Module]:
    """Validate what the monitor hooks; return the model's modules by qualified name.

    Raises:
        ConfigError: a wrong type, a scaler without an optimizer, an unknown ``profile_module``.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"The 'model' parameter of Monitor must be a torch.nn.Module. Got {type(model).__name__}.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"The 'optimizer' parameter of Monitor must be a torch.optim.Optimizer or None. "
            f"Got {type(optimizer).__name__}."
        )
    if scaler is not None and (not hasattr(scaler, "update") or not hasattr(scaler, "unscale_")):
        raise ConfigError(
            f"The 'scaler' parameter of Monitor must be a torch.amp.GradScaler or None. Got {type(scaler).__name__}."
        )
    if scaler is not None and optimizer is None:
        raise ConfigError("Monitor(scaler=...) needs the optimizer too: the scaler's state is kept per optimizer.")
    modules = dict(model.named_modules())
    if profile_module is not None and profile_module not in modules:
        raise ConfigError(
            f"The 'profile_module' parameter of Monitor must name a submodule. Got {profile_module!r}; "
            f"e.g. {', '.join(repr(n) for n in list(modules)[1:6])}."
        )
    return modules


@dataclass(frozen=True)
class Layer:
    """A monitored layer: one module and the trainable parameters it owns directly."""

    name: str
    module_type: str
    parameters: tuple[str, ...]
    numel: int


def depth_order(layers: Sequence[Layer], first_calls: Sequence[str]) -> list[int]:
    """Layer indices in the order the model first ran them (those never seen keep their place after)."""
    index = {layer.name: i for i, layer in enumerate(layers)}
    seen = [index[n] for n in first_calls if n in index]  # other modules' calls say nothing of depth
    return seen + [i for i in range(len(layers)) if i not in seen]


def _matcher(spec: Filter) -> Callable[[str], bool] | None:
    if spec is None:
        return None
    if isinstance(spec, re.Pattern):
        pattern = spec
        return lambda n: pattern.search(n) is not None
    pats = [spec] if isinstance(spec, str) else list(spec)
    return lambda n: any(fnmatch.fnmatchcase(n, p) for p in pats)


def select_layers(model: nn.Module, config: MonitorConfig) -> list[Layer]:
    """The layers to monitor: modules owning trainable parameters, filtered by the config.

    Raises:
        ConfigError: no parameter requires grad, or the filters match nothing.
    """
    inc, exc = _matcher(config.include), _matcher(config.exclude)
    modules = dict(model.named_modules())
    candidates: list[Layer] = []
    seen: set[int] = set()
    for name, module in modules.items():
        # A shared (tied) parameter belongs to the first module that owns it, as in
        # model.named_parameters(): counting it twice would inflate every global norm.
        params: list[tuple[str, torch.Tensor]] = []
        for pn, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append((pn, p))
        if params:
            candidates.append(
                Layer(name, type(module).__name__, tuple(pn for pn, _ in params), sum(p.numel() for _, p in params))
            )
    if not candidates:
        raise ConfigError("The model has no parameters that require grad: there is no gradient to monitor.")
    types = config.module_types
    chosen = [
        c
        for c in candidates
        if (inc is None or inc(c.name))
        and (exc is None or not exc(c.name))
        and (types is None or isinstance(modules[c.name], types))
    ]
    if not chosen:
        names = ", ".join(repr(c.name or "(model)") for c in candidates[:8])
        more = f" and {len(candidates) - 8} more" if len(candidates) > 8 else ""
        raise ConfigError(
            f"No layer matches include={config.include!r}, exclude={config.exclude!r}, "
            f"module_types={config.module_types!r}. Layers with trainable parameters: {names}{more}."
        )
    for c in chosen:
        for pn in c.parameters:
            p = modules[c.name].get_parameter(pn)
            if not p.is_floating_point():  # complex: max |g|, saturation and the rules assume real values
                qual = f"{c.name}.{pn}" if c.name else pn
                raise ConfigError(
                    f"Monitor watches real floating-point parameters; {qual!r} is {p.dtype}. Leave its layer "
                    f"out (Monitor(exclude={c.name!r})) or keep it as real pairs (torch.view_as_real)."
                )
    return chosen
