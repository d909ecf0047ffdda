"""``gradwatch diagnose train.py [-- args]``: run a training script unmodified, name the problem, try fixes.

The library does the work (:func:`gradwatch.diagnose.diagnose`); this command prints the
verdict with a gradient-flow view, the remedies compared side by side and the
recommendation, and writes ``DIR/diagnosis.json`` and ``DIR/index.html`` (and the monitor's
``DIR/run.jsonl``, readable by ``gradwatch show``). Exit codes: 0 diagnosed, 1 the script
raised (its traceback is shown as its own, and the verdict covers what was recorded), 2 bad
input or a script that trained nothing, 130 interrupted (the partial diagnosis is written).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradwatch._output import atomic_write_text, dump_json, prepare_folder
from gradwatch._progress import progress_bar
from gradwatch.cli.app import emit_json, print_error, stderr
from gradwatch.cli.show import STATUS_COLOURS
from gradwatch.cli.watch import render
from gradwatch.diagnose import Diagnosis, diagnose
from gradwatch.monitor.plot import history_figure
from gradwatch.report.diagnose import diagnosis_page

__all__ = ["diagnose_cmd", "trials_table", "write_outputs"]


def trials_table(doc: dict[str, Any]) -> Table:
    """The runs compared, one row each: run, gradient flow, final loss ± se, outcome."""
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column, justify in (("run", "left"), ("gradient flow", "left"), ("final loss", "right"), ("outcome", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    best = (doc.get("recommendation") or {}).get("label")
    for t in doc["trials"]:
        final = "—" if t["final_loss"] is None else f"{t['final_loss']:.4g} ± {t['final_se']:.2g}"
        status = Text(t["status"] or "—", style=STATUS_COLOURS.get(t["status"], ""))
        table.add_row(("→ " if t["label"] == best else "  ") + t["label"], status, final, t["outcome"])
    return table


def write_outputs(result: Diagnosis, out: Path) -> dict[str, Any]:
    """Write ``diagnosis.json`` and ``index.html`` into ``out``; return the JSON document."""
    doc = result.to_json()
    atomic_write_text(out / "diagnosis.json", dump_json(doc, indent=2) + "\n")
    history = result.history
    flow = history_figure(history, verdict=result.verdict) if history is not None and history.n_steps else None
    atomic_write_text(out / "index.html", diagnosis_page(doc, flow))
    return doc


def _print(console: Console, result: Diagnosis, doc: dict[str, Any], out: Path) -> None:
    head = f"{result.script}: {result.steps} training steps in {result.seconds:.1f} s ({result.ended})"
    console.print(head, markup=False)
    for m in doc["models"]:
        console.print(
            f"  model {m['name']} ({m['parameters']} parameters), optimizer {m['optimizer'] or 'none (manual update)'}",
            markup=False,
        )
    history = result.history
    if result.verdict is not None and history is not None and history.n_steps:
        console.print(render(history, result.verdict, console.width, title="gradient flow"))
    if result.verdict is not None and result.verdict.advice:
        console.print("  advice:", markup=False)
        for a in result.verdict.advice:
            console.print(f"  * {a.remedy}: {a.reason}", markup=False)
    if doc["trials"]:
        console.print()
        console.print(trials_table(doc))
        if result.deterministic is False:
            console.print(
                f"the script is not deterministic under fixed seeds: two runs as written differ by "
                f"{result.repeat_difference:.3g} in final loss (counted in the uncertainty)",
                markup=False,
            )
    if result.recommendation is not None:
        console.print(Text("recommendation: ", style="bold") + Text(result.recommendation["sentence"]))
    elif result.verdict is not None and result.verdict.status == "healthy":
        console.print("healthy: no remedy to try.", markup=False)
    for c in result.code_changes:
        where = f" — {c.location}: {c.line}" if c.location else ""
        console.print(f"  needs a code change: {c.remedy}{where}", markup=False)
    for problem in result.problems:
        console.print(f"  note: {problem}", markup=False)
    console.print(f"wrote {out / 'diagnosis.json'} and {out / 'index.html'}", markup=False)


def diagnose_cmd(
    script: Annotated[Path, typer.Argument(help="The training script, run unmodified (python SCRIPT ARGS).")],
    script_args: Annotated[
        list[str] | None, typer.Argument(help="The script's own arguments, after `--`.", show_default=False)
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps to diagnose [default: 200].")] = None,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Diagnose this many seconds of training instead of --steps.")
    ] = None,
    try_remedies: Annotated[
        bool, typer.Option("--try", help="Re-run the same steps with each remedy that fits, compare, recommend.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for diagnosis.json, index.html and run.jsonl.")] = Path(
        "diagnosis"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Every RNG is seeded with this before each run.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print diagnosis.json on stdout (the script's prints go to stderr).")
    ] = False,
) -> None:
    """Run a training script under the monitor, say what is wrong with its gradients, try the fixes."""
    if steps is not None and seconds is not None:
        print_error("give --steps or --seconds, not both")
        raise typer.Exit(2)
    if steps is not None and steps < 1:
        print_error(f"--steps must be a positive integer, got {steps}")
        raise typer.Exit(2)
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        print_error(f"--seconds must be a positive number of seconds, got {seconds}")
        raise typer.Exit(2)
    if not script.is_file():
        print_error(f"no such script: {script} (give the path of a Python training script)")
        raise typer.Exit(2)
    if not 0 <= seed < 2**32:
        print_error(f"--seed must be an integer in [0, 2**32), got {seed}")
        raise typer.Exit(2)
    folder = prepare_folder(out)
    console = Console(highlight=False)
    with contextlib.ExitStack() as stack:
        if as_json:  # stdout carries one JSON document: the script's prints go to stderr
            stack.enter_context(contextlib.redirect_stdout(stderr.file))
        on_progress = stack.enter_context(progress_bar("diagnose", stderr, enabled=not as_json))
        result = diagnose(
            script,
            script_args or [],
            steps=steps,
            seconds=seconds,
            try_remedies=try_remedies,
            out=folder,
            seed=seed,
            on_progress=on_progress,
        )
    if result.traceback:
        stderr.file.write(result.traceback)  # the script's own traceback, as python would show it
        stderr.file.flush()
    doc = write_outputs(result, folder)
    if result.exit_code == 2:
        print_error(f"{script}: {result.error}")
        raise typer.Exit(2)
    if as_json:
        emit_json(doc)
    else:
        _print(console, result, doc, folder)
    raise typer.Exit(result.exit_code)
