"""The monitor's own figures: gradient flow heat map, saturation, update ratios, time profile.

They live beside the monitor (not in gradwatch.report) so that ``Monitor.plot`` and
``gradwatch show`` need nothing above the monitor layer. matplotlib's object API is used
(``Figure``), never pyplot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from gradwatch._output import save_figure
from gradwatch.errors import check_writable
from gradwatch.monitor.history import History

__all__ = ["plot_history", "plot_time_profile", "summary_table"]


def _log10(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.asarray(a, dtype=float))
    out[~np.isfinite(out)] = np.nan
    result: np.ndarray = out
    return result


def plot_history(history: History, path: str | Path) -> Path:
    """Draw the layer × step heat map of log10 ‖g‖ with saturation, update-ratio and time panels.

    Non-finite norms are drawn in red; missing values are left blank. Layers run top to
    bottom in depth order (input side first).

    Raises:
        OutputError: ``path`` cannot be written.
    """
    p = check_writable(path, "plot file")
    n_panels = 2 + bool(history.activations) + bool(history.time_profiles)
    fig = Figure(figsize=(11, 3.2 * n_panels))
    axes = fig.subplots(n_panels, 1, squeeze=False)[:, 0]
    names = [n or "(model)" for n in history.layers]
    grad = history.layer_matrix("grad_norm")
    ax = axes[0]
    if history.n_steps and names:
        logs = _log10(grad)
        finite = logs[np.isfinite(logs)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        steps = history.steps
        extent = (steps[0] - 0.5, steps[-1] + 0.5, len(names) - 0.5, -0.5)
        im = ax.imshow(
            logs,
            aspect="auto",
            interpolation="nearest",
            extent=extent,
            norm=Normalize(lo, hi),
            cmap="viridis",
        )
        fig.colorbar(im, ax=ax, label="log10 ‖∂L/∂θ‖ (per layer)")
        bad = ~np.isfinite(grad)
        if bad.any():
            ys, xs = np.nonzero(bad)
            ax.scatter(steps[xs], ys, marker="s", color="red", s=12, label="NaN/Inf")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(
            names
            if len(names) <= 30
            else [n if i % math.ceil(len(names) / 30) == 0 else "" for i, n in enumerate(names)],
            fontsize=7,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input → output)")
    ax.set_title("Gradient flow: log10 of each layer's gradient norm")

    ax = axes[1]
    upd = history.layer_matrix("update_ratio")
    if np.isfinite(upd).any():
        for i, n in enumerate(names):
            # measured only every `weights_every` steps: draw the measured points, joined
            ok = np.isfinite(upd[i]) & (upd[i] > 0)
            ax.semilogy(history.steps[ok], upd[i][ok], ".-", lw=1, ms=3, label=n)
        ax.set_ylabel("‖Δθ‖ / ‖θ‖")
        ax.set_title("Update / weight ratio per layer")
        if len(names) <= 12:
            ax.legend(fontsize=7, ncol=1 if len(names) <= 6 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.semilogy(history.steps, np.where(history.global_grad_norm > 0, history.global_grad_norm, np.nan), "k-")
        ax.set_ylabel("global ‖g‖")
        ax.set_title("Global gradient norm (no optimizer given: no update ratios)")
    ax.set_xlabel("step")

    k = 2
    if history.activations:
        ax = axes[k]
        k += 1
        drawn = [(n, a) for n, a in history.activations.items() if a.kind != "none"]
        for n, a in drawn:
            ax.plot(a.steps, a.fraction, ".-", label=f"{n} ({a.kind})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("fraction of units")
        title = "Saturated (σ′ < 1 % of max) or dead (0 for the whole batch) units"
        ax.set_title(
            title if drawn else "No saturating or rectifying activation module to measure (LSTM/GRU gates are internal)"
        )
        if drawn and len(drawn) <= 12:
            ax.legend(fontsize=7, ncol=1 if len(drawn) <= 6 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if history.time_profiles:
        ax = axes[k]
        step, prof, hid = history.time_profiles[-1]
        t = np.arange(len(prof))
        ax.semilogy(t, np.where(prof > 0, prof, np.nan), "C0.-", label="‖∂L/∂u_t‖")
        if hid is not None:
            ax.semilogy(np.arange(len(hid)), np.where(hid > 0, hid, np.nan), "C1.-", label="‖∂L/∂h_t‖")
        ax.set_xlabel("time step t")
        ax.set_ylabel("gradient norm")
        ax.set_title(f"Gradient over time (step {step})")
        ax.legend(fontsize=8)
    return save_figure(fig, p)


def plot_time_profile(profile: np.ndarray, path: str | Path, hidden: np.ndarray | None = None) -> Path:
    """Draw ‖∂L/∂u_t‖ (and ‖∂L/∂h_t‖) against t on a log axis.

    Raises:
        OutputError: ``path`` cannot be written.
    """
    p = check_writable(path, "plot file")
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    prof = np.asarray(profile, dtype=float)
    ax.semilogy(np.arange(len(prof)), np.where(prof > 0, prof, np.nan), "C0.-", label="‖∂L/∂u_t‖")
    if hidden is not None:
        hid = np.asarray(hidden, dtype=float)
        ax.semilogy(np.arange(len(hid)), np.where(hid > 0, hid, np.nan), "C1.-", label="‖∂L/∂h_t‖")
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm")
    ax.set_title("Gradient over time")
    ax.legend()
    return save_figure(fig, p)


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
