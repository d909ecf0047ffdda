"""``gradwatch show run.jsonl``: the verdict, its events and the figure from a saved monitor log.

The events are recomputed from the records by the same ``gw.verdict`` a live monitor uses, so
the log and the run always agree (the log carries the numbers, the layers' roles included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gradwatch._output import check_figure_path
from gradwatch.cli.app import emit_json
from gradwatch.monitor import read_jsonl, verdict
from gradwatch.monitor.plot import plot_history


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
        doc = result.to_json()
        doc["steps"] = history.n_steps
        doc["layers"] = list(history.layers)
        doc["roles"] = history.roles
        doc["first_nonfinite"] = history.nonfinite.to_json() if history.nonfinite else None
        emit_json(doc)
        return
    console = Console(highlight=False)
    console.print(f"{log}: {history.n_steps} recorded steps, {len(history.layers)} layers")
    colour = {"healthy": "green", "vanishing": "yellow", "exploding": "red", "nonfinite": "red"}[result.status]
    console.print(f"[bold {colour}]{result.status}[/]", markup=True)
    console.print(str(result).split("\n", 1)[1] if "\n" in str(result) else "", markup=False)
    if plot is not None:
        console.print(f"figure written to {plot}")
