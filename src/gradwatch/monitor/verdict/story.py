"""Sequences of events in one sentence: "exploding at step 3 in “rnn” (‖g‖ 0.14 → 1.5e2, ...), then saturated"."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradwatch.monitor.verdict.base import Event, Evidence, Facts, fmt, q
from gradwatch.monitor.verdict.stats import start_level

__all__ = ["EXPLOSIVE", "Explosion", "explosion", "preceded_by_explosion"]

# the events an explosion is made of (a large update is its cause, not part of it)
EXPLOSIVE = frozenset({"grad_spike", "loss_spike", "param_blowup", "divergence"})
_BLOWUP_ALARMS = ("divergence", "param_blowup")


@dataclass(frozen=True)
class Explosion:
    """An explosion told as a sequence: its evidence sentence and the layers it concerns, first first."""

    evidence: Evidence
    where: tuple[str, ...]
    onset: int


def _onset(f: Facts, events: Sequence[Event], first_alarm: Event) -> tuple[int, str | None, float]:
    """The record where the explosion began, the layer whose gradient grew the most from there, and
    the global ‖g‖ before it.

    Within the ``spike_window`` records up to the first alarm, each series (the global ‖g‖ and
    every layer's) is compared with its level at the start of that stretch (the median of its
    first ``start_records`` records); the onset is the first record where one is
    ``spike_ratio``× its level, or an earlier spike event in that stretch. The alarm already
    established the explosion, so no z-score is needed here: the first records of a run give
    too few values for one.
    """
    h, th = f.history, f.th
    a = f.record_index(first_alarm.step)
    lo = max(0, a - th.spike_window)
    X = np.vstack([h.global_grad_norm[None, :], h.layer_matrix("grad_norm")])[:, lo : a + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.array([start_level(np.where(x > 0, x, np.nan), th.start_records) for x in X])
        ratio = X / level[:, None]
        crossed = np.flatnonzero((ratio >= th.spike_ratio).any(axis=0))
    onset = lo + int(crossed[0]) if crossed.size else a
    spikes = [e for e in events if e.kind in EXPLOSIVE and lo <= f.record_index(e.step) < onset]
    if spikes:
        onset = f.record_index(min(spikes, key=lambda e: e.step).step)
    grown = np.nanmax(np.where(np.isfinite(ratio), ratio, np.nan)[1:, onset - lo :], axis=1, initial=-np.inf)
    layer = f.names[int(np.argmax(grown))] if f.names and np.isfinite(grown).any() and grown.max() > 1 else None
    return onset, layer, float(level[0])


def explosion(f: Facts, events: Sequence[Event]) -> Explosion | None:
    """The explosion, when a divergence or a parameter blow-up happened; None otherwise.

    Its onset is the earliest jump of a gradient norm, or spike, leading up to the first alarm;
    its layers are the one whose gradient grew the most from there, then those whose weights
    blew up, in the order they did.
    """
    alarms = [e for e in events if e.kind in _BLOWUP_ALARMS]
    if not alarms:
        return None
    onset_row, layer, g0 = _onset(f, events, min(alarms, key=lambda e: e.step))
    onset = int(f.history.steps[onset_row])
    blowups = sorted(
        (e for e in events if e.kind == "param_blowup" and e.layer is not None),
        key=lambda e: (e.step, -(e.value / e.baseline if e.baseline > 0 else math.inf)),
    )
    where = tuple(dict.fromkeys([*([layer] if layer else []), *(e.layer for e in blowups if e.layer)]))
    after = np.asarray(f.history.global_grad_norm, dtype=float)[onset_row:]
    g_top = float(np.max(after[np.isfinite(after)])) if np.isfinite(after).any() else math.nan
    numbers = [f"‖g‖ {fmt(g0)} → {fmt(g_top)}"] if math.isfinite(g0) and math.isfinite(g_top) else []
    named = next((e for e in blowups if e.layer == layer), blowups[0] if blowups else None)
    if named is not None and named.baseline > 0:
        numbers.append(f"‖θ‖ of {q(named.layer)} ×{fmt(named.value / named.baseline)}")
    saturated = [e for e in events if e.kind == "saturation" and e.step >= onset]
    then = ""
    if saturated:
        s = saturated[0]
        act = f.history.activations.get(s.layer or "")
        word = "dead" if act is not None and act.kind == "dead" else "saturated"
        then = f", then {word} ({q(s.layer)}: {s.value:.0%} of its units from step {s.step})"
    place = f" in {', '.join(q(w) for w in where[:3])}" if where else ""
    sentence = f"exploding at step {onset}{place}" + (f" ({', '.join(numbers)})" if numbers else "") + then
    value = g_top / g0 if math.isfinite(g0) and g0 > 0 and math.isfinite(g_top) else math.nan
    return Explosion(Evidence("explosion", value, where[0] if where else "global", sentence), where, onset)


def preceded_by_explosion(f: Facts, events: Sequence[Event], step: int) -> bool:
    """Whether a blow-up or divergence, or a spike within ``spike_window`` records, came before ``step``."""
    for e in events:
        if e.step >= step or e.kind not in EXPLOSIVE:
            continue
        if e.kind in _BLOWUP_ALARMS or f.record_index(step) - f.record_index(e.step) <= f.th.spike_window:
            return True
    return False
