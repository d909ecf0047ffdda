"""Rules over depth: the RMS gradient of the first layer against the others, and all-zero gradients."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.monitor.verdict.base import Evidence, Facts, Findings, finite_median, fmt, q

__all__ = ["all_zero", "depth", "zero_prefix"]


def depth(f: Facts, out: Findings) -> None:
    """Exploding: the first layer's RMS gradient exceeds the last's by ``exploding_ratio`` (recently).
    Vanishing: it is below ``vanishing_ratio`` of the largest layer's (at the start or recently).

    Only layers that are steps of depth take part (not embeddings, whose rows a batch mostly
    leaves idle, nor normalization layers); per-step ratios are summarized by their median over
    the first and the latest ``window`` of recorded steps (a sigmoid net can vanish at
    initialization and then stall with every gradient ~0).
    """
    h, th = f.history, f.th
    keep = f.depth_layers
    if len(keep) < 2:
        return
    names = [f.names[i] for i in keep]
    R = h.layer_matrix("grad_rms")[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.max(np.where(np.isfinite(R), R, -np.inf), axis=0)
        top[~np.isfinite(top)] = np.nan
        first_top = R[0] / top
        first_last = R[0] / R[-1]
    windows = {"at the start of training": slice(0, f.n_win), "recently": f.recent}
    vanished = False
    for phase, win in windows.items():
        r_ft, r_fl = finite_median(first_top[win]), finite_median(first_last[win])
        med = np.array([finite_median(R[i, win]) for i in range(len(names))])
        if math.isfinite(r_fl) and r_fl > th.exploding_ratio and phase == "recently":
            out.exploding.append(
                Evidence(
                    "depth_ratio",
                    r_fl,
                    names[0],
                    f"layer {q(names[0])}'s RMS gradient is {fmt(r_fl)}× layer {q(names[-1])}'s ({phase})",
                )
            )
            cut = math.sqrt(th.exploding_ratio) * med[-1]
            out.where_exploding += [n for n, v in zip(names, med, strict=True) if v > cut]
        if math.isfinite(r_ft) and r_ft < th.vanishing_ratio and not vanished:
            vanished = True
            i_top = int(np.nanargmax(med))
            out.vanishing.append(
                Evidence(
                    "depth_ratio",
                    r_ft,
                    names[0],
                    f"layer {q(names[0])}'s RMS gradient is {fmt(r_ft)} of layer {q(names[i_top])}'s ({phase}, "
                    f"median over {f.n_win} recorded steps)",
                )
            )
            cut = math.sqrt(th.vanishing_ratio) * med[i_top]
            out.where_vanishing += [n for n, v in zip(names, med, strict=True) if math.isfinite(v) and v < cut]


def all_zero(f: Facts, out: Findings) -> bool:
    """Vanishing: every layer's gradient is exactly zero over the latest window (returns whether so)."""
    R = f.history.layer_matrix("grad_norm")
    if not f.names or not np.all(np.nan_to_num(R[:, f.recent], nan=1.0) == 0.0):
        return False
    out.vanishing.append(Evidence("grad_norm", 0.0, "all layers", "every layer's gradient is exactly zero (recently)"))
    out.where_vanishing += f.names
    return True


def zero_prefix(f: Facts, out: Findings) -> bool:
    """Vanishing: the first layers' gradients are exactly zero on most of the latest window while a
    later layer's are not (returns whether so).

    Exact zeros, not small values: the gradient underflowed (float16 without loss scaling), or
    every unit upstream is dead, or the graph is cut (``.detach()``) before these layers.
    """
    keep = f.depth_layers
    G = f.history.layer_matrix("grad_norm")[keep][:, f.recent]
    if len(keep) < 2:
        return False
    zero = (G == 0.0).mean(axis=1) > 0.5
    k = int(np.argmin(zero)) if not zero.all() else len(keep)
    if k == 0 or k == len(keep):
        return False
    names = [f.names[i] for i in keep[:k]]
    shown = ", ".join(q(n) for n in names[:3]) + (" …" if k > 3 else "")
    out.vanishing.append(
        Evidence(
            "zero_grad",
            float(k),
            names[0],
            f"the gradient of {f'the first {k} layers ({shown}) is' if k > 1 else f'layer {shown} is'} exactly zero on "
            f"most recent steps while {q(f.names[keep[k]])}'s is not: it underflowed (float16), or every unit "
            "upstream is dead",
        )
    )
    out.where_vanishing[:0] = names
    return True
