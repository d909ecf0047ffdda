"""Self-contained HTML reports of a run store: figures embedded, no network (page: templates/run_store.html.j2)."""

from __future__ import annotations

import math
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradwatch._output import atomic_write_text
from gradwatch.errors import ConfigError
from gradwatch.experiments import Result, RunStore
from gradwatch.monitor.history import read_jsonl
from gradwatch.monitor.plot import plot_history
from gradwatch.report.pages import InvalidRow, StoreRow, run_store_page

__all__ = ["group_results", "render_store", "write_report"]


def _label(spec_json: dict[str, Any]) -> str:
    remedies = "+".join(sorted(spec_json.get("remedies", {}))) or "plain"
    return f"{spec_json['model']}/{spec_json['activation']}/{remedies}"


def group_results(results: list[Result]) -> dict[tuple[str, int], list[Result]]:
    """Group runs that differ only by seed: key (model/activation/remedies label, length)."""
    groups: dict[tuple[str, int], list[Result]] = defaultdict(list)
    for r in results:
        groups[(_label(r.spec.to_json()), r.spec.length)].append(r)
    return dict(sorted(groups.items()))


def _curves_figure(groups: dict[tuple[str, int], list[Result]]) -> Figure:
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for i, ((label, length), runs) in enumerate(groups.items()):
        steps = runs[0].steps
        errs = np.array([r.error for r in runs if r.steps == steps], dtype=float)
        if errs.size == 0:
            continue
        with warnings.catch_warnings():  # a step where every seed's error is NaN is a gap, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(errs, axis=0), np.nanmin(errs, axis=0), np.nanmax(errs, axis=0)
        ax.plot(steps, mean, color=f"C{i % 10}", label=f"{label}, T={length} ({len(errs)} seeds)")
        if len(errs) > 1:
            ax.fill_between(steps, low, high, color=f"C{i % 10}", alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out error rate")
    ax.set_title("Learning curves (line: mean over seeds; band: min–max)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _success_figure(results: list[Result]) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    by_label: dict[str, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_label[_label(r.spec.to_json())][r.spec.length].append(r.success)
    for i, (label, per_len) in enumerate(sorted(by_label.items())):
        lengths = sorted(per_len)
        rate = [float(np.mean(per_len[t])) for t in lengths]
        ax.plot(lengths, rate, ["o-", "s--", "^:", "D-."][i % 4], color=f"C{i % 10}", label=label, alpha=0.85)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("success rate over seeds")
    ax.set_title("Success rate vs length")
    ax.legend(fontsize=7)
    return fig


def _profiles_figure(groups: dict[tuple[str, int], list[Result]]) -> Figure | None:
    profiled = [(k, runs) for k, runs in groups.items() if runs[0].time_profile]
    if not profiled:
        return None
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for i, ((label, length), runs) in enumerate(profiled):
        prof = np.asarray(runs[0].time_profile, dtype=float)
        ax.semilogy(
            np.arange(len(prof)), np.where(prof > 0, prof, np.nan), color=f"C{i % 10}", label=f"{label}, T={length}"
        )
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂u_t‖ (last profile, seed 0 of the group)")
    ax.set_title("Gradient over time, from the monitor")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _flow_images(
    root: Path, groups: dict[tuple[str, int], list[Result]], limit: int = 12
) -> list[tuple[str, bytes, str]]:
    """The monitor's layer × step heat map (PNG) for the first seed of each group (at most ``limit``), with its group's status."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for (label, length), runs in list(groups.items())[:limit]:
            first = min(runs, key=lambda r: r.spec.seed)
            log = root / first.spec.run_id / "monitor.jsonl"
            if not log.is_file():
                continue
            try:
                history = read_jsonl(log)
            except ConfigError:
                continue
            png = plot_history(history, Path(tmp) / "flow.png").read_bytes()
            out.append((f"{label}, T={length}, seed {first.spec.seed}", png, _row(label, length, runs).status))
    return out


def render_store(root: str | Path) -> str:
    """Render a run store as one self-contained HTML page.

    Raises:
        ConfigError: the folder is not a run store or holds no finished run.
    """
    p = Path(root)
    if not p.is_dir():
        raise ConfigError(f"{str(p)!r} is not a folder (expected a run store written by gradwatch sweep).")
    store = RunStore(p)
    results, invalid = store.results(), store.invalid()
    if not results:
        detail = f"; {len(invalid)} invalid, e.g. {invalid[0].run_id}: {invalid[0].reason}" if invalid else ""
        raise ConfigError(f"The run store {str(p)!r} holds no finished run (no valid */result.json{detail}).")
    groups = group_results(results)
    rows = [_row(label, length, runs) for (label, length), runs in groups.items()]
    figures: list[tuple[str, Figure | bytes]] = [
        ("Learning curves", _curves_figure(groups)),
        ("Success rate vs length", _success_figure(results)),
    ]
    prof = _profiles_figure(groups)
    if prof is not None:
        figures.append(("Gradient over time", prof))
    return run_store_page(
        root=str(p),
        n_runs=len(results),
        seconds=sum(r.wall_time for r in results),
        rows=rows,
        figures=figures,
        flows=_flow_images(p, groups),
        invalid=[InvalidRow(bad.run_id, bad.reason) for bad in invalid],
    )


def _row(label: str, length: int, runs: list[Result]) -> StoreRow:
    """One summary row; a diverged or non-finite run is a failure, never an error of 0 in the mean."""
    finite = [r.final_error for r in runs if not r.diverged and math.isfinite(r.final_error)]
    return StoreRow(
        label=label,
        length=length,
        n_seeds=len(runs),
        n_solved=sum(r.success for r in runs),
        mean_error=float(np.mean(finite)) if finite else math.nan,
        verdicts=sorted({str(r.verdict.get("status", "?")) for r in runs}),
        n_failed=len(runs) - len(finite),
    )


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Write ``index.html`` for a run store (default: inside it); returns its path.

    Raises:
        ConfigError: not a run store; OutputError: the page cannot be written.
    """
    page = render_store(root)
    return atomic_write_text(Path(out) if out is not None else Path(root) / "index.html", page)
