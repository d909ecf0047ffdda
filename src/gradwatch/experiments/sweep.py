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

import ctypes
import itertools
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from gradwatch import _checks
from gradwatch._progress import ProgressCallback, progress_bar
from gradwatch.errors import ConfigError, GradwatchWarning
from gradwatch.experiments.runner import Result, check_device, run
from gradwatch.experiments.spec import Spec, check_size
from gradwatch.experiments.store import InvalidRun, RunStore

__all__ = ["EXECUTORS", "expand_grid", "load_sweep", "sweep"]

EXECUTORS = ("local", "ray")
MAX_LOCAL_WORKERS = max(64, 4 * (os.cpu_count() or 1))  # processes of the local pool, all started at once


def expand_grid(
    base: dict[str, Any], grid: dict[str, Sequence[Any]], variants: Sequence[dict[str, Any]] = ()
) -> list[Spec]:
    """The cartesian product of ``grid`` (and ``variants``) over ``base``, as validated specs."""
    _check_grid(grid)
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


def _check_grid(grid: dict[str, Sequence[Any]]) -> None:
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"[grid] key {key!r} must be a non-empty list. Got {values!r}.")


def load_sweep(path: str | Path) -> list[Spec]:
    """Read a TOML sweep file into specs.

    Raises:
        ConfigError: a missing, special or binary file, invalid TOML, an empty sweep or one
            without a task, a table of the wrong kind, or an unknown key (named, with its table).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    p = Path(path)
    text = _checks.read_text(p, "sweep file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc}).") from None
    if not doc:
        raise ConfigError(
            f"The sweep file {str(p)!r} is empty: a sweep needs at least a [base] table naming the task "
            '(task = "adding") and usually steps, a [grid] of lists and [[variant]] tables (docs/experiments.md).'
        )
    unknown = sorted(set(doc) - {"base", "grid", "variant"})
    if unknown:
        raise ConfigError(f"{p}: unknown table(s) {unknown}; a sweep has [base], [grid] and [[variant]].")
    base, grid, variants = doc.get("base", {}), doc.get("grid", {}), doc.get("variant", [])
    for table, value in (("base", base), ("grid", grid)):
        if not isinstance(value, dict):
            raise ConfigError(f"{p}: [{table}] must be a table of Spec fields. Got {value!r} instead.")
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{p}: variant must be an array of tables, written [[variant]]. Got {variants!r} instead.")
    names = {f for f in Spec.__dataclass_fields__}
    for table, value in (("base", base), ("grid", grid)):
        bad = sorted(set(value) - names)
        if bad:
            raise ConfigError(f"{p}: unknown key(s) {bad} in [{table}]; valid keys: {sorted(names)}.")
    for i, v in enumerate(variants):
        bad = sorted(set(v) - names - {"name"})
        if bad:
            raise ConfigError(f"{p}: unknown key(s) {bad} in [[variant]] number {i + 1}; valid keys: {sorted(names)}.")
    _check_grid(grid)
    if "task" not in base and "task" not in grid and not (variants and all("task" in v for v in variants)):
        raise ConfigError(
            f'{p}: no task: set task = "adding" (or another name from gradwatch.tasks.TASKS) in [base], '
            "[grid] or every [[variant]]; a sweep never trains a default task nobody chose."
        )
    return expand_grid(base, grid, variants)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_POLL = 0.5  # seconds between a worker's checks that its parent still lives (the fallback)


def _die_with_parent(parent: int) -> None:
    """Make this pool worker exit as soon as the sweep that started it dies, even by ``kill -9``.

    Linux delivers SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere,
    and as a fallback, a daemon thread checks every half second that the parent is still
    ours. Without this, orphaned workers keep writing into the store a resumed sweep uses.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the thread below still watches
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="gradwatch-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(1)


def _run_into(spec_json: dict[str, Any], root: str) -> dict[str, Any]:
    spec = Spec.from_json(spec_json)
    store = RunStore(root)
    result = run(spec, store.start(spec), limits=False)  # the driver checked the sizes of every spec
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
        result = run(spec, d, limits=False)  # the driver checked the sizes of every spec
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
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
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
    on_progress: ProgressCallback | None = None,
    limits: bool = True,
) -> list[Result]:
    """Run every spec into the run store at ``out``; returns all results (finished before or now).

    The store is locked for the whole sweep (one sweep writes a store at a time); runs
    left unfinished by a crashed sweep are cleared. Pool workers die with the sweep, even
    when it is killed with ``kill -9``.

    Args:
        specs: specs, or the path of a TOML sweep file.
        out: the run store directory (created; its parent must exist). Checked before any training.
        executor: "local" (a process pool, one torch thread per worker) or "ray" (Ray tasks
            of one CPU each; runs execute in scratch folders and the driver writes the store,
            so workers need not share its file system).
        workers: pool size (default: the number of CPU cores; at most ``MAX_LOCAL_WORKERS``
            for the local executor, and never more than the runs to do).
        resume: skip specs whose verified result is already in the store; a run whose result
            is invalid (empty, truncated, failing its schema or checksum) runs again, with a
            GradwatchWarning naming it and the reason.
        progress: show the progress bar (:func:`gradwatch._progress.progress_bar`: runs done /
            total, the oldest run in flight with the solved/not counts, elapsed time) on stderr
            when it is a terminal; ignored when ``on_progress`` is given.
        ray_address: with executor="ray", a cluster's host:port or ray://host:port; None starts
            Ray locally with ``workers`` CPUs. An unreachable address fails within seconds.
        on_result: called with each new result as it arrives.
        on_progress: called as ``on_progress(done, total, current)`` before the first run,
            after each run and once at the end with ``current=None``; ``current`` counts the
            solved and unsolved runs so far and names the oldest run still in flight
            (``"1 solved, 0 not · <run id> +1 running"``).
        limits: refuse, before any training, a spec whose estimated memory or time is over
            the limits (:func:`gradwatch.experiments.spec.check_size`); False lifts them.

    Raises:
        ConfigError: bad specs, an unknown executor, a device this machine lacks (local
            executor), a spec over the limits.
        OutputError: an unwritable ``out``, or a store another live sweep holds (naming its PID).
    """
    _checks.choice(executor, "executor", "sweep", EXECUTORS)
    spec_list = load_sweep(specs) if isinstance(specs, (str, Path)) else list(specs)
    store = RunStore(out)
    n_workers = _checks.positive_int(workers if workers is not None else (os.cpu_count() or 1), "workers", "sweep")
    if executor == "local" and n_workers > MAX_LOCAL_WORKERS:
        # a fork pool starts every worker at once: --workers 100000 would fork until the machine stops
        raise _checks.out_of_range("workers", "sweep", f"an integer in [1, {MAX_LOCAL_WORKERS}] here", workers)
    ids = [s.run_id for s in spec_list]
    if len(set(ids)) != len(ids):
        raise ConfigError("The sweep lists the same spec more than once.")
    for spec in spec_list:
        check_size(spec, limits=limits)
    if executor == "local":  # Ray workers may have devices this driver lacks
        for device in sorted({s.device for s in spec_list}):
            check_device(device, "sweep")
    with store.lock("sweep"):
        todo = _todo(spec_list, store, resume)
        stream = (
            _ray_results(todo, store, n_workers, ray_address)
            if executor == "ray"
            else _local_results(todo, store, max(1, min(n_workers, len(todo))))
        )
        if on_progress is not None:
            _consume(stream, todo, n_workers, on_progress, on_result)
        else:
            with progress_bar("sweep", enabled=progress) as bar:
                _consume(stream, todo, n_workers, bar, on_result)
    done = {r.spec.run_id: r for r in store.results()}
    return [done[i] for i in ids if i in done]


def _todo(spec_list: list[Spec], store: RunStore, resume: bool) -> list[Spec]:
    """The specs to run: all of them, or with ``resume`` those without a verified result (warning on invalid ones)."""
    if not resume:
        return spec_list
    todo = []
    for spec in spec_list:
        found = store.load(spec)
        if isinstance(found, Result):
            continue
        if isinstance(found, InvalidRun):
            warnings.warn(
                f"Run {found.run_id} in {str(store.root)!r} is invalid ({found.reason}); running it again.",
                GradwatchWarning,
                stacklevel=3,
            )
        todo.append(spec)
    return todo


def _consume(
    stream: Iterable[Result],
    todo: Sequence[Spec],
    n_workers: int,
    on_progress: ProgressCallback,
    on_result: Callable[[Result], None] | None,
) -> None:
    """Drain the executor's results, reporting progress before the first, after each one and at the end."""
    pending = [s.run_id for s in todo]  # submission order: the pool starts runs first in, first out
    passed = failed = 0

    def current() -> str:
        # the counts first: a narrow terminal cuts the end of the line, and a run id is long
        running = min(len(pending), n_workers)
        more = f" +{running - 1} running" if running > 1 else ""
        return f"{passed} solved, {failed} not · {pending[0]}{more}"

    if not todo:
        return
    on_progress(0, len(todo), current())
    for result in stream:
        passed += result.success
        failed += not result.success
        if result.spec.run_id in pending:
            pending.remove(result.spec.run_id)
        if on_result is not None:
            on_result(result)
        on_progress(passed + failed, len(todo), current() if pending else None)
