"""Events over training other than spikes: weights blowing up, updates too large, divergence,
the loss rising or above chance, clipping on every step, and units saturating."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.monitor.verdict.base import Event, Facts, fmt, q
from gradwatch.monitor.verdict.stats import first_true, rolling_median, start_level

__all__ = ["clip_saturated", "divergence", "loss_trend", "param_blowups", "saturation_onsets", "update_ratios"]

_LOSS_RUN = 3  # consecutive records whose median must stay high: one bad batch is not a trend
_RISING_WINDOW = 10  # the loss trend is read from running medians of at least 10 records


def _reference_norms(f: Facts) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: ‖θ‖ at its first measurement, and the same floored at ``param_rms_floor``·√numel.

    The floor keeps a layer that starts at (or near) zero — a zero-initialized bias-only layer,
    a zero-init residual branch — from "blowing up" when it merely starts to learn.
    """
    P = f.history.layer_matrix("param_norm")
    has = np.isfinite(P)
    first = np.where(has.any(axis=1), P[np.arange(P.shape[0]), has.argmax(axis=1)], np.nan)
    return first, np.fmax(first, _floors(f))


def _floors(f: Facts) -> np.ndarray:
    """``param_rms_floor``·√numel per layer: the norm of a layer whose entries have that RMS."""
    numel = np.array([max(lh.numel, 1) for lh in f.history.layers.values()], dtype=float)
    floors: np.ndarray = f.th.param_rms_floor * np.sqrt(numel)
    return floors


def param_blowups(f: Facts) -> list[Event]:
    """``param_blowup``: a layer's ‖θ‖ reaches ``blowup_ratio``× its start (floored), one event per layer.

    The event's value is the largest ‖θ‖ seen; its baseline the floored start.
    """
    P = f.history.layer_matrix("param_norm")
    if P.size == 0:
        return []
    first, ref = _reference_norms(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossed = f.th.blowup_ratio * ref[:, None] <= P
    events = []
    for i in np.flatnonzero(crossed.any(axis=1)).tolist():
        t = int(crossed[i].argmax())
        top = int(np.nanargmax(np.where(np.isfinite(P[i]), P[i], -np.inf)))
        name = f.names[i]
        floored = "" if ref[i] == first[i] else " floored at RMS " + fmt(f.th.param_rms_floor)
        sentence = f"‖θ‖ of {q(name)} grew from {fmt(first[i])} to {fmt(P[i, t])} (×{fmt(P[i, t] / ref[i])} its start{floored})"
        if top > t:
            sentence += f", up to {fmt(P[i, top])} (×{fmt(P[i, top] / ref[i])}) by step {int(f.history.steps[top])}"
        events.append(Event(int(f.history.steps[t]), "param_blowup", name, float(P[i, top]), float(ref[i]), sentence))
    return events


def update_ratios(f: Facts) -> list[Event]:
    """``update_ratio_high``: an update moved a layer's weights by more than ``update_ratio_high`` of
    their norm (floored as for blow-ups); one event per layer, at the first such step."""
    U = f.history.layer_matrix("update_ratio")
    P = f.history.layer_matrix("param_norm")
    if U.size == 0 or not np.isfinite(U).any():
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        step_size = U * P  # ‖Δθ‖
        rel = step_size / np.fmax(P, _floors(f)[:, None])
        high = rel > f.th.update_ratio_high
    events = []
    for i in np.flatnonzero(high.any(axis=1)).tolist():
        t = int(high[i].argmax())
        measured = np.isfinite(rel[i])
        top = float(np.nanmax(rel[i]))
        median = float(np.nanmedian(rel[i]))
        sentence = (
            f"‖Δθ‖/‖θ‖ of {q(f.names[i])} is {fmt(rel[i, t])} (> {fmt(f.th.update_ratio_high)} on "
            f"{int(high[i].sum())} of {int(measured.sum())} measured steps; max {fmt(top)}, median {fmt(median)})"
        )
        events.append(Event(int(f.history.steps[t]), "update_ratio_high", f.names[i], top, median, sentence))
    return events


def divergence(f: Facts) -> list[Event]:
    """``divergence``: the global ‖g‖ reaches ``divergence_ratio``× its start, or the loss (the median of
    3 consecutive records) ``divergence_loss_ratio``× its start (positive losses); the first of the two."""
    h, th = f.history, f.th
    found: list[Event] = []
    ok = ~np.asarray(h.skipped, dtype=bool)
    g = np.where(ok & np.isfinite(h.global_grad_norm), h.global_grad_norm, np.nan)  # non-finite: another rule
    g0 = start_level(np.where(g > 0, g, np.nan), th.start_records)
    if g0 > 0:
        with np.errstate(invalid="ignore"):
            t = first_true(g >= th.divergence_ratio * g0)
        if t is not None:
            found.append(
                Event(
                    int(h.steps[t]),
                    "divergence",
                    None,
                    float(g[t]),
                    g0,
                    f"the global ‖g‖ reached {fmt(g[t])}, ×{fmt(g[t] / g0)} its start {fmt(g0)}",
                )
            )
    loss = np.where(ok, h.loss, np.nan)
    l0 = start_level(loss, th.start_records)
    if l0 > 0:
        med, idx = rolling_median(loss, _LOSS_RUN)
        j = first_true(med >= th.divergence_loss_ratio * l0)
        if j is not None:
            t = int(idx[j])
            found.append(
                Event(
                    int(h.steps[t]),
                    "divergence",
                    None,
                    float(med[j]),
                    l0,
                    f"the loss stayed at {fmt(med[j])} (median of {_LOSS_RUN} records), ×{fmt(med[j] / l0)} its start {fmt(l0)}",
                )
            )
    return sorted(found, key=lambda e: e.step)[:1]


def loss_trend(f: Facts) -> list[Event]:
    """``loss_rising`` and ``loss_above_chance`` (when the chance level is known)."""
    h, th = f.history, f.th
    loss = np.asarray(h.loss, dtype=float)
    events = []
    if f.chance_loss is not None and f.chance_loss > 0:
        med, idx = rolling_median(loss, _LOSS_RUN)
        j = first_true(med >= th.chance_ratio * f.chance_loss)
        if j is not None:
            events.append(
                Event(
                    int(h.steps[idx[j]]),
                    "loss_above_chance",
                    None,
                    float(med[j]),
                    f.chance_loss,
                    f"the loss stayed at {fmt(med[j])}, ×{fmt(med[j] / f.chance_loss)} the chance level "
                    f"{fmt(f.chance_loss)}: worse than guessing",
                )
            )
    finite = loss[np.isfinite(loss)]
    if finite.size >= 4 * _RISING_WINDOW and (finite > 0).all():
        w = max(_RISING_WINDOW, finite.size // 5)
        med, idx = rolling_median(loss, w, points=200)  # a trend: 200 points read it
        low = int(np.argmin(med))
        start, bottom = float(med[0]), float(med[low])
        # a rise must stand out of the batch-to-batch noise: the difference of two medians of w
        # values has a standard error of 1.25 σ √(2/w), σ from the MAD of the loss around its median
        resid = loss[idx] - med
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        noise = th.spike_z * 1.25 * sigma * math.sqrt(2 / w)
        rising = (
            (med >= th.loss_rising_ratio * bottom)
            & (med - bottom >= th.loss_rising_share * max(start - bottom, 0.0))
            & (med - bottom > noise)
        )
        rising[: low + 1] = False
        j = first_true(rising)
        if j is not None and rising[-1]:  # still up at the end: a trend, not an excursion
            events.append(
                Event(
                    int(h.steps[idx[j]]),
                    "loss_rising",
                    None,
                    float(med[-1]),
                    bottom,
                    f"the loss (running median of {w}) rose from its lowest {fmt(bottom)} "
                    f"(step {int(h.steps[idx[low]])}) to {fmt(med[-1])}",
                )
            )
    return events


def clip_saturated(f: Facts) -> list[Event]:
    """``clip_saturated``: the gradient was clipped on at least ``clip_saturated_rate`` of ``clip_window``
    consecutive records: the threshold, not the gradient, sets the step."""
    h, th = f.history, f.th
    pre = np.asarray(h.clip_pre, dtype=float)
    if f.n_steps < th.clip_window or not np.isfinite(pre).any():
        return []
    rate = np.asarray(h.clip_rate(th.clip_window), dtype=float)
    ok = np.arange(f.n_steps) >= th.clip_window - 1
    with np.errstate(invalid="ignore"):
        t = first_true(ok & (rate >= th.clip_saturated_rate))
    if t is None:
        return []
    lo = t - th.clip_window + 1
    pre_med, post_med = np.nanmedian(pre[lo : t + 1]), np.nanmedian(np.asarray(h.clip_post)[lo : t + 1])
    return [
        Event(
            int(h.steps[t]),
            "clip_saturated",
            None,
            float(rate[t]),
            math.nan,
            f"the gradient was clipped on {rate[t]:.0%} of {th.clip_window} consecutive records "
            f"(median norm {fmt(pre_med)} before, {fmt(post_med)} after): the threshold sets the step",
        )
    ]


def saturation_onsets(f: Facts) -> list[Event]:
    """``saturation``: an activation module's saturated (or dead) fraction first exceeds ``saturation_high``."""
    events = []
    for name, a in f.history.activations.items():
        if a.kind not in ("saturation", "dead") or a.fraction.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            t = first_true(np.asarray(a.fraction) > f.th.saturation_high)
        if t is None:
            continue
        word = "saturated" if a.kind == "saturation" else "dead (zero for the whole batch)"
        before = f" ({a.fraction[0]:.0%} at step {int(a.steps[0])})" if t > 0 else ""
        events.append(
            Event(
                int(a.steps[t]),
                "saturation",
                name,
                float(a.fraction[t]),
                float(a.fraction[0]),
                f"{a.fraction[t]:.0%} of {q(name)}'s units are {word}{before}",
            )
        )
    return events
