"""Robust statistics over recorded series, vectorized (no Python loop over steps).

Series are arrays of shape (n, S): n series (the global norm, each layer) over S recorded
steps, NaN where a value is missing. A *trailing window* at step t holds the W values
before t (t excluded), so a spike is compared with what came before it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Jumps", "first_true", "log_positive", "robust_jumps", "rolling_median", "trailing_min"]

_MAD_TO_SIGMA = 1.4826  # σ of a normal distribution = 1.4826 × its median absolute deviation


def log_positive(x: np.ndarray) -> np.ndarray:
    """ln x where x is finite and > 0, NaN elsewhere (zeros and non-finite values are not levels)."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x) & (x > 0)
    out = np.full(x.shape, np.nan)
    out[ok] = np.log(x[ok])
    return out


def trailing_min(X: np.ndarray, W: int) -> np.ndarray:
    """min of X[:, t−W:t] for every t (+inf where that window holds no finite value), shape (n, S).

    Van Herk / Gil-Werman: prefix and suffix minima within blocks of W, O(n·S) whatever W.
    """
    n, S = X.shape
    P = np.concatenate([np.full((n, W), np.inf), np.where(np.isnan(X), np.inf, X)], axis=1)
    m = -(-P.shape[1] // W) * W
    B = np.concatenate([P, np.full((n, m - P.shape[1]), np.inf)], axis=1).reshape(n, -1, W)
    prefix = np.minimum.accumulate(B, axis=2).reshape(n, m)
    suffix = np.minimum.accumulate(B[:, :, ::-1], axis=2)[:, :, ::-1].reshape(n, m)
    t = np.arange(S)
    out: np.ndarray = np.minimum(suffix[:, t], prefix[:, t + W - 1])
    return out


@dataclass(frozen=True)
class Jumps:
    """Points that jump above their trailing median: series index, step index, and the numbers.

    All arrays have one entry per flagged point, sorted by (series, step).
    """

    series: np.ndarray
    index: np.ndarray
    value: np.ndarray  # the (log) value at the point
    median: np.ndarray  # the trailing median it is compared with (log)
    z: np.ndarray  # robust z-score: (value − median) / max(1.4826 · MAD, floor)


def robust_jumps(X: np.ndarray, *, window: int, history: int, z_min: float, jump: float, floor: float) -> Jumps:
    """Points of log-series ``X`` (n, S) at least ``jump`` (log units) and ``z_min`` robust σ above
    the median of the previous ``window`` values, with at least ``history`` finite values in it.

    Only points ``jump`` above their trailing *minimum* can qualify, so the medians are taken at
    those candidates only.
    """
    n, S = X.shape
    empty = np.zeros(0, dtype=np.int64)
    if S < 2:
        return Jumps(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0))
    with np.errstate(invalid="ignore"):
        cand_i, cand_t = np.nonzero(X - trailing_min(X, window) >= jump)
    if cand_i.size == 0:
        return Jumps(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0))
    padded = np.concatenate([np.full((n, window), np.nan), X], axis=1)
    windows = sliding_window_view(padded, window, axis=1)[cand_i, cand_t]  # (k, window): X[i, t−W:t]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: their median is NaN
        med = np.nanmedian(windows, axis=1)
        mad = np.nanmedian(np.abs(windows - med[:, None]), axis=1)
    count = np.isfinite(windows).sum(axis=1)
    value = X[cand_i, cand_t]
    z = (value - med) / np.maximum(_MAD_TO_SIGMA * mad, floor)
    keep = (count >= history) & (value - med >= jump) & (z > z_min)
    return Jumps(cand_i[keep], cand_t[keep], value[keep], med[keep], z[keep])


def rolling_median(x: np.ndarray, w: int, points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trailing medians of ``w`` consecutive finite values of ``x`` (at most ``points`` of them).

    Returns:
        (medians, index): medians[j] is the median of the finite values ending at
        ``x[index[j]]``; both empty when ``x`` has fewer than ``w`` finite values. With
        ``points``, long runs are read at evenly spaced ends (the last one always), which keeps
        the cost at O(points · w) rather than O(S · w).
    """
    idx = np.flatnonzero(np.isfinite(x))
    if idx.size < w:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    windows = sliding_window_view(np.asarray(x, dtype=float)[idx], w)
    ends = np.arange(windows.shape[0])
    if points is not None and ends.size > points:
        ends = np.unique(np.r_[np.linspace(0, ends.size - 1, points).round().astype(np.int64), ends.size - 1])
    return np.median(windows[ends], axis=1), idx[w - 1 :][ends]


def first_true(flags: np.ndarray) -> int | None:
    """The index of the first True (None when none)."""
    hit = np.flatnonzero(flags)
    return int(hit[0]) if hit.size else None


def start_level(x: np.ndarray, n: int) -> float:
    """The median of the first ``n`` finite values of ``x`` (NaN when none): the level at the start."""
    vals = np.asarray(x, dtype=float)
    vals = vals[np.isfinite(vals)][:n]
    return float(np.median(vals)) if vals.size else math.nan
