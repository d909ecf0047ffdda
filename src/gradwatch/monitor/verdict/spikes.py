"""Spike events: the gradient norm (per layer and global) and the loss jumping above their running level."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from gradwatch.monitor.verdict.base import Event, Facts, fmt, q
from gradwatch.monitor.verdict.stats import Jumps, log_positive, robust_jumps, start_level

__all__ = ["grad_spikes", "loss_spikes"]


def _jumps(f: Facts, X: np.ndarray, ratio: float) -> Jumps:
    th = f.th
    return robust_jumps(
        X,
        window=th.spike_window,
        history=th.spike_history,
        z_min=th.spike_z,
        jump=math.log(ratio),
        floor=th.spike_scale_floor,
    )


def _runs(J: Jumps) -> tuple[np.ndarray, np.ndarray]:
    """The first point of each run of consecutive flagged steps of one series, and each run's peak.

    A level shift stays above the lagging running median for several steps: one event, not many.
    """
    if J.index.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    first = np.ones(J.index.size, dtype=bool)
    first[1:] = (J.series[1:] != J.series[:-1]) | (J.index[1:] != J.index[:-1] + 1)
    starts = np.flatnonzero(first)
    return starts, np.maximum.reduceat(J.value, starts)


def grad_spikes(f: Facts) -> list[Event]:
    """One ``grad_spike`` event per step where the global or a layer's ‖g‖ spikes.

    The event is attributed to the layer whose norm jumped the most (in ratio to its running
    median); the global norm when no single layer's did.
    """
    h = f.history
    if f.n_steps < 2:
        return []
    X = log_positive(np.vstack([h.global_grad_norm[None, :], h.layer_matrix("grad_norm")]))
    J = _jumps(f, X, f.th.spike_ratio)
    starts, peaks = _runs(J)
    by_step: dict[int, list[tuple[int, float]]] = defaultdict(list)  # step index → (point, run peak)
    for k, peak in zip(starts.tolist(), peaks.tolist(), strict=True):
        by_step[int(J.index[k])].append((k, peak))
    events = []
    for t in sorted(by_step):
        points = by_step[t]
        layers = [p for p in points if J.series[p[0]] > 0]
        k, peak = max(layers, key=lambda p: J.value[p[0]] - J.median[p[0]]) if layers else points[0]
        s = int(J.series[k])
        name = f.names[s - 1] if s > 0 else None
        value, base = math.exp(J.value[k]), math.exp(J.median[k])
        what = f"‖g‖ of {q(name)}" if name is not None else "the global ‖g‖"
        sentence = (
            f"{what} jumped to {fmt(value)}, ×{fmt(value / base)} its running median {fmt(base)} "
            f"(robust z {J.z[k]:.0f})"
        )
        if peak > J.value[k] + 1e-12:
            sentence += f", up to {fmt(math.exp(peak))} in the following steps"
        if name is not None and any(J.series[p[0]] == 0 for p in points):
            g = next(p[0] for p in points if J.series[p[0]] == 0)
            sentence += f"; the global ‖g‖ ×{fmt(math.exp(J.value[g] - J.median[g]))}"
        others = [f.names[int(J.series[p[0]]) - 1] for p in layers if p[0] != k]
        if others:
            sentence += "; also " + ", ".join(q(n) for n in others[:3]) + (" …" if len(others) > 3 else "")
        events.append(Event(int(h.steps[t]), "grad_spike", name, value, base, sentence))
    return events


def loss_spikes(f: Facts) -> list[Event]:
    """``loss_spike`` events: the loss ``loss_spike_ratio``× its running median, and above its start.

    Only for positive losses (the jump is measured in log units). Above its start: a batch that
    is merely harder than the recent ones, late in training, is not a spike of the run.
    """
    loss = np.asarray(f.history.loss, dtype=float)
    finite = loss[np.isfinite(loss)]
    if finite.size < 2 or (finite <= 0).any():
        return []
    J = _jumps(f, log_positive(loss)[None, :], f.th.loss_spike_ratio)
    start = start_level(loss, f.th.start_records)
    starts, peaks = _runs(J)
    events = []
    for k, peak in zip(starts.tolist(), peaks.tolist(), strict=True):
        value, base = math.exp(J.value[k]), math.exp(J.median[k])
        if not value > start:
            continue
        sentence = f"the loss jumped to {fmt(value)}, ×{fmt(value / base)} its running median {fmt(base)}"
        if peak > J.value[k] + 1e-12:
            sentence += f", up to {fmt(math.exp(peak))} in the following steps"
        events.append(Event(int(f.history.steps[J.index[k]]), "loss_spike", None, value, base, sentence))
    return events
