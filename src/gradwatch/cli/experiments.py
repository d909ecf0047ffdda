"""``gradwatch run``, ``gradwatch sweep`` and ``gradwatch report``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gradwatch._progress import progress_bar
from gradwatch.cli.app import emit_json, print_warning, stderr
from gradwatch.errors import ConfigError
from gradwatch.experiments import RunStore, Spec, run, sweep
from gradwatch.experiments.runner import check_device
from gradwatch.experiments.spec import check_size
from gradwatch.remedies import registry
from gradwatch.report.html import write_report

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
NoLimitsOpt = Annotated[
    bool,
    typer.Option("--no-limits", help="Run even when a run's memory or time estimate is over the limits (docs/cli.md)."),
]


_RUNNER_REMEDIES = sorted(r.name for r in registry.available() if r.applies_in_runner)


def _parse_remedies(items: list[str]) -> dict[str, dict[str, float]]:
    """'clip_grad_norm' or 'clip_grad_norm:max_norm=0.5' → {name: {param: value}}.

    A name may itself hold a colon ("init:kumar"): an item that is a registry name has no
    parameters; otherwise they follow the last colon after a registry name (else the first).
    """
    names = {r.name for r in registry.available()}
    out: dict[str, dict[str, float]] = {}
    for item in items:
        head, _, tail = item.rpartition(":")
        name, _, rest = (item, "", "") if item in names else (head, ":", tail) if head in names else item.partition(":")
        params: dict[str, float] = {}
        for kv in filter(None, rest.split(",")):
            key, eq, value = kv.partition("=")
            try:
                params[key] = float(value)
            except ValueError:
                raise ConfigError(
                    f"--remedy {item!r}: parameters are key=number, e.g. clip_grad_norm:max_norm=1.0."
                ) from None
            if not eq:
                raise ConfigError(f"--remedy {item!r}: parameters are key=number, e.g. clip_grad_norm:max_norm=1.0.")
        out[name] = params
    return out


def run_cmd(
    task: Annotated[str, typer.Option(help="Task name (see docs/tasks.md).")] = "adding",
    length: Annotated[int, typer.Option(help="Sequence length T.")] = 50,
    model: Annotated[str, typer.Option(help="rnn, lstm, gru or mlp.")] = "rnn",
    activation: Annotated[str, typer.Option(help="Activation of rnn/mlp models.")] = "tanh",
    hidden: Annotated[int, typer.Option(help="Hidden size.")] = 32,
    layers: Annotated[int, typer.Option(help="Layers.")] = 1,
    init: Annotated[str | None, typer.Option(help="Initialization by name (kumar, orthogonal, ...).")] = None,
    remedy: Annotated[
        list[str] | None,
        typer.Option(
            "--remedy",
            help=f"Remedy by registry name, repeatable: one of {', '.join(_RUNNER_REMEDIES)}; "
            "per-step ones take [:key=value,...] (see docs/remedies.md).",
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option(help="sgd, adam, rprop or sign_sgd.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 500,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 32,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Evaluate every N steps.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed, in [0, 2**32 - 1].")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps (one this machine has).")] = "cpu",
    out: Annotated[Path | None, typer.Option("--out", help="A run store to write the run into.")] = None,
    as_json: JsonOpt = False,
    no_limits: NoLimitsOpt = False,
) -> None:
    """Train one model on one task with the monitor attached; print its result."""
    fields: dict[str, Any] = {
        "task": task,
        "length": length,
        "model": model,
        "activation": activation,
        "hidden": hidden,
        "layers": layers,
        "init": init,
        "optimizer": optimizer,
        "lr": lr,
        "steps": steps,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "seed": seed,
        "device": device,
    }
    # per-step remedies go to spec.remedies; batchnorm, init:kumar, rprop, ... set their fields
    fields.update(registry.spec_fields(_parse_remedies(remedy or []), model=model))
    spec = Spec(**fields)
    check_size(spec, limits=not no_limits)  # before the store is touched
    check_device(spec.device)
    if out is None:
        result = run(spec, limits=not no_limits)
    else:
        store = RunStore(out)
        with store.lock("gradwatch run"):
            result = run(spec, store.start(spec), limits=not no_limits)
            store.finish(result)
    if as_json:
        emit_json(result.to_json())
        return
    console = Console(highlight=False)
    # NaN is "unknown", never a number: a diverged run has no error rate to print
    error = f"{result.final_error:.3f}" if math.isfinite(result.final_error) else "unknown (NaN)"
    outcome = "diverged" if result.diverged else ("solved" if result.success else "not solved")
    console.print(f"{spec.run_id}: final error {error} ({outcome})")
    console.print(f"monitor verdict: {result.verdict.get('status')}; {result.wall_time:.1f} s")


def sweep_cmd(
    file: Annotated[Path, typer.Argument(help="A TOML sweep file ([base], [grid], [[variant]]).")],
    out: Annotated[Path, typer.Option("--out", help="The run store directory.")],
    executor: Annotated[str, typer.Option(help="local (a process pool) or ray.")] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="host:port or ray://host:port of a Ray cluster (default: local Ray)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: CPU cores).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip runs already finished in --out; redo invalid ones (with a warning).")
    ] = False,
    as_json: JsonOpt = False,
    no_limits: NoLimitsOpt = False,
) -> None:
    """Run a grid of experiments into a run store, with a progress bar on a terminal; resumable."""
    RunStore(out)  # an unwritable --out fails before any training
    with progress_bar("sweep", stderr, enabled=not as_json) as on_progress:  # drawn on a terminal only
        results = sweep(
            file,
            out,
            executor=executor,
            workers=workers,
            resume=resume,
            progress=False,
            on_progress=on_progress,
            ray_address=ray_address,
            limits=not no_limits,
        )
    solved = sum(r.success for r in results)
    if as_json:
        emit_json({"runs": len(results), "solved": solved, "out": str(out)})
        return
    Console(highlight=False).print(f"{len(results)} runs in {out}: {solved} solved. Report: gradwatch report {out}")


def report_cmd(
    store: Annotated[Path, typer.Argument(help="A run store written by gradwatch sweep or run --out.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default: STORE/index.html).")] = None,
) -> None:
    """Write a self-contained HTML report of a run store."""
    path = write_report(store, out)
    invalid = RunStore(store).invalid()
    if invalid:
        print_warning(
            f"{len(invalid)} invalid run(s) listed in the report, not counted (first: {invalid[0].run_id}: {invalid[0].reason})."
        )
    Console(highlight=False).print(f"report written to {path}")


def reproduce_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json and index.html.")] = Path("reproduce"),
    full: Annotated[
        bool, typer.Option("--full/--quick", help="Larger sizes (slow) or the quick tier (default).")
    ] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Check only this claim id (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check the published claims implemented so far; exit 1 if any claim failed."""
    from gradwatch.reproduce import reproduce

    with progress_bar("reproduce", stderr, enabled=not as_json) as on_progress:  # drawn on a terminal only
        doc = reproduce("full" if full else "quick", only, out, on_progress=on_progress)
    if as_json:
        emit_json(doc)
    else:
        console = Console(highlight=False)
        for r in doc["claims"]:
            mark = "[yellow]skipped[/]" if r["skipped"] else ("[green]pass[/]" if r["pass"] else "[red]FAIL[/]")
            console.print(f"{mark} {r['id']}: {r['measured']}", markup=True)
        console.print(
            f"{doc['passed']} held, {doc['failed']} did not, {doc['skipped']} skipped; report: {out / 'index.html'}"
        )
    if doc["failed"]:
        raise typer.Exit(1)
