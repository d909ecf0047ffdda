"""``gradwatch lab``: the article's models, computed exactly, as JSON, tables and figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gradwatch._output import check_figure_path
from gradwatch._progress import progress_bar
from gradwatch.cli.app import emit_json, stderr
from gradwatch.report import lab as lab_report

app = typer.Typer(
    help="The theory lab: the article's models computed exactly (rnn, note3, doya, landscape, spectrum).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Write the figure to this file (.png; .pdf, .svg, ... by extension).")
]
NoLimitsOpt = Annotated[
    bool,
    typer.Option(
        "--no-limits", help="Run even when the memory or time estimate is over the limits (docs/cli.md lists them)."
    ),
]


def _compute(name: str, compute: Callable[[], lab_report.LabRun], as_json: bool) -> lab_report.LabRun:
    """Run one lab model under the progress bar (on a terminal only, never with --json)."""
    with progress_bar("lab", stderr, enabled=not as_json) as on_progress:
        on_progress(0, 1, name)
        run = compute()
        on_progress(1, 1, None)
    return run


def _finish(run: lab_report.LabRun, as_json: bool, plot: Path | None) -> None:
    if plot is not None:
        run.save_figure(plot)
    summary = lab_report.jsonable(run.summary)
    if as_json:
        emit_json(summary)
        return
    _print_table(run.name, summary, plot)


def _print_table(name: str, summary: dict[str, Any], plot: Path | None) -> None:
    table = Table(title=f"gradwatch lab {name}", show_header=True)
    table.add_column("quantity")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, list) and len(value) > 6:
            shown = ", ".join(_fmt(v) for v in value[:3]) + f", … ({len(value)} values)"
        else:
            shown = _fmt(value)
        table.add_row(key, shown)
    console = Console()
    console.print(table)
    if plot is not None:
        console.print(f"figure written to {plot}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _check_plot_first(plot: Path | None) -> None:
    # An unwritable --plot, or one matplotlib cannot write, must fail before any computation, not after it.
    if plot is not None:
        check_figure_path(plot)


@app.command("rnn")
def rnn_cmd(
    hidden: Annotated[int, typer.Option(help="Hidden units n (>= 1).")] = 32,
    gamma: Annotated[float, typer.Option(help="Spectral radius of W_rec (> 0).")] = 0.9,
    steps: Annotated[int, typer.Option(help="Sequence length T (>= 1).")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the weights, inputs and target.")] = 0,
    n_input: Annotated[int, typer.Option("--n-input", help="Input size m (>= 1).")] = 1,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    no_limits: NoLimitsOpt = False,
) -> None:
    """Sigmoid RNN: Jacobian products vs the bounds, gradient as a sum of per-step terms."""
    _check_plot_first(plot)
    run = _compute(
        "rnn", lambda: lab_report.lab_rnn(hidden, gamma, steps, seed, n_input, limits=not no_limits), as_json
    )
    _finish(run, as_json, plot)


@app.command("note3")
def note3_cmd(
    eps: Annotated[float, typer.Option(help="ε in W_rec = [[0, 2], [ε, 0]] (> 0).")] = 0.8,
    c: Annotated[float, typer.Option(help="Constant σ' factor c, in (0, 1].")] = 0.5,
    n: Annotated[int, typer.Option(help="Largest power N (>= 1).")] = 40,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    no_limits: NoLimitsOpt = False,
) -> None:
    """The article's note 3: the spectral radius alone does not decide vanishing vs exploding."""
    _check_plot_first(plot)
    _finish(_compute("note3", lambda: lab_report.lab_note3(eps, c, n, limits=not no_limits), as_json), as_json, plot)


@app.command("doya")
def doya_cmd(
    w: Annotated[float, typer.Option(help="Self-connection weight w.")] = 5.0,
    b: Annotated[float, typer.Option(help="Bias at which sensitivities are measured.")] = -2.5,
    b_min: Annotated[float, typer.Option("--b-min", help="Left end of the b sweep.")] = -3.0,
    b_max: Annotated[float, typer.Option("--b-max", help="Right end of the b sweep (> b-min).")] = -2.0,
    eps: Annotated[float, typer.Option(help="Step ε of the map, in (0, 1].")] = 0.1,
    steps: Annotated[int, typer.Option(help="Steps T of the map for the sensitivities (>= 1).")] = 1000,
    far_x0: Annotated[float, typer.Option("--far-x0", help="x(0) far from the separatrix, in [0, 1].")] = 0.1,
    delta: Annotated[float, typer.Option(help="Finite-difference step Δ (> 0).")] = 1e-6,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    no_limits: NoLimitsOpt = False,
) -> None:
    """Doya's one-neuron network: folds, bistability, hysteresis and sensitivities."""
    _check_plot_first(plot)
    run = _compute(
        "doya",
        lambda: lab_report.lab_doya(w, b, b_min, b_max, eps, steps, far_x0, delta, limits=not no_limits),
        as_json,
    )
    _finish(run, as_json, plot)


@app.command("landscape")
def landscape_cmd(
    w: Annotated[float, typer.Option(help="Self-connection weight w.")] = 5.0,
    x0: Annotated[float, typer.Option("--x0", help="Initial state x(0), in [0, 1].")] = 0.5,
    target: Annotated[float, typer.Option(help="Target of the loss (target − x(T))².")] = 0.855,
    b_min: Annotated[float, typer.Option("--b-min", help="Left end of the b grid.")] = -3.0,
    b_max: Annotated[float, typer.Option("--b-max", help="Right end of the b grid (> b-min).")] = -2.0,
    eps: Annotated[float, typer.Option(help="Step ε of the map, in (0, 1].")] = 0.1,
    steps: Annotated[int, typer.Option(help="Steps T of the map (>= 1).")] = 600,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    no_limits: NoLimitsOpt = False,
) -> None:
    """The geometric model: the wall in the loss landscape and the gradient spike at it."""
    _check_plot_first(plot)
    run = _compute(
        "landscape",
        lambda: lab_report.lab_landscape(w, x0, target, b_min, b_max, eps, steps, limits=not no_limits),
        as_json,
    )
    _finish(run, as_json, plot)


@app.command("spectrum")
def spectrum_cmd(
    cell: Annotated[str, typer.Option(help="Cell: rnn, gru, lstm or linear.")] = "lstm",
    hidden: Annotated[int, typer.Option(help="Hidden size H (>= 1).")] = 64,
    steps: Annotated[int, typer.Option(help="Steps T measured (>= 1).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the cell's weights and the inputs.")] = 0,
    input_size: Annotated[int, typer.Option("--input-size", help="Input size (>= 1).")] = 8,
    input_scale: Annotated[float, typer.Option("--input-scale", help="Std of the N(0, s²) inputs (>= 0).")] = 1.0,
    burn_in: Annotated[int, typer.Option("--burn-in", help="Unmeasured warm-up steps (>= 0).")] = 0,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    no_limits: NoLimitsOpt = False,
) -> None:
    """Lyapunov exponents (QR method) and Jacobian singular values of a recurrent cell."""
    _check_plot_first(plot)
    run = _compute(
        "spectrum",
        lambda: lab_report.lab_spectrum(
            cell, hidden, steps, seed, input_size, input_scale, burn_in, limits=not no_limits
        ),
        as_json,
    )
    _finish(run, as_json, plot)


@app.command("all")
def all_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for the figures and summary.json.")] = Path(
        "gradwatch-lab"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Run every lab model with the article's values; write all figures and summary.json."""
    with progress_bar("lab", stderr, enabled=not as_json) as on_progress:  # drawn on a terminal only
        result = lab_report.lab_all(out, on_progress=on_progress)
    if as_json:
        emit_json(result)
        return
    Console().print(f"wrote {len(result['figures'])} figures and {out / 'summary.json'}:")
    for name, path in result["figures"].items():
        Console().print(f"  {name:10s} {path}")
