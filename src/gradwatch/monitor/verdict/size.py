"""Rules over the size of the gradient during training, and over saturated or dead units."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.monitor.verdict.base import Evidence, Facts, Findings, finite_median, fmt, q

__all__ = ["growth", "saturation"]


def growth(f: Facts, out: Findings) -> None:
    """Exploding: the global ‖g‖ grew ``growth_ratio``× from the first window to the latest, or the
    global ‖g‖/‖θ‖ exceeds ``relative_grad_high`` over the latest ``window`` of the records where
    ‖θ‖ was measured (attributed to the layers whose own ‖g‖/‖θ‖ exceeds it, recurrent layers
    first in a recurrent model)."""
    h, th, n = f.history, f.th, f.n_win
    g = h.global_grad_norm
    if 2 * n + 1 <= f.n_steps:
        first, last = finite_median(g[:n]), finite_median(g[f.recent])
        if first > 0 and last / first > th.growth_ratio:
            out.exploding.append(
                Evidence(
                    "growth",
                    last / first,
                    "global",
                    f"the global gradient norm grew {fmt(last / first)}× during training",
                )
            )
    P = h.layer_matrix("param_norm")
    rows = np.flatnonzero(np.isfinite(P).any(axis=0)) if P.size else np.zeros(0, dtype=np.int64)
    if rows.size == 0:
        return
    rows = rows[-max(1, math.ceil(th.window * rows.size)) :]
    G = h.layer_matrix("grad_norm")[:, rows]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        pn = np.sqrt(np.nansum(P[:, rows] ** 2, axis=0))
        rel = finite_median(g[rows] / np.where(pn > 0, pn, np.nan))
        per_layer = np.array(
            [finite_median(G[i] / np.where(P[i, rows] > 0, P[i, rows], np.nan)) for i in range(len(G))]
        )
    if math.isfinite(rel) and rel > th.relative_grad_high:
        order = np.argsort(-np.nan_to_num(per_layer, nan=-np.inf))
        layers = [f.names[i] for i in order if per_layer[i] > th.relative_grad_high]
        if f.family == "recurrent":  # the products of Jacobians happen in the recurrent layers: name them first
            layers.sort(key=lambda n: f.roles.get(n) != "recurrent")
        where = layers[0] if layers else "global"
        detail = f"; {q(where)}'s own is {fmt(per_layer[f.names.index(where)])}" if layers else ""
        out.exploding.append(Evidence("relative_grad", rel, where, f"the global ‖g‖/‖θ‖ is {fmt(rel)}{detail}"))
        out.where_exploding += layers


def saturation(f: Facts, out: Findings) -> tuple[bool, str]:
    """Vanishing: an activation module has more than ``saturation_high`` of its units saturated
    (σ′ < 1 % of its maximum) or dead (ReLU: zero for the whole batch), median over its latest
    ``window`` of measurements; above ``saturation_note`` it is a note.

    Returns:
        (whether any saturating activation — sigmoid/tanh family — was measured, the dead units:
        "high" when a rectifier's dead fraction is above ``saturation_high``, "note" above
        ``saturation_note``, else "").
    """
    th = f.th
    saturating, dead = False, ""
    for name, a in f.history.activations.items():
        if a.kind not in ("saturation", "dead"):
            continue
        frac = finite_median(a.fraction[-max(1, math.ceil(th.window * a.fraction.size)) :])
        saturating = saturating or a.kind == "saturation"
        if not math.isfinite(frac) or frac <= th.saturation_note:
            continue
        if a.kind == "dead":
            dead = "high" if frac > th.saturation_high or dead == "high" else "note"
        word = "saturated" if a.kind == "saturation" else "dead (zero for the whole batch)"
        ev = Evidence(a.kind, frac, name, f"{frac:.0%} of {q(name)}'s units are {word}")
        if frac > th.saturation_high:
            out.vanishing.append(ev)
            out.where_vanishing.append(name)
        else:
            out.notes.append(ev)
    return saturating, dead
