"""``verdict(history)``: the facts, the events, the rules, and the precedence between them."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.monitor.history import History
from gradwatch.monitor.roles import architecture
from gradwatch.monitor.verdict import advice
from gradwatch.monitor.verdict.base import EVENT_KINDS, Event, Evidence, Facts, Findings, Verdict
from gradwatch.monitor.verdict.depth import all_zero, depth, zero_prefix
from gradwatch.monitor.verdict.events import (
    clip_saturated,
    divergence,
    loss_trend,
    param_blowups,
    saturation_onsets,
    update_ratios,
)
from gradwatch.monitor.verdict.lyapunov import lyapunov
from gradwatch.monitor.verdict.nonfinite import nonfinite, overflow
from gradwatch.monitor.verdict.size import growth, saturation
from gradwatch.monitor.verdict.spikes import grad_spikes, loss_spikes
from gradwatch.monitor.verdict.story import explosion, preceded_by_explosion
from gradwatch.monitor.verdict.thresholds import Thresholds
from gradwatch.monitor.verdict.time import time_steps

__all__ = ["events", "facts", "verdict"]


def facts(history: History, thresholds: Thresholds, chance_loss: float | None = None) -> Facts:
    """What every rule reads, computed once."""
    S = history.n_steps
    n_win = max(1, math.ceil(thresholds.window * S))
    roles = history.roles
    family = architecture(roles.values())
    sequence = family == "recurrent" or (family == "unknown" and bool(history.time_profiles))
    return Facts(
        history=history,
        th=thresholds,
        names=list(history.layers),
        roles=roles,
        family=family,
        sequence=sequence,
        n_steps=S,
        n_win=n_win,
        recent=slice(S - n_win, S),
        chance_loss=chance_loss,
    )


def events(f: Facts) -> list[Event]:
    """Every event over training except non-finite values, sorted by step (then kind)."""
    found = [
        *grad_spikes(f),
        *loss_spikes(f),
        *param_blowups(f),
        *update_ratios(f),
        *divergence(f),
        *loss_trend(f),
        *clip_saturated(f),
        *saturation_onsets(f),
    ]
    return sorted(found, key=lambda e: (e.step, EVENT_KINDS.index(e.kind), e.layer or ""))


def verdict(history: History, thresholds: Thresholds | None = None, *, chance_loss: float | None = None) -> Verdict:
    """Diagnose gradient flow from a :class:`History`: status, where, evidence, advice, events.

    Args:
        history: what a monitor recorded (``mon.history``) or a JSONL log read back.
        thresholds: the rules' numbers; defaults to ``Thresholds()``.
        chance_loss: the loss of guessing (e.g. ln C for C balanced classes), when known: a
            loss that stays ``chance_ratio``× above it is an event.

    Returns:
        A :class:`Verdict`. With no recorded steps it is "healthy" with evidence saying so.
    """
    th = thresholds or Thresholds()
    f = facts(history, th, chance_loss)
    if f.n_steps == 0:
        return Verdict("healthy", (), (Evidence("steps", 0.0, "", "no step recorded yet"),), ())
    found = events(f)

    nf = nonfinite(f)
    if nf is not None:
        timeline = sorted([*found, nf.event], key=lambda e: (e.step, EVENT_KINDS.index(e.kind), e.layer or ""))
        after = preceded_by_explosion(f, found, nf.event.step)
        evidence = [Evidence("nonfinite", math.nan, nf.where, nf.event.sentence)]
        story = explosion(f, [e for e in found if e.step <= nf.event.step]) if after else None
        evidence += [story.evidence] if story is not None else []
        scaled = bool(np.isfinite(np.asarray(history.loss_scale, dtype=float)).any())  # a GradScaler was in use
        remedies = advice.for_nonfinite(f, origin=nf.origin, after_explosion=after, at_input=nf.at_input, scaled=scaled)
        return Verdict("nonfinite", (nf.where,), tuple(evidence), remedies, tuple(timeline))

    out = Findings()
    depth(f, out)
    zero = all_zero(f, out) or zero_prefix(f, out)
    time_steps(f, out)
    lyapunov(f, out)
    overflow(f, out)
    growth(f, out)
    saturating, dead = saturation(f, out)
    story = explosion(f, found)
    if story is not None:
        # the sequence decides: a blow-up that precedes saturation is an explosion, not vanishing
        out.exploding.insert(0, story.evidence)
        out.where_exploding[:0] = story.where
    if out.exploding:
        where = tuple(dict.fromkeys(out.where_exploding)) or ("global",)
        return Verdict("exploding", where, tuple(out.exploding + out.notes), advice.for_exploding(f), tuple(found))
    if out.vanishing:
        remedies = advice.for_vanishing(f, saturating=saturating, dead=dead, zeros=zero)
        where = tuple(dict.fromkeys(out.where_vanishing))
        return Verdict("vanishing", where, tuple(out.vanishing + out.notes), remedies, tuple(found))
    summary = Evidence("steps", float(f.n_steps), "", f"{f.n_steps} recorded steps; gradient flow within thresholds")
    return Verdict("healthy", (), (summary, *out.notes), (), tuple(found))
