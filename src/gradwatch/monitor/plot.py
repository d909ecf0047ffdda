"""The monitor's own figures: gradient flow heat map, global norm and clipping, update ratios, saturation, time profile.

They live beside the monitor (not in gradwatch.report) so that ``Monitor.plot`` and
``gradwatch show`` need nothing above the monitor layer. matplotlib's object API is used
(``Figure``), never pyplot. Nothing recorded is hidden: exact zeros and NaN/Inf, which a
log axis would drop, are marked (see :mod:`gradwatch.monitor.plot_marks`), and the
verdict's events are drawn on the step axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import make_axes_gridspec
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gradwatch._checks import positive_int
from gradwatch._output import save_figure
from gradwatch.errors import check_writable
from gradwatch.monitor.history import History
from gradwatch.monitor.plot_marks import (
    NONFINITE_COLOR,
    ZERO_COLOR,
    EventLike,
    Marks,
    bin_columns,
    clip_threshold,
    depth_colors,
    draw_events,
    edge_marks,
    event_colors,
    log_series,
)

__all__ = ["history_figure", "plot_history", "plot_time_profile", "summary_table", "time_profile_figure"]

MAX_LINES = 32  # per-layer lines drawn in one panel; deeper models show the first, last and extreme layers
PRE_COLOR, POST_COLOR, THRESHOLD_COLOR = "#000000", "#1f77b4", "#2ca02c"
UPDATE_REFERENCE = 1e-3  # the usual healthy order of ‖Δθ‖/‖θ‖ per step (a rule of thumb, not a threshold)


def history_figure(
    history: History,
    *,
    verdict: object | None = None,
    events: Iterable[EventLike] | None = None,
    clip_threshold: float | None = None,
    max_points: int = 2000,
) -> Figure:
    """Build the monitor's figure: gradient flow, global norm and clipping, update ratios, saturation, time.

    Args:
        history: what the monitor recorded.
        verdict: a :class:`~gradwatch.monitor.verdict.Verdict`; its ``events`` are marked on
            the step axis (read by attribute, so any object with ``events`` will do).
        events: events to mark instead of the verdict's (anything with ``step``, ``kind``,
            ``layer``); events attributed to a layer are ringed on its row of the heat map.
        clip_threshold: the global-norm clip threshold, drawn as a dashed line; by default it
            is inferred from the recorded post-clip norms of clipped steps (drawn only when
            they agree to 1 %).
        max_points: at most this many columns of the heat map and points per line; longer
            runs are binned for drawing only (geometric mean per column, min and max per bin
            of each line, every zero or NaN/Inf bin marked).

    Raises:
        ConfigError: ``max_points`` is not an integer ≥ 10.
    """
    max_points = positive_int(max_points, "max_points", "history_figure", minimum=10)
    marked = sorted(
        tuple(events) if events is not None else tuple(getattr(verdict, "events", ()) or ()),
        key=lambda e: int(e.step),
    )
    colors = event_colors(str(e.kind) for e in marked)
    has_update = bool(np.isfinite(history.layer_matrix("update_ratio")).any())
    kinds = ["flow", "grad", *(["update"] if has_update else []), *(["activations"] if history.activations else [])]
    kinds += ["time"] if history.time_profiles else []
    kinds += ["lyapunov"] if history.lyapunov else []
    fig = Figure(figsize=(11, 3.2 * len(kinds)))
    axes = dict(zip(kinds, fig.subplots(len(kinds), 1, squeeze=False)[:, 0], strict=True))
    for kind, ax in axes.items():
        ax.set_gid(f"gradwatch:panel:{kind}")
        if kind not in ("flow", "time", "lyapunov"):
            ax.sharex(axes["flow"])
    _flow_panel(fig, axes["flow"], history, marked, colors, max_points)
    _grad_panel(axes["grad"], history, marked, colors, clip_threshold, max_points)
    if has_update:
        _update_panel(fig, axes["update"], history, marked, colors, max_points)
    if history.activations:
        _activation_panel(fig, axes["activations"], history, marked, colors, max_points)
    if history.time_profiles:
        step, prof, hid = history.time_profiles[-1]
        _profile_axes(axes["time"], prof, hid, max_points)
        axes["time"].set_title(f"Gradient over time (step {step})")
    if history.lyapunov:
        _lyapunov_panel(axes["lyapunov"], history)
    return fig


def _lyapunov_panel(ax: Axes, history: History) -> None:
    """λ_1..λ_k of each recurrent module against the step: λ_1 solid, the others fainter; 0 marked."""
    modules = list(dict.fromkeys(name for _, e in history.lyapunov for name in e))
    for j, name in enumerate(modules):
        rows = [(step, np.asarray(e[name], dtype=float)) for step, e in history.lyapunov if name in e]
        steps = np.array([s for s, _ in rows])
        k = max(len(v) for _, v in rows)
        values = np.full((len(rows), k), np.nan)
        for i, (_, v) in enumerate(rows):
            values[i, : len(v)] = v
        for i in range(k):
            line = ax.plot(
                steps,
                values[:, i],
                "o-" if i == 0 else "-",
                color=f"C{j}",
                lw=1.5 if i == 0 else 0.8,
                ms=3,
                alpha=1.0 if i == 0 else 0.4,
                label=f"{name or '(model)'} λ₁" if i == 0 else (f"{name or '(model)'} λ₂..λ{k}" if i == 1 else None),
            )[0]
            line.set_gid(f"gradwatch:lyapunov:{name}:{i + 1}")
    ax.axhline(0.0, color="#999999", lw=0.8)
    ax.set_title("Lyapunov exponents of the recurrent modules (> 0: perturbations grow; ≪ 0: memory fades)")
    ax.set_xlabel("step")
    ax.set_ylabel("λ_i (nats per time step)")
    ax.legend(loc="best", fontsize=7)


def plot_history(
    history: History,
    path: str | Path,
    *,
    verdict: object | None = None,
    events: Iterable[EventLike] | None = None,
    clip_threshold: float | None = None,
    max_points: int = 2000,
) -> Path:
    """Write :func:`history_figure` as a PNG (same arguments).

    Raises:
        OutputError: ``path`` cannot be written.
        ConfigError: ``max_points`` is not an integer ≥ 10.
    """
    p = check_writable(path, "plot file")
    fig = history_figure(history, verdict=verdict, events=events, clip_threshold=clip_threshold, max_points=max_points)
    return save_figure(fig, p)


def _names(history: History) -> list[str]:
    return [n or "(model)" for n in history.layers]


def _flow_panel(
    fig: Figure, ax: Axes, history: History, events: list[EventLike], colors: dict[str, str], max_points: int
) -> None:
    """Layer × step heat map of log10 ‖g‖; zero and NaN/Inf cells in their own colours; events ringed."""
    names = _names(history)
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input → output)")
    ax.set_title("Gradient flow: log10 of each layer's gradient norm")
    if not (history.n_steps and names):
        ax.text(0.5, 0.5, "nothing recorded", transform=ax.transAxes, ha="center", gid="gradwatch:note")
        return
    edges, logs, zero, bad = bin_columns(history.steps, history.layer_matrix("grad_norm"), max_points)
    finite = logs[np.isfinite(logs)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    y_edges = np.arange(len(names) + 1) - 0.5
    mesh = ax.pcolormesh(edges, y_edges, np.ma.masked_invalid(logs), cmap="viridis", norm=Normalize(lo, hi))
    mesh.set_gid("gradwatch:heat")
    fig.colorbar(mesh, ax=ax, label="log10 ‖∂L/∂θ‖ (per layer)")
    handles = []
    if zero.any() or bad.any():
        # NaN/Inf wins over 0 in a binned column: the more alarming one is never covered
        category = np.where(bad, 1.0, np.where(zero, 0.0, np.nan))
        marks = ax.pcolormesh(
            edges,
            y_edges,
            np.ma.masked_invalid(category),
            cmap=ListedColormap([ZERO_COLOR, NONFINITE_COLOR]),
            norm=BoundaryNorm([-0.5, 0.5, 1.5], 2),
        )
        marks.set_gid("gradwatch:heat_marks")
        handles += [Patch(facecolor=ZERO_COLOR, label="0 (exact)")] if zero.any() else []
        handles += [Patch(facecolor=NONFINITE_COLOR, label="NaN/Inf")] if bad.any() else []
    draw_events(ax, events, colors, rows={n: i for i, n in enumerate(history.layers)})
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(len(names) - 0.5, -0.5)
    step = math.ceil(len(names) / 30)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([n if i % step == 0 else "" for i, n in enumerate(names)], fontsize=7)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    if bad.mean() > 0.5:
        ax.text(
            0.01,
            0.03,
            f"{bad.mean():.0%} of layer-steps are NaN/Inf; the colour scale spans the finite rest",
            transform=ax.transAxes,
            fontsize=8,
            gid="gradwatch:note",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": NONFINITE_COLOR},
        )


def _grad_panel(
    ax: Axes,
    history: History,
    events: list[EventLike],
    colors: dict[str, str],
    threshold: float | None,
    max_points: int,
) -> None:
    """Global ‖g‖ as recorded (before the user's clipping), after clipping, and the clip threshold."""
    pre, post = np.asarray(history.clip_pre), np.asarray(history.clip_post)
    clipping_seen = bool(np.isfinite(post).any())
    marks = Marks()
    label = "‖g‖ recorded by mon.step(), before your clipping" if clipping_seen else "‖g‖ recorded by mon.step()"
    log_series(
        ax,
        history.steps,
        history.global_grad_norm,
        marks,
        max_points=max_points,
        color=PRE_COLOR,
        lw=1,
        ms=2,
        label=label,
        gid="gradwatch:pre",
    )
    title = "Global gradient norm"
    if clipping_seen:
        title += " before and after your clipping"
        log_series(
            ax,
            history.steps,
            post,
            marks,
            nan_is_missing=True,
            max_points=max_points,
            fmt=".--",
            color=POST_COLOR,
            lw=1,
            ms=3,
            label="‖g‖ after clipping (what the optimizer used)",
            gid="gradwatch:post",
        )
    inferred, n_clipped, n_seen, (low, high) = clip_threshold(pre, post)
    source = "given"
    if threshold is None:
        threshold, source = inferred, "inferred from post-clip norms"
    if threshold is not None and math.isfinite(threshold) and threshold > 0:
        rate = f"; clipped {n_clipped} of {n_seen} steps" if n_seen else ""
        line = ax.axhline(threshold, color=THRESHOLD_COLOR, ls="--", lw=1.2)
        line.set_label(f"clip threshold {threshold:.3g} ({source}{rate})")
        line.set_gid("gradwatch:clip_threshold")
    elif n_clipped:
        title += f" (post-clip norms {low:.2g}–{high:.2g} on clipped steps: no single threshold)"
    edge_marks(ax, marks, max_points=max_points, what="norms")
    draw_events(ax, events, colors, legend=True)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("global ‖g‖")
    _legend_below(ax)


def _layer_subset(values: np.ndarray) -> list[int]:
    """Rows to draw: all up to MAX_LINES, else the first, the last, the most extreme and evenly spaced ones."""
    n = values.shape[0]
    if n <= MAX_LINES:
        return list(range(n))
    drawable = np.isfinite(values) & (values > 0)
    logs = np.log10(np.where(drawable, values, 1.0))
    top = np.where(drawable, logs, -np.inf).max(axis=1)
    bottom = np.where(drawable, -logs, -np.inf).max(axis=1)
    chosen = {0, n - 1}
    for order in (np.argsort(-top, kind="stable"), np.argsort(-bottom, kind="stable")):
        chosen.update(int(i) for i in order[: MAX_LINES // 4])
    for i in np.linspace(0, n - 1, MAX_LINES).astype(int):
        if len(chosen) >= MAX_LINES:
            break
        chosen.add(int(i))
    return sorted(chosen)


def _depth_colorbar(fig: Figure, ax: Axes, labels: list[str], colors: list[str], title: str) -> None:
    """A discrete colour bar naming the drawn layers, input side first: the legend of a depth colouring."""
    n = len(labels)
    mappable = ScalarMappable(norm=BoundaryNorm(np.arange(n + 1) - 0.5, n), cmap=ListedColormap(colors))
    every = math.ceil(n / 12)
    shown = sorted({*range(0, n, every), n - 1})
    bar = fig.colorbar(mappable, ax=ax, ticks=shown, label=title)
    bar.ax.set_yticklabels([labels[i] for i in shown], fontsize=7)
    bar.ax.invert_yaxis()  # input side at the top, as in the heat map
    bar.ax.set_gid("gradwatch:depth_colorbar")


def _update_panel(
    fig: Figure, ax: Axes, history: History, events: list[EventLike], colors: dict[str, str], max_points: int
) -> None:
    """‖Δθ‖/‖θ‖ per layer, coloured by depth (viridis), with the 1e-3 rule of thumb and the events."""
    names = _names(history)
    upd = history.layer_matrix("update_ratio")
    # History cannot tell "not measured" from a measured NaN: a NaN counts as measured only on
    # steps where some other layer has a value (the weights were measured that step)
    measured = np.isfinite(upd).any(axis=0) | np.isinf(upd).any(axis=0)
    rows = _layer_subset(upd)
    shades = depth_colors(len(rows))
    marks = Marks()
    steps = history.steps[measured]
    for shade, i in zip(shades, rows, strict=True):
        log_series(
            ax,
            steps,
            upd[i, measured],
            marks,
            max_points=max_points,
            color=shade,
            lw=1,
            ms=3,
            gid=f"gradwatch:update:{names[i]}",
        )
    ref = ax.axhline(UPDATE_REFERENCE, color="#999999", lw=0.8, ls="-.")
    ref.set_gid("gradwatch:update_reference")
    ax.text(
        0.995,
        UPDATE_REFERENCE,
        "~1e-3 (rule of thumb)",
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize=7,
        color="#666666",
    )
    edge_marks(ax, marks, max_points=max_points, what="update ratios")
    draw_events(ax, events, colors)
    shown = "" if len(rows) == len(names) else f" ({len(rows)} of {len(names)} layers: first, last, extremes)"
    ax.set_title("Update / weight ratio per layer" + shown)
    ax.set_xlabel("step")
    ax.set_ylabel("‖Δθ‖ / ‖θ‖")
    _depth_colorbar(fig, ax, [names[i] for i in rows], shades, "layer (input → output)")
    if marks.zeros.size or marks.bad.size:
        ax.legend(loc="upper left", fontsize=7)


def _activation_panel(
    fig: Figure, ax: Axes, history: History, events: list[EventLike], colors: dict[str, str], max_points: int
) -> None:
    """Saturated or dead fraction per activation module, coloured by depth; NaN marked at the top edge."""
    drawn = [(n, a) for n, a in history.activations.items() if a.kind != "none"]
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of units")
    ax.set_ylim(-0.02, 1.02)
    if not drawn:
        ax.set_title("No saturating or rectifying activation module to measure (LSTM/GRU gates are internal)")
        return
    ax.set_title("Saturated (σ′ < 1 % of max) or dead (0 for the whole batch) units")
    shades = depth_colors(len(drawn))
    bad: list[np.ndarray] = []
    for shade, (name, a) in zip(shades, drawn, strict=True):
        ok = np.isfinite(a.fraction)
        bad.append(np.asarray(a.steps, dtype=float)[~ok])
        ax.plot(a.steps[ok], a.fraction[ok], ".-", color=shade, lw=1, ms=3, gid=f"gradwatch:activation:{name}")
    nonfinite = np.concatenate(bad)
    if nonfinite.size:
        (line,) = ax.plot(
            np.unique(nonfinite),
            np.ones(len(np.unique(nonfinite))),
            "X",
            color=NONFINITE_COLOR,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="NaN (top edge)",
        )
        line.set_gid("gradwatch:nonfinite")
        ax.legend(loc="upper left", fontsize=7)
    draw_events(ax, events, colors)
    _depth_colorbar(fig, ax, [f"{n} ({a.kind})" for n, a in drawn], shades, "module (input → output)")


def _legend_below(ax: Axes) -> None:
    """The panel's legend under it, and an empty colour-bar slot beside it: every step axis then has one width."""
    slot, _ = make_axes_gridspec(ax)
    slot.set_axis_off()
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def _profile_axes(ax: Axes, profile: np.ndarray, hidden: np.ndarray | None, max_points: int) -> None:
    """‖∂L/∂u_t‖ (and ‖∂L/∂h_t‖) against t on a log axis, zeros and NaN/Inf marked at the edges."""
    marks = Marks()
    prof = np.asarray(profile, dtype=float)
    log_series(ax, np.arange(len(prof)), prof, marks, max_points=max_points, color="C0", ms=3, label="‖∂L/∂u_t‖")
    if hidden is not None:
        hid = np.asarray(hidden, dtype=float)
        log_series(ax, np.arange(len(hid)), hid, marks, max_points=max_points, color="C1", ms=3, label="‖∂L/∂h_t‖")
    edge_marks(ax, marks, max_points=max_points, what="gradient norms")
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm")
    ax.legend(fontsize=8)


def time_profile_figure(profile: np.ndarray, hidden: np.ndarray | None = None) -> Figure:
    """Build the figure of ‖∂L/∂u_t‖ (and ‖∂L/∂h_t‖) against t on a log axis; zeros and NaN/Inf marked."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    _profile_axes(ax, profile, hidden, 2000)
    ax.set_title("Gradient over time")
    return fig


def plot_time_profile(profile: np.ndarray, path: str | Path, hidden: np.ndarray | None = None) -> Path:
    """Write :func:`time_profile_figure` as a PNG.

    Raises:
        OutputError: ``path`` cannot be written.
    """
    p = check_writable(path, "plot file")
    return save_figure(time_profile_figure(profile, hidden), p)


def summary_table(history: History, module_types: dict[str, str]) -> Any:
    """A rich Table: per layer, the latest and median gradient norm, max |g|, ‖θ‖ and update ratio."""
    from rich.table import Table

    table = Table(title=f"gradwatch — {history.n_steps} recorded steps")
    for col in ("layer", "type", "‖g‖ last", "‖g‖ median", "max|g| last", "‖θ‖ last", "update ratio median"):
        table.add_column(col, justify="right" if col != "layer" else "left")

    def med(a: np.ndarray) -> str:
        fin = a[np.isfinite(a)]
        return f"{np.median(fin):.3g}" if fin.size else "nan"

    for name, lh in history.layers.items():
        if history.n_steps == 0:
            continue
        table.add_row(
            name or "(model)",
            module_types.get(name, ""),
            f"{lh.grad_norm[-1]:.3g}",
            med(lh.grad_norm),
            f"{lh.grad_max[-1]:.3g}",
            f"{lh.param_norm[-1]:.3g}",
            med(lh.update_ratio),
        )
    return table
