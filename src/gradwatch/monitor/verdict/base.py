"""What the verdict's rules share: the result types, the facts read once from a History, and findings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gradwatch.monitor.history import History
from gradwatch.monitor.verdict.thresholds import Thresholds

__all__ = [
    "ALARM_KINDS",
    "EVENT_KINDS",
    "STATUSES",
    "Advice",
    "Event",
    "Evidence",
    "Facts",
    "Findings",
    "Verdict",
]

STATUSES = ("exploding", "healthy", "nonfinite", "vanishing")
EVENT_KINDS = (
    "grad_spike",
    "loss_spike",
    "param_blowup",
    "update_ratio_high",
    "loss_rising",
    "loss_above_chance",
    "divergence",
    "nonfinite",
    "saturation",
    "clip_saturated",
)
# the kinds that decide a status on their own; the others are reported, never alarm
ALARM_KINDS = frozenset({"divergence", "nonfinite", "param_blowup"})
# layers whose gradient scale is not a step of depth: an embedding's rows are mostly idle in a
# batch, a normalization layer's few parameters sum over the whole batch
NOT_DEPTH = frozenset({"embedding", "norm"})
_SHOWN_EVENTS = 5


def _json_float(v: Any) -> Any:
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


def _one_nan(obj: Any, *names: str) -> None:
    # every NaN becomes the math.nan object: tuples compare items by identity first, so two
    # verdicts from the same numbers (a live run and its log read back) stay equal
    for name in names:
        v = float(getattr(obj, name))
        object.__setattr__(obj, name, math.nan if math.isnan(v) else v)


@dataclass(frozen=True)
class Evidence:
    """One measured fact behind a verdict.

    Attributes:
        quantity: what was measured (e.g. "depth_ratio", "time_ratio", "saturation", "explosion").
        value: the number.
        where: the layer, module or time steps it concerns.
        sentence: the fact in words, with the number.
    """

    quantity: str
    value: float
    where: str
    sentence: str

    def __post_init__(self) -> None:
        _one_nan(self, "value")


@dataclass(frozen=True)
class Advice:
    """A remedy (by its registry name) and why it fits this verdict."""

    remedy: str
    reason: str


@dataclass(frozen=True)
class Event:
    """Something that happened at one step of training.

    Attributes:
        step: the record's step (as in ``History.steps``).
        kind: one of :data:`EVENT_KINDS`.
        layer: the layer (or activation module) it is attributed to; None: the whole model.
        value: the number (e.g. ‖g‖ at a spike).
        baseline: what it is compared with (e.g. the running median); NaN if none.
        sentence: the event in words, with its numbers.
    """

    step: int
    kind: str
    layer: str | None
    value: float
    baseline: float
    sentence: str

    def __post_init__(self) -> None:
        _one_nan(self, "value", "baseline")
        object.__setattr__(self, "step", int(self.step))

    @property
    def alarm(self) -> bool:
        """Whether this kind decides a status on its own (:data:`ALARM_KINDS`)."""
        return self.kind in ALARM_KINDS

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite values as strings)."""
        return {k: _json_float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Verdict:
    """The monitor's diagnosis: status, where, evidence in numbers, advice, and the events seen.

    Attributes:
        status: one of :data:`STATUSES`.
        where: the layers or time steps concerned.
        evidence: the facts behind the status (and notes that did not change it).
        advice: remedies, most fitting first.
        events: what happened during training, sorted by step.
    """

    status: str
    where: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    advice: tuple[Advice, ...]
    events: tuple[Event, ...] = ()

    def __str__(self) -> str:
        where = ""
        if self.where:
            shown = ", ".join(self.where[:6]) + (", …" if len(self.where) > 6 else "")
            where = f" in {shown}"
        lines = [f"{self.status}{where}"]
        lines += [f"  - {e.sentence}" for e in self.evidence]
        if self.events:
            more = len(self.events) - _SHOWN_EVENTS
            lines.append(f"  events{f' (first {_SHOWN_EVENTS} of {len(self.events)})' if more > 0 else ''}:")
            lines += [f"  · step {e.step}: {e.sentence}" for e in self.events[:_SHOWN_EVENTS]]
        if self.advice:
            lines.append("  try:")
            lines += [f"  * {a.remedy}: {a.reason}" for a in self.advice]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite values as strings), with ``"events"``."""
        return {
            "status": self.status,
            "where": list(self.where),
            "evidence": [{k: _json_float(v) for k, v in asdict(e).items()} for e in self.evidence],
            "advice": [asdict(a) for a in self.advice],
            "events": [e.to_json() for e in self.events],
        }


@dataclass
class Findings:
    """What the rules found, by the status each finding argues for."""

    exploding: list[Evidence] = field(default_factory=list)
    vanishing: list[Evidence] = field(default_factory=list)
    notes: list[Evidence] = field(default_factory=list)
    where_exploding: list[str] = field(default_factory=list)
    where_vanishing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Facts:
    """What every rule reads, computed once from a History.

    Attributes:
        history: the history.
        th: the thresholds.
        names: layer names in depth order.
        roles: layer name → role ("" unknown).
        family: the model's family (:func:`gradwatch.monitor.roles.architecture`).
        sequence: a recurrent model, or one with time profiles.
        n_steps: recorded steps S.
        n_win: steps in one ``window``.
        recent: the last window, as a slice.
        chance_loss: the loss of guessing, when the caller knows it.
    """

    history: History
    th: Thresholds
    names: list[str]
    roles: dict[str, str]
    family: str
    sequence: bool
    n_steps: int
    n_win: int
    recent: slice
    chance_loss: float | None = None

    @property
    def depth_layers(self) -> list[int]:
        """Indices (depth order) of the layers depth rules compare.

        Not embeddings, not norms; in a recurrent model only the recurrent layers (stacked RNNs):
        a recurrent layer's gradient sums over every time step, so its scale is not comparable
        with a feed-forward layer's.
        """
        if self.family == "recurrent":
            return [i for i, n in enumerate(self.names) if self.roles.get(n, "") == "recurrent"]
        return [i for i, n in enumerate(self.names) if self.roles.get(n, "") not in NOT_DEPTH]

    def record_index(self, step: int) -> int:
        """The row of a recorded step."""
        return int(np.searchsorted(self.history.steps, step))


def q(name: str | None) -> str:
    """A layer name in quotes; the model itself is "(model)"."""
    return f"“{name}”" if name else "(model)"


def fmt(x: float) -> str:
    """A number in 2 significant digits (1.9e+03 → 1.9e3)."""
    return f"{x:.2g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def finite_median(a: np.ndarray) -> float:
    """The median of the finite entries (NaN when none)."""
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan
