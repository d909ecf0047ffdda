"""The registry of remedies: what each one is (from the catalog) and how to apply it.

Every name in :mod:`gradwatch._remedy_catalog` (the names the verdict's advice uses) is a
:class:`Remedy` here, and each says how the runner applies it — one of:

- **per step** (clipping, spike control, the regularizer): ``make(params)`` returns a
  :class:`StepRemedy` with a ``penalty(loss, model)`` hook (added to the loss before
  ``backward()``), an ``after_backward(params, total_norm)`` hook (changes ``.grad`` in
  place before the optimizer step), and, for remedies that act on the optimizer's step
  itself (skipping it), ``attach(optimizer)`` and ``observe(loss)``. ``params`` are validated against the remedy's :class:`Param` ranges.
  A :class:`~gradwatch.experiments.Spec` lists these in ``remedies``; :func:`build`
  chains them, like ``optax.chain``.
- **by a spec field** (architecture, init, optimizer): ``knobs`` are the fields of
  :class:`~gradwatch.experiments.Spec` that apply it (``batchnorm`` is ``norm="batch"``,
  ``init:kumar`` is ``init="kumar"``, ``rprop`` is ``optimizer="rprop"``);
  :func:`spec_fields` turns names into those fields (``gradwatch run --remedy`` uses it).
- **not by the runner**: ``not_in_runner`` says why, and what to call instead.

Example:
    >>> from gradwatch.remedies import registry
    >>> registry.get("clip_grad_norm").defaults
    {'max_norm': 1.0}
    >>> registry.spec_fields({"batchnorm": {}, "clip_grad_norm": {"max_norm": 0.5}}, model="mlp")
    {'norm': 'batch', 'remedies': {'clip_grad_norm': {'max_norm': 0.5}}}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from gradwatch import _checks
from gradwatch._remedy_catalog import CATALOG, KINDS, RemedyInfo
from gradwatch.errors import ConfigError
from gradwatch.remedies import clipping, flossing, spike
from gradwatch.remedies.init import INITS
from gradwatch.remedies.regularizer import pascanu_penalty

__all__ = [
    "KINDS",
    "STEP_REMEDIES",
    "Param",
    "Remedy",
    "StepRemedy",
    "available",
    "build",
    "get",
    "spec_fields",
    "validate",
    "with_defaults",
]

Penalty = Callable[[torch.Tensor, nn.Module], torch.Tensor]
AfterBackward = Callable[[Sequence[torch.Tensor], "torch.Tensor | None"], None]
Attach = Callable[[torch.optim.Optimizer], Callable[[], None]]
Observe = Callable[[torch.Tensor], None]


class StepRemedy(NamedTuple):
    """What the runner calls every step (either hook may be None).

    Attributes:
        penalty: ``penalty(loss, model) -> tensor`` added to the loss before ``backward()``.
        after_backward: ``after_backward(params, total_norm)`` changes the gradients of
            ``params`` in place after ``backward()``, before the optimizer step.
            ``total_norm`` is the global 2-norm of those gradients if already measured
            (e.g. by the monitor: "measure once, act on the measurement"), else None.
        attach: ``attach(optimizer) -> detach``, called once before training, for remedies that
            act inside ``optimizer.step()`` (optimizer hooks); call ``detach()`` after training.
        observe: ``observe(loss)`` with the step's (detached) loss after ``backward()``, before
            ``after_backward``, for remedies that score the loss.
    """

    penalty: Penalty | None = None
    after_backward: AfterBackward | None = None
    attach: Attach | None = None
    observe: Observe | None = None


@dataclass(frozen=True)
class Param:
    """A numeric parameter of a per-step remedy: its default and its valid interval."""

    default: float
    low: float = 0.0
    high: float = math.inf
    low_open: bool = True
    high_open: bool = False


@dataclass(frozen=True)
class Remedy(RemedyInfo):
    """One remedy: the catalog's data (:class:`~gradwatch._remedy_catalog.RemedyInfo`) plus how to apply it.

    Attributes:
        name, kind, source, why, api, advice: from :mod:`gradwatch._remedy_catalog`.
        params: the parameters of a per-step remedy, with defaults and valid ranges.
        make: builds the :class:`StepRemedy` from validated parameters (per-step remedies).
        knobs: the Spec fields that apply it (architecture, init, optimizer remedies).
        models: the Spec models it works with (empty: any).
        needs: why it needs those models.
        not_in_runner: why the runner cannot apply it ("" when it can).
    """

    params: Mapping[str, Param] = field(default_factory=dict, compare=False)
    make: Callable[[Mapping[str, float]], StepRemedy] | None = field(default=None, compare=False)
    knobs: Mapping[str, object] = field(default_factory=dict, compare=False)
    models: tuple[str, ...] = ()
    needs: str = ""
    not_in_runner: str = ""

    @property
    def applies_in_runner(self) -> bool:
        """Whether the runner can apply it (per step or through spec fields)."""
        return self.make is not None or bool(self.knobs)

    @property
    def defaults(self) -> dict[str, float]:
        """The default value of each parameter."""
        return {k: p.default for k, p in self.params.items()}


# ---- how to apply: per-step remedies -------------------------------------------------


def _clip_norm(p: Mapping[str, float]) -> StepRemedy:
    max_norm = p["max_norm"]

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        # torch.nn.utils.clip_grads_with_norm_ on the given norm, or torch's own measurement
        clipping.clip_grad_norm_(params, max_norm, total_norm=total_norm)

    return StepRemedy(after_backward=after_backward)


def _clip_value(p: Mapping[str, float]) -> StepRemedy:
    clip_value = p["clip_value"]

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        clipping.clip_grad_value_(params, clip_value)

    return StepRemedy(after_backward=after_backward)


def _agc(p: Mapping[str, float]) -> StepRemedy:
    lam = p["clipping"]

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        clipping.adaptive_clip_grad_(params, lam)

    return StepRemedy(after_backward=after_backward)


def _autoclip(p: Mapping[str, float]) -> StepRemedy:
    auto = clipping.AutoClip(percentile=p["percentile"])  # its norm history is this run's state

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        auto(params)

    return StepRemedy(after_backward=after_backward)


def _integer(p: Mapping[str, float], key: str, name: str) -> int:
    value = p[key]
    if not float(value).is_integer():
        raise ConfigError(f"The {key!r} parameter of remedy {name!r} must be an integer. Got {value!r} instead.")
    return int(value)


def _skip_step(p: Mapping[str, float]) -> StepRemedy:
    # ‖g‖ only by default: the z-score of a small batch's loss fires on ordinary hard batches late in
    # training (its distribution is skewed and its EMA σ small; see the spike-control claim);
    # loss=1 also scores the loss (the large-batch LLM practice). Mode "restore": exact for any optimizer.
    if p["loss"] not in (0.0, 1.0):
        raise ConfigError(
            f"The 'loss' parameter of remedy 'skip_step_on_spike' must be 0 or 1. Got {p['loss']!r} instead."
        )
    loss = p["loss"] == 1.0
    guard = spike.SkipStepOnSpike(
        on="both" if loss else "norm",
        z_thresh=p["z_thresh"],
        alpha=p["alpha"],
        warmup=_integer(p, "warmup", "skip_step_on_spike"),
    )

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        guard.decide(params, total_norm=total_norm)

    def attach(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        return guard.attach(optimizer).remove

    return StepRemedy(after_backward=after_backward, attach=attach, observe=guard.observe if loss else None)


def _zclip(p: Mapping[str, float]) -> StepRemedy:
    zclip = spike.ZClip(alpha=p["alpha"], z_thresh=p["z_thresh"], warmup=_integer(p, "warmup", "zclip"))

    def after_backward(params: Sequence[torch.Tensor], total_norm: torch.Tensor | None) -> None:
        zclip(params, total_norm)

    return StepRemedy(after_backward=after_backward)


def _pascanu(p: Mapping[str, float]) -> StepRemedy:
    alpha = p["alpha"]

    def penalty(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
        hidden_states: list[torch.Tensor] = model.hidden_states  # type: ignore[assignment]
        return alpha * pascanu_penalty(loss, hidden_states)

    return StepRemedy(penalty=penalty)


def _flossing(p: Mapping[str, float]) -> StepRemedy:
    k, every = _integer(p, "k", "flossing"), _integer(p, "every", "flossing")
    weight = p["weight"]
    calls = 0

    def penalty(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls % every != 0:
            return loss.new_zeros(())
        # duck-typed, the remedies never import models: gradwatch.models.RecurrentNet keeps its last input
        inputs: torch.Tensor | None = getattr(model, "inputs", None)
        if inputs is None:
            raise ConfigError(
                "Remedy 'flossing' needs the model's last input sequence (model.inputs): use model='rnn'/'lstm'/'gru'."
            )
        fused = getattr(model, "fused", None)
        target: Any = fused if fused is not None else [_cell_step(c) for c in model.cells]  # type: ignore[union-attr]
        sizes = None if fused is not None else [int(c.hidden) for c in model.cells]  # type: ignore[union-attr]
        return weight * flossing.flossing_loss(target, inputs, k=k, hidden_size=sizes)

    return StepRemedy(penalty=penalty)


def _cell_step(cell: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A hand-written cell x' = act(W_in u + W_rec h) called through ``forward``: no hook fires under jvp."""
    w_in, w_rec, act = (getattr(cell, name) for name in ("w_in", "w_rec", "act"))

    def step(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = act.forward(w_in.forward(u) + w_rec.forward(h))
        return out

    return step


_MLP_ONLY = {"models": ("mlp",), "needs": "it is a knob of gradwatch.models.mlp"}
_NOT_FUSED = {"models": ("mlp", "rnn"), "needs": "LSTM/GRU cells have fixed activations"}

# name → the Remedy fields that say how to apply it; every catalog name must be here
_HOW: dict[str, dict[str, Any]] = {
    # per step, in the catalog's order
    "clip_grad_norm": {"make": _clip_norm, "params": {"max_norm": Param(1.0)}},
    "clip_grad_value": {"make": _clip_value, "params": {"clip_value": Param(1.0)}},
    "agc": {"make": _agc, "params": {"clipping": Param(0.01)}},
    "autoclip": {"make": _autoclip, "params": {"percentile": Param(10.0, 0.0, 100.0)}},
    "skip_step_on_spike": {
        "make": _skip_step,
        "params": {
            "z_thresh": Param(6.0),
            "alpha": Param(0.97, 0.0, 1.0, high_open=True),
            "warmup": Param(25.0, 2.0, low_open=False),
            "loss": Param(0.0, 0.0, 1.0, low_open=False),
        },
    },
    "zclip": {
        "make": _zclip,
        "params": {
            "z_thresh": Param(2.5),
            "alpha": Param(0.97, 0.0, 1.0, high_open=True),
            "warmup": Param(25.0, 2.0, low_open=False),
        },
    },
    "pascanu_regularizer": {
        "make": _pascanu,
        "params": {"alpha": Param(2.0, low_open=False)},
        "models": ("rnn",),
        "needs": "it reads the hidden states of model='rnn' (fused LSTM/GRU hide them)",
    },
    "flossing": {
        "make": _flossing,
        "params": {
            "weight": Param(0.1, low_open=False),
            "k": Param(4.0, 1.0, low_open=False),
            "every": Param(1.0, 1.0, low_open=False),
        },
        "models": ("rnn", "lstm", "gru"),
        "needs": "it measures the Lyapunov exponents of the model's recurrent layers on its last input",
    },
    # spec fields
    "batchnorm": {"knobs": {"norm": "batch"}, **_MLP_ONLY},
    "layernorm": {"knobs": {"norm": "layer"}, **_MLP_ONLY},
    "residual": {"knobs": {"residual": True}, **_MLP_ONLY},
    "relu": {"knobs": {"activation": "relu"}, **_NOT_FUSED},
    "leaky_relu": {"knobs": {"activation": "leaky_relu"}, **_NOT_FUSED},
    "lstm": {"knobs": {"model": "lstm"}},
    "rprop": {"knobs": {"optimizer": "rprop"}},
    "sign_sgd": {"knobs": {"optimizer": "sign_sgd"}},
    **{f"init:{name}": {"knobs": {"init": name}} for name in INITS},
    "init:forget_bias": {
        "knobs": {"init": "forget_bias"},
        "models": ("lstm",),
        "needs": "the forget gate is an LSTM's",
    },
    # not by the runner
    "spectral_radius<1": {
        "not_in_runner": "the runner's models have no spectral-radius knob; "
        "build W_rec with gradwatch.theory.rnn.recurrent_matrix"
    },
    "dbn_pretraining": {
        "not_in_runner": "it pre-trains weights before training; "
        "call gradwatch.remedies.pretrain.pretrain_dbn and load_dbn_ on your model"
    },
    "history_compressor": {
        "not_in_runner": "it is another model and training procedure; use gradwatch.remedies.hierarchy.HistoryCompressor"
    },
    "random_search": {"not_in_runner": "it replaces gradient training; call gradwatch.remedies.search.random_search"},
    "genetic_algorithm": {
        "not_in_runner": "it replaces gradient training; call gradwatch.remedies.search.genetic_algorithm"
    },
    "lr:lower": {"not_in_runner": "it is a choice of learning rate; pass a smaller lr (--lr)"},
    "amp:grad_scaler": {
        "not_in_runner": "the runner trains in float32; use torch.amp.GradScaler in a mixed-precision loop"
    },
    "data:check": {"not_in_runner": "it is a check of your data, not a change to training"},
    "numerics:guard": {"not_in_runner": "it is a change to your model's forward code"},
    "gpu": {"not_in_runner": "it changes speed, not gradients; pass device='cuda' (--device cuda)"},
}

_REMEDIES: dict[str, Remedy] = {
    info.name: Remedy(**asdict(info), **_HOW[info.name])
    for info in CATALOG  # a KeyError here: a catalog remedy that nobody said how to apply
}

STEP_REMEDIES: tuple[str, ...] = tuple(n for n, r in _REMEDIES.items() if r.make is not None)
"""The per-step remedies, in the order the runner applies them (norm clipping first)."""


def available(kind: str | None = None) -> list[Remedy]:
    """List the remedies (optionally of one kind), sorted by name.

    Raises:
        ConfigError: an unknown kind.
    """
    if kind is not None:
        _checks.choice(kind, "kind", "available", KINDS)
    return sorted((r for r in _REMEDIES.values() if kind is None or r.kind == kind), key=lambda r: r.name)


def get(name: str) -> Remedy:
    """Return the remedy registered under ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    _checks.choice(name, "name", "remedies.get", tuple(_REMEDIES))
    return _REMEDIES[name]


def _runner_names() -> tuple[str, ...]:
    return tuple(n for n, r in _REMEDIES.items() if r.applies_in_runner)


def _check_params(r: Remedy, given: Mapping[str, object]) -> None:
    unknown = sorted(set(given) - set(r.params))
    if unknown:
        takes = sorted(r.params) if r.params else "no parameters"
        raise ConfigError(f"Remedy {r.name!r} takes {takes}; got unknown parameter(s) {unknown}.")
    for key, value in given.items():
        p = r.params[key]
        _checks.interval(value, key, f"remedy {r.name!r}", p.low, p.high, low_open=p.low_open, high_open=p.high_open)


def _check_model(r: Remedy, model: str | None) -> None:
    if model is not None and r.models and model not in r.models:
        shown = " or ".join(repr(m) for m in r.models)
        raise ConfigError(f"Remedy {r.name!r} works with model={shown} only: {r.needs}. Got model={model!r}.")


def validate(remedies: Mapping[str, Mapping[str, object]], owner: str = "Spec", model: str | None = None) -> None:
    """Check ``{name: {param: value}}`` of per-step remedies: names, parameters, ranges, models.

    Args:
        remedies: per-step remedies by name, with (some of) their parameters.
        owner: who is validating, for the message (e.g. "Spec").
        model: the Spec's model, to check remedies that need a particular one.

    Raises:
        ConfigError: one sentence naming the bad name or value and listing the valid ones.
    """
    for name, given in remedies.items():
        if name in _REMEDIES and name not in STEP_REMEDIES:
            r = _REMEDIES[name]
            listed = ", ".join(repr(n) for n in sorted(STEP_REMEDIES))
            if r.knobs:
                fields = ", ".join(f"{k}={v!r}" for k, v in r.knobs.items())
                how = f"it is applied by setting {fields} (gradwatch run --remedy {name})"
            else:
                how = f"the runner cannot apply it: {r.not_in_runner}"
            raise ConfigError(
                f"Remedy {name!r} is not a per-step remedy: {how}. The 'remedies' of {owner} take {listed}."
            )
        _checks.choice(name, "remedies", owner, STEP_REMEDIES)
        r = _REMEDIES[name]
        if not isinstance(given, Mapping):
            raise ConfigError(f"Remedy {name!r} of {owner} takes a mapping {{param: value}}. Got {given!r} instead.")
        _check_params(r, given)
        _check_model(r, model)


def with_defaults(name: str, given: Mapping[str, float] | None = None) -> dict[str, float]:
    """The parameters of per-step remedy ``name``: its defaults updated by ``given``."""
    return {**get(name).defaults, **(given or {})}


def _make(name: str, given: Mapping[str, float]) -> StepRemedy:
    make = _REMEDIES[name].make
    if make is None:
        raise ConfigError(f"Remedy {name!r} is not a per-step remedy.")
    return make(with_defaults(name, given))


def build(remedies: Mapping[str, Mapping[str, float]]) -> StepRemedy:
    """Chain the per-step remedies of ``{name: {param: value}}`` into one :class:`StepRemedy`.

    The remedies act in :data:`STEP_REMEDIES` order, whatever the mapping's order. The
    chained ``penalty`` sums the penalties; the chained ``after_backward`` passes
    ``total_norm`` to the first clipping remedy only (after it the gradients changed, so
    later ones measure again); ``attach`` attaches every remedy's optimizer hooks and
    returns one ``detach``; ``observe`` passes the loss to every remedy that scores it.
    Hooks are None when no remedy has one.

    Raises:
        ConfigError: see :func:`validate`.

    Example:
        >>> step = build({"clip_grad_norm": {"max_norm": 0.5}})
        >>> step.penalty is None, step.after_backward is not None
        (True, True)
    """
    validate(remedies, "registry.build")
    steps = [_make(n, remedies[n]) for n in STEP_REMEDIES if n in remedies]
    penalties = [s.penalty for s in steps if s.penalty is not None]
    hooks = [s.after_backward for s in steps if s.after_backward is not None]
    attaches = [s.attach for s in steps if s.attach is not None]
    observers = [s.observe for s in steps if s.observe is not None]

    def penalty(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
        total = penalties[0](loss, model)
        for extra in penalties[1:]:
            total = total + extra(loss, model)
        return total

    def after_backward(parameters: Sequence[torch.Tensor], total_norm: torch.Tensor | None = None) -> None:
        for hook in hooks:
            hook(parameters, total_norm)
            total_norm = None

    def attach(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        detaches = [a(optimizer) for a in attaches]

        def detach() -> None:
            for d in detaches:
                d()

        return detach

    def observe(loss: torch.Tensor) -> None:
        for o in observers:
            o(loss)

    return StepRemedy(
        penalty if penalties else None,
        after_backward if hooks else None,
        attach if attaches else None,
        observe if observers else None,
    )


def spec_fields(remedies: Mapping[str, Mapping[str, float]], model: str | None = None) -> dict[str, object]:
    """The Spec fields that apply remedies given by name (what ``gradwatch run --remedy`` does).

    Per-step remedies go to ``remedies``; architecture, init and optimizer remedies set
    their fields (``batchnorm`` → ``norm="batch"``).

    Args:
        remedies: ``{name: {param: value}}``; only per-step remedies take parameters.
        model: the Spec's model unless a remedy sets it, to check the remedies' models.

    Raises:
        ConfigError: an unknown name or one the runner cannot apply (listing those it can),
            a bad parameter, two remedies setting one field differently, or a model that
            a remedy does not work with.
    """
    fields: dict[str, object] = {}
    for name in remedies:
        if name in _REMEDIES and not _REMEDIES[name].applies_in_runner:
            listed = ", ".join(repr(n) for n in sorted(_runner_names()))
            raise ConfigError(
                f"Remedy {name!r} cannot be applied by the runner: {_REMEDIES[name].not_in_runner}. "
                f"The runner applies {listed}."
            )
        _checks.choice(name, "remedy", "gradwatch run", _runner_names())
        for key, value in _REMEDIES[name].knobs.items():
            if key in fields and fields[key] != value:
                raise ConfigError(f"Remedies set {key}={fields[key]!r} and {key}={value!r}; choose one.")
            fields[key] = value
    model = str(fields.get("model", model)) if model is not None or "model" in fields else None
    step = {n: p for n, p in remedies.items() if n in STEP_REMEDIES}
    validate(step, "gradwatch run", model)
    for name in remedies:
        r = _REMEDIES[name]
        if r.knobs:
            _check_params(r, remedies[name])
            _check_model(r, model)
    if step:
        fields["remedies"] = {n: dict(p) for n, p in step.items()}
    return fields
