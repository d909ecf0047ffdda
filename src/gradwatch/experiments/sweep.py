"""Sweeps: a grid of specs run on a local process pool, into a run store, resumable.

A sweep file (TOML) has a ``[base]`` table of Spec fields and a ``[grid]`` table whose
values are lists; the sweep is the cartesian product of the grid over the base::

    [base]
    task = "adding"
    steps = 300

    [grid]
    length = [10, 20, 40]
    model = ["rnn", "lstm"]
    seed = [0, 1, 2]

A ``[[variant]]`` array of tables may add named bundles of fields (e.g. a remedy) that
multiply the grid as one more axis.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from gradwatch import _checks
from gradwatch.errors import ConfigError
from gradwatch.experiments.runner import Result, run
from gradwatch.experiments.spec import Spec
from gradwatch.experiments.store import RunStore

__all__ = ["EXECUTORS", "expand_grid", "load_sweep", "sweep"]

EXECUTORS = ("local", "ray")


def expand_grid(
    base: dict[str, Any], grid: dict[str, Sequence[Any]], variants: Sequence[dict[str, Any]] = ()
) -> list[Spec]:
    """The cartesian product of ``grid`` (and ``variants``) over ``base``, as validated specs."""
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"[grid] key {key!r} must be a non-empty list. Got {values!r}.")
    keys = list(grid)
    specs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        for variant in variants or [{}]:
            fields = {
                **base,
                **dict(zip(keys, combo, strict=True)),
                **{k: v for k, v in variant.items() if k != "name"},
            }
            specs.append(Spec.from_json(fields, where="the sweep (after merging [base], [grid] and [[variant]])"))
    return specs


def load_sweep(path: str | Path) -> list[Spec]:
    """Read a TOML sweep file into specs.

    Raises:
        ConfigError: a missing file, invalid TOML, an unknown table, or an unknown key (named, with its table).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Cannot read the sweep file {str(p)!r}: no such file.")
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc}).") from None
    unknown = sorted(set(doc) - {"base", "grid", "variant"})
    if unknown:
        raise ConfigError(f"{p}: unknown table(s) {unknown}; a sweep has [base], [grid] and [[variant]].")
    names = {f for f in Spec.__dataclass_fields__}
    for table in ("base", "grid"):
        bad = sorted(set(doc.get(table, {})) - names)
        if bad:
            raise ConfigError(f"{p}: unknown key(s) {bad} in [{table}]; valid keys: {sorted(names)}.")
    for i, v in enumerate(doc.get("variant", [])):
        bad = sorted(set(v) - names - {"name"})
        if bad:
            raise ConfigError(f"{p}: unknown key(s) {bad} in [[variant]] number {i + 1}; valid keys: {sorted(names)}.")
    return expand_grid(doc.get("base", {}), doc.get("grid", {}), doc.get("variant", []))


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_into(spec_json: dict[str, Any], root: str) -> dict[str, Any]:
    spec = Spec.from_json(spec_json)
    store = RunStore(root)
    result = run(spec, store.start(spec))
    store.finish(result)
    return result.to_json()


def _run_collect(spec_json: dict[str, Any]) -> dict[str, Any]:
    """Run in a scratch folder and return the result and the run's files (for Ray workers,
    which may not share a file system with the driver that owns the run store)."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    spec = Spec.from_json(spec_json)
    with tempfile.TemporaryDirectory(prefix="gradwatch-run-") as d:
        result = run(spec, d)
        files = {p.name: p.read_text() for p in Path(d).iterdir() if p.is_file()}
    return {"result": result.to_json(), "files": files}


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, with a sentence, when a Ray address cannot be reached."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"The Ray address must be host:port or ray://host:port. Got {address!r}.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"Cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); is it running?"
        ) from None


def _ray_results(todo: list[Spec], store: RunStore, workers: int, address: str | None) -> Iterable[Result]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor='ray' needs Ray: pip install 'gradwatch[ray]'.") from None
    if address is not None:
        _check_reachable(address)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None:
            kwargs["num_cpus"] = workers
        ray.init(address=address, **kwargs)
    try:
        remote = ray.remote(num_cpus=1)(_run_collect)
        pending = [remote.remote(s.to_json()) for s in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            payload = ray.get(done[0])
            result = Result.from_json(payload["result"])
            d = store.start(result.spec)
            for name, text in payload["files"].items():
                (d / name).write_text(text)
            store.finish(result)
            yield result
    finally:
        if started_here:
            ray.shutdown()


def _local_results(todo: list[Spec], store: RunStore, workers: int) -> Iterable[Result]:
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        futures = [pool.submit(_run_into, s.to_json(), str(store.root)) for s in todo]
        for fut in as_completed(futures):
            yield Result.from_json(fut.result())


def sweep(
    specs: Iterable[Spec] | str | Path,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run every spec into the run store at ``out``; returns all results (finished before or now).

    Args:
        specs: specs, or the path of a TOML sweep file.
        out: the run store directory (created; its parent must exist). Checked before any training.
        executor: "local" (a process pool, one torch thread per worker) or "ray" (Ray tasks
            of one CPU each; runs execute in scratch folders and the driver writes the store,
            so workers need not share its file system).
        workers: pool size (default: the number of CPU cores).
        resume: skip specs whose result is already in the store.
        progress: show a rich progress bar with ETA and pass/fail counts on stderr.
        ray_address: with executor="ray", a cluster's host:port or ray://host:port; None starts
            Ray locally with ``workers`` CPUs. An unreachable address fails within seconds.
        on_result: called with each new result as it arrives.

    Raises:
        ConfigError: bad specs, an unknown executor; OutputError: an unwritable ``out``.
    """
    _checks.choice(executor, "executor", "sweep", EXECUTORS)
    spec_list = load_sweep(specs) if isinstance(specs, (str, Path)) else list(specs)
    store = RunStore(out)
    n_workers = _checks.positive_int(workers if workers is not None else (os.cpu_count() or 1), "workers", "sweep")
    ids = [s.run_id for s in spec_list]
    if len(set(ids)) != len(ids):
        raise ConfigError("The sweep lists the same spec more than once.")
    todo = [s for s in spec_list if not (resume and store.is_done(s))]
    passed = failed = 0
    bar = None
    if progress and todo:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("[green]{task.fields[passed]} solved[/] [red]{task.fields[failed]} not[/]"),
            console=Console(stderr=True),
        )
        bar.start()
        task_id = bar.add_task("runs", total=len(todo), passed=0, failed=0)
    stream = (
        _ray_results(todo, store, n_workers, ray_address)
        if executor == "ray"
        else _local_results(todo, store, n_workers)
    )
    try:
        for result in stream if todo else ():
            passed += result.success
            failed += not result.success
            if bar is not None:
                bar.update(task_id, advance=1, passed=passed, failed=failed)
            if on_result is not None:
                on_result(result)
    finally:
        if bar is not None:
            bar.stop()
    done = {r.spec.run_id: r for r in store.results()}
    return [done[i] for i in ids if i in done]
