"""Drawing helpers of the monitor's figures: what a log axis cannot show, events, depth colours, thinning.

A log axis silently drops exact zeros and NaN/Inf; these helpers draw only the finite
positive values as lines and mark the others at the axis edges (▼ grey at the bottom for an
exact 0, ✕ red at the top for NaN/Inf), so that nothing recorded is hidden. Long runs are
thinned for drawing only (min and max of each bin are kept, so spikes survive), never for
the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex

__all__ = [
    "EVENT_COLORS",
    "NONFINITE_COLOR",
    "ZERO_COLOR",
    "EventLike",
    "Marks",
    "bin_columns",
    "clip_threshold",
    "depth_colors",
    "draw_events",
    "edge_marks",
    "envelope",
    "event_colors",
    "log_series",
    "thin",
]

ZERO_COLOR = "#7f7f7f"
NONFINITE_COLOR = "#d62728"
# one colour per event kind of the verdict's contract; none equals a line or mark colour above
EVENT_COLORS = {
    "grad_spike": "#ff7f0e",
    "loss_spike": "#9467bd",
    "param_blowup": "#8c564b",
    "update_ratio_high": "#e377c2",
    "loss_rising": "#bcbd22",
    "loss_above_chance": "#17becf",
    "divergence": "#393b79",
    "nonfinite": "#f0027f",
    "saturation": "#637939",
    "clip_saturated": "#a6761d",
}
_SPARE_COLORS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")


class EventLike(Protocol):
    """What the figures read of a :class:`gradwatch.monitor.verdict.Event`."""

    @property
    def step(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def layer(self) -> str | None: ...


@dataclass
class Marks:
    """Steps whose values a log axis cannot show, gathered over the series of one panel."""

    drawn: int = 0  # finite positive values (drawn as lines)
    zero_x: list[np.ndarray] | None = None
    bad_x: list[np.ndarray] | None = None

    def add(self, drawn: int, zero_x: np.ndarray, bad_x: np.ndarray) -> None:
        """Add one series' counts and the x positions of its zeros and NaN/Inf."""
        self.drawn += drawn
        self.zero_x = [*(self.zero_x or []), zero_x]
        self.bad_x = [*(self.bad_x or []), bad_x]

    @property
    def zeros(self) -> np.ndarray:
        """x of every exact zero (all series)."""
        return np.concatenate(self.zero_x) if self.zero_x else np.zeros(0)

    @property
    def bad(self) -> np.ndarray:
        """x of every NaN/Inf (all series)."""
        return np.concatenate(self.bad_x) if self.bad_x else np.zeros(0)


def envelope(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of ``y`` to draw: all when ``len(y) <= max_points``, else per bin its min, max and a NaN.

    Bins are consecutive runs of indices; keeping the minimum and maximum keeps spikes and
    dips visible, and keeping one NaN per bin keeps the gaps of a line. At most
    ``max_points`` indices (sorted) are returned.
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    nb = max(max_points // 3, 1)
    k = math.ceil(n / nb)
    nb = math.ceil(n / k)
    pad = np.full(nb * k, np.nan)
    pad[:n] = y
    Y = pad.reshape(nb, k)
    valid = (np.arange(nb * k) < n).reshape(nb, k)
    fin = np.isfinite(Y)
    gap = ~fin & valid
    base = np.arange(nb) * k
    any_fin = fin.any(axis=1)
    lo = base + np.argmin(np.where(fin, Y, np.inf), axis=1)
    hi = base + np.argmax(np.where(fin, Y, -np.inf), axis=1)
    first_gap = base + np.argmax(gap, axis=1)
    idx = np.concatenate([lo[any_fin], hi[any_fin], first_gap[gap.any(axis=1)]])
    return np.unique(idx)


def thin(x: np.ndarray, max_points: int) -> np.ndarray:
    """``x`` (sorted or not) with at most one value per 1/``max_points`` of its range: marks to draw."""
    x = np.unique(np.asarray(x, dtype=float))
    if len(x) <= max_points:
        return x
    lo, hi = x[0], x[-1]
    bins = np.minimum(((x - lo) / (hi - lo) * max_points).astype(np.int64), max_points - 1)
    _, first = np.unique(bins, return_index=True)
    return x[first]


def log_series(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    marks: Marks,
    *,
    nan_is_missing: bool = False,
    max_points: int = 2000,
    fmt: str = ".-",
    **style: object,
) -> None:
    """Draw the finite positive values of ``y`` against ``x`` on ``ax``; note zeros and NaN/Inf in ``marks``.

    Args:
        nan_is_missing: NaN means "not measured" here (sparse columns such as the update
            ratio): NaN steps are skipped and joined over, and only ±Inf counts as non-finite.
            Otherwise every step was measured, a NaN is a NaN, and the line breaks there.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if nan_is_missing:
        keep = ~np.isnan(y)
        x, y = x[keep], y[keep]
    pos = np.isfinite(y) & (y > 0)
    marks.add(int(pos.sum()), x[y == 0], x[~np.isfinite(y)])
    y_draw = np.where(pos, y, np.nan)
    idx = envelope(y_draw, max_points)
    if pos.any():
        ax.plot(x[idx], y_draw[idx], fmt, **style)  # type: ignore[arg-type]


def edge_marks(ax: Axes, marks: Marks, *, max_points: int = 2000, what: str = "values") -> None:
    """Mark exact zeros (▼, bottom edge) and NaN/Inf (✕, top edge) on ``ax``; make the log axis sensible.

    With no finite positive value the axis gets fixed limits (1e-1, 1e1) rather than an
    empty auto-scale; when most values cannot be drawn a note says how many.
    """
    zeros, bad = marks.zeros, marks.bad
    trans = ax.get_xaxis_transform()  # x in data, y in axes: marks never change the y range
    if zeros.size:
        zx = thin(zeros, max_points)
        (line,) = ax.plot(zx, np.zeros(len(zx)), "v", color=ZERO_COLOR, ms=5, transform=trans, clip_on=False)
        line.set_label("0 (exact; bottom edge)")
        line.set_gid("gradwatch:zero")
    if bad.size:
        bx = thin(bad, max_points)
        (line,) = ax.plot(bx, np.ones(len(bx)), "X", color=NONFINITE_COLOR, ms=6, transform=trans, clip_on=False)
        line.set_label("NaN/Inf (top edge)")
        line.set_gid("gradwatch:nonfinite")
    ax.set_yscale("log")
    n_hidden = len(zeros) + len(bad)
    note = ""
    if marks.drawn == 0:
        ax.set_ylim(1e-1, 1e1)
        note = f"no finite positive {what} to draw: {len(bad)} NaN/Inf, {len(zeros)} exact 0"
    elif n_hidden > marks.drawn:
        note = f"{n_hidden} of {n_hidden + marks.drawn} {what} not drawable: {len(bad)} NaN/Inf, {len(zeros)} exact 0"
    if note:
        ax.text(
            0.5,
            0.5,
            note,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            gid="gradwatch:note",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": NONFINITE_COLOR},
        )


def bin_columns(
    steps: np.ndarray, values: np.ndarray, max_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin a (L, S) matrix of positive quantities into at most ``max_cols`` columns for a heat map.

    Returns:
        ``(x_edges (B+1,), log10 mean (L, B), has_zero (L, B), has_nonfinite (L, B))``: each
        column is the mean of log10 over the finite positive values of its steps (a geometric
        mean; NaN when none); a column is flagged when any of its steps is 0 or NaN/Inf.
        Edges lie halfway between the neighbouring columns' steps.
    """
    values = np.asarray(values, dtype=float)
    steps = np.asarray(steps, dtype=float)
    L, S = values.shape
    k = max(math.ceil(S / max_cols), 1)
    B = math.ceil(S / k)
    pad = B * k - S
    V = np.pad(values, ((0, 0), (0, pad)), constant_values=1.0).reshape(L, B, k)
    real = (np.arange(B * k) < S).reshape(B, k)
    pos = np.isfinite(V) & (V > 0) & real
    logs = np.log10(np.where(pos, V, 1.0))
    count = pos.sum(axis=2)
    mean = np.divide(logs.sum(axis=2), count, out=np.full((L, B), np.nan), where=count > 0)
    has_zero = ((V == 0) & real).any(axis=2)
    has_bad = (~np.isfinite(V) & real).any(axis=2)
    first = steps[np.arange(B) * k]
    last = steps[np.minimum(np.arange(B) * k + k - 1, S - 1)]
    if B > 1:
        inner = (last[:-1] + first[1:]) / 2
        edges = np.concatenate([[first[0] - (inner[0] - last[0])], inner, [last[-1] + (first[-1] - inner[-1])]])
    else:
        half = max((last[0] - first[0]) / 2, 0.5)
        mid = (first[0] + last[0]) / 2
        edges = np.array([mid - half, mid + half]) if last[0] > first[0] else np.array([first[0] - 0.5, first[0] + 0.5])
    return edges, mean, has_zero, has_bad


def depth_colors(n: int) -> list[str]:
    """``n`` distinct colours sampled in depth order from viridis (input side dark, output side yellow).

    Distinct for ``n`` ≤ 256 (viridis has 256 entries); the callers draw fewer lines than that.
    """
    cmap = colormaps["viridis"]
    if n <= 1:
        return [to_hex(cmap(0.5))] * n
    return [to_hex(cmap(i / (n - 1))) for i in range(n)]


def event_colors(kinds: Iterable[str]) -> dict[str, str]:
    """The colour of each event kind: the contract's kinds fixed, others from a spare palette."""
    out: dict[str, str] = {}
    spare = iter(_SPARE_COLORS)
    for kind in kinds:
        if kind in out:
            continue
        out[kind] = EVENT_COLORS.get(kind) or next(spare, "#444444")
    return out


def draw_events(
    ax: Axes,
    events: Sequence[EventLike],
    colors: dict[str, str],
    *,
    rows: dict[str, int] | None = None,
    legend: bool = False,
) -> None:
    """Mark events on a step axis: a dotted vertical line per event, or (``rows``) a ring on its layer's row.

    Args:
        rows: layer name → y of its row in a heat map; events attributed to a layer found
            there are drawn as rings at (step, row), the others as vertical lines.
        legend: label the artists "<kind> (<count>)" so that the panel's legend lists them.
    """
    by_kind: dict[str, list[EventLike]] = {}
    for e in events:
        by_kind.setdefault(str(e.kind), []).append(e)
    trans = ax.get_xaxis_transform()
    for kind, evs in by_kind.items():
        color = colors[kind]
        label = f"event: {kind} ({len(evs)})" if legend else "_nolegend_"
        ringed: list[EventLike] = []
        lined: list[EventLike] = []
        for e in evs:
            (ringed if rows is not None and e.layer is not None and e.layer in rows else lined).append(e)
        if lined:
            coll = ax.vlines(
                [float(e.step) for e in lined], 0, 1, transform=trans, colors=color, linestyles=":", lw=1.2
            )
            coll.set_gid(f"gradwatch:event:{kind}")
            coll.set_label(label)
            label = "_nolegend_"
        if ringed and rows is not None:
            (line,) = ax.plot(
                [float(e.step) for e in ringed],
                [float(rows[str(e.layer)]) for e in ringed],
                "o",
                mfc="none",
                mec=color,
                mew=1.5,
                ms=8,
            )
            line.set_gid(f"gradwatch:event:{kind}")
            line.set_label(label)


def clip_threshold(pre: np.ndarray, post: np.ndarray) -> tuple[float, int, int, tuple[float, float]]:
    """Infer a global-norm clip threshold from the recorded pre- and post-clip norms.

    ``clip_grad_norm_(max_norm)`` scales a gradient whose norm exceeds ``max_norm`` to
    ``max_norm·‖g‖/(‖g‖+1e-6)``, so the post-clip norm of every clipped step is the
    threshold. A step counts as clipped when its post-clip norm is below its pre-clip norm
    by more than 0.01 %.

    Returns:
        ``(threshold, n_clipped, n_seen, (lowest, highest) post-clip norm of clipped steps)``.
        The threshold is the median post-clip norm of the clipped steps when all of them lie
        within 1 % of it; NaN when nothing was clipped or they disagree (value clipping,
        adaptive clipping such as AutoClip: no single threshold).
    """
    pre = np.asarray(pre, dtype=float)
    post = np.asarray(post, dtype=float)
    seen = np.isfinite(pre) & np.isfinite(post)
    clipped = seen & (post < pre * (1 - 1e-4))
    n_clipped, n_seen = int(clipped.sum()), int(seen.sum())
    if not n_clipped:
        return math.nan, 0, n_seen, (math.nan, math.nan)
    vals = post[clipped]
    span = (float(vals.min()), float(vals.max()))
    med = float(np.median(vals))
    if med > 0 and bool(np.all(np.abs(vals - med) <= 0.01 * med)):
        return med, n_clipped, n_seen, span
    return math.nan, n_clipped, n_seen, span
