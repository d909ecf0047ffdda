"""``gradwatch show run.jsonl``: the verdict, its events and the figure from a saved monitor log.

The events are recomputed from the records by the same ``gw.verdict`` a live monitor uses, so
the log and the run always agree (the log carries the numbers, the layers' roles included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gradwatch._output import check_figure_path
from gradwatch.cli.app import emit_json
from gradwatch.monitor import History, Verdict, read_jsonl, verdict
from gradwatch.monitor.plot import plot_history

STATUS_COLOURS = {"healthy": "green", "vanishing": "yellow", "exploding": "red", "nonfinite": "red"}


def verdict_document(history: History, result: Verdict) -> dict[str, Any]:
    """The ``--json`` document of ``show`` (and ``watch``): the verdict, steps, layers, roles, first NaN/Inf."""
    doc = result.to_json()
    doc["steps"] = history.n_steps
    doc["layers"] = list(history.layers)
    doc["roles"] = history.roles
    doc["first_nonfinite"] = history.nonfinite.to_json() if history.nonfinite else None
    if history.lyapunov:
        doc["lyapunov"] = {n: {"step": s, "exponents": v} for n, (s, v) in latest_lyapunov(history).items()}
    return doc


def latest_lyapunov(history: History) -> dict[str, tuple[int, list[float]]]:
    """The latest λ_1..λ_k of each recurrent module (``Monitor(lyapunov_every=...)``): name → (step, exponents)."""
    out: dict[str, tuple[int, list[float]]] = {}
    for step, exps in history.lyapunov:
        for name, values in exps.items():
            out[name] = (step, [float(v) for v in values])
    return out


def show(
    log: Annotated[Path, typer.Argument(help="A JSONL log written by gradwatch.sinks.JSONL.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")
    ] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the gradient-flow figure to this PNG.")] = None,
) -> None:
    """Read a monitor log and print its verdict (status, where, evidence, events, advice)."""
    if plot is not None:
        check_figure_path(plot)  # the extension too, before any work
    history = read_jsonl(log)
    result = verdict(history)
    if plot is not None:
        plot_history(history, plot, verdict=result)
    if as_json:
        emit_json(verdict_document(history, result))
        return
    console = Console(highlight=False)
    console.print(f"{log}: {history.n_steps} recorded steps, {len(history.layers)} layers")
    colour = STATUS_COLOURS[result.status]
    console.print(f"[bold {colour}]{result.status}[/]", markup=True)
    console.print(str(result).split("\n", 1)[1] if "\n" in str(result) else "", markup=False)
    for name, (step, exps) in latest_lyapunov(history).items():
        shown = ", ".join(f"{v:+.3f}" for v in exps)
        console.print(f"Lyapunov exponents of {name or '(model)'} at step {step} (nats/step): {shown}", markup=False)
    if plot is not None:
        console.print(f"figure written to {plot}")
