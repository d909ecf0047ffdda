"""The run store: a directory with one sub-directory per run, trusted only once verified.

Each run directory holds ``spec.json``, ``metrics.jsonl`` (one line per evaluation),
``monitor.jsonl`` (the monitor's records) and ``result.json``. A run is written in a
temporary folder (``.partial-<run id>-...``) and renamed to its run id only when its
``result.json`` is complete, so a crash or ``kill -9`` loses at most the runs in flight
and never leaves a half-written run under a run id.

``result.json`` carries a SHA-256 checksum of its own content. A run counts as done only
when its result parses, passes the schema check of :meth:`Result.from_json`, matches its
checksum and its folder name; anything else (empty, truncated, ``{}``, edited) is an
*invalid* run: ``sweep --resume`` runs it again with a warning and the report lists it.

One sweep at a time writes a store: :meth:`RunStore.lock` holds ``.lock`` (an advisory
``flock`` and the owner's PID). A lock whose owner has died is stale and is taken over
with a warning; a live one is an error naming its PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradwatch._output import dump_json, prepare_folder
from gradwatch.errors import ConfigError, GradwatchWarning, OutputError
from gradwatch.experiments.runner import Result
from gradwatch.experiments.spec import Spec

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the PID in the lock file is all there is
    fcntl = None  # type: ignore[assignment]

__all__ = ["InvalidRun", "RunStore", "checksum"]

_PARTIAL = ".partial-"
LOCK_NAME = ".lock"
_DEAD_OWNER_WAIT = 10.0  # seconds to wait for the workers of a killed sweep to exit (they die with it)


def checksum(document: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a result document's canonical JSON (sorted keys, no spaces), without its checksum."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class InvalidRun:
    """A run folder whose result cannot be trusted: where it is and why."""

    run_id: str
    path: Path
    reason: str


class RunStore:
    """A directory of runs (created if missing; its parent must exist).

    Raises:
        OutputError: the directory cannot be created or written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = prepare_folder(root, "run store")
        self._partial: dict[str, Path] = {}

    def run_dir(self, spec: Spec) -> Path:
        """Where the finished run of ``spec`` lives."""
        return self.root / spec.run_id

    # ------------------------------------------------------------------ reading
    def check(self, run_dir: Path) -> Result | InvalidRun:
        """The verified result in ``run_dir``, or why it cannot be trusted."""
        path = run_dir / "result.json"

        def invalid(reason: str) -> InvalidRun:
            return InvalidRun(run_dir.name, run_dir, reason)

        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return invalid("no result.json")
        except (OSError, UnicodeDecodeError) as exc:
            return invalid(f"result.json cannot be read ({exc})")
        if not text.strip():
            return invalid("result.json is empty")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return invalid(f"result.json is not valid JSON ({exc.msg} at line {exc.lineno}: truncated?)")
        if not isinstance(doc, dict):
            return invalid("result.json is not a JSON object")
        if "checksum" not in doc:
            return invalid("result.json has no checksum")
        if doc["checksum"] != checksum(doc):
            return invalid("result.json does not match its checksum (edited or corrupted)")
        try:
            result = Result.from_json({k: v for k, v in doc.items() if k != "checksum"})
        except ConfigError as exc:
            return invalid(str(exc).rstrip("."))
        if result.spec.run_id != run_dir.name:
            return invalid(f"result.json describes run {result.spec.run_id}, not this folder's")
        return result

    def _run_dirs(self) -> list[Path]:
        # hidden names are runs in flight (.partial-*) and the lock, never runs; a folder holding
        # neither spec.json nor result.json (a user's plots/, say) is not a run either
        return sorted(
            p
            for p in self.root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and ((p / "spec.json").exists() or (p / "result.json").exists())
        )

    def load(self, spec: Spec) -> Result | InvalidRun | None:
        """The verified result of ``spec``, why its folder cannot be trusted, or None when it has none."""
        d = self.run_dir(spec)
        return self.check(d) if d.is_dir() else None

    def is_done(self, spec: Spec) -> bool:
        """Whether ``spec`` has a verified result."""
        return isinstance(self.load(spec), Result)

    def results(self) -> list[Result]:
        """Every verified result in the store, sorted by run id (invalid runs: :meth:`invalid`)."""
        return [r for r in map(self.check, self._run_dirs()) if isinstance(r, Result)]

    def invalid(self) -> list[InvalidRun]:
        """Every run folder whose result cannot be trusted, with the reason, sorted by run id."""
        return [r for r in map(self.check, self._run_dirs()) if isinstance(r, InvalidRun)]

    # ------------------------------------------------------------------ writing
    def start(self, spec: Spec) -> Path:
        """A fresh temporary folder for ``spec`` holding spec.json; the run writes its files there."""
        d = self._fresh(spec.run_id)
        (d / "spec.json").write_text(json.dumps(spec.to_json(), indent=1), encoding="utf-8")
        self._partial[spec.run_id] = d
        return d

    def _fresh(self, name: str) -> Path:
        # not tempfile.mkdtemp: its folders are private (0700), and a store is often shared
        d = self.root / f"{_PARTIAL}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        d.mkdir()
        return d

    def finish(self, result: Result) -> Path:
        """Write ``result.json`` (with its checksum, fsynced) and move the run to its run id; returns its path.

        A previous folder of the same run (an invalid or older result) is replaced.
        """
        run_id = result.spec.run_id
        d = self._partial.pop(run_id, None) or self.start(result.spec)
        self._partial.pop(run_id, None)
        doc = json.loads(dump_json(result.to_json()))
        doc["checksum"] = checksum(doc)
        try:
            with (d / "result.json").open("w", encoding="utf-8") as f:
                f.write(json.dumps(doc, indent=1, allow_nan=False))
                f.flush()
                os.fsync(f.fileno())
            final = self.run_dir(result.spec)
            if final.exists():
                # rename() cannot replace a non-empty folder: move the old one aside first
                old = self._fresh(f"old-{run_id}")
                final.rename(old / run_id)
                d.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                d.rename(final)
            _fsync_dir(self.root)
        except OSError as exc:
            raise OutputError(
                f"Cannot write the run {run_id} into {str(self.root)!r}: {exc.strerror or exc}."
            ) from None
        return final / "result.json"

    def clear_partial(self) -> None:
        """Remove the temporary folders of runs that never finished (call only while holding the lock)."""
        for p in self.root.glob(f"{_PARTIAL}*"):
            shutil.rmtree(p, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, owner: str = "sweep") -> Iterator[None]:
        """Hold the store for one writer (a sweep, ``run --out``) and clear its unfinished runs.

        Raises:
            OutputError: another live process holds the store (the message names its PID).
        """
        fd = _acquire(self.root / LOCK_NAME, self.root, owner)
        try:
            self.clear_partial()
            yield
        finally:
            with contextlib.suppress(OSError):
                (self.root / LOCK_NAME).unlink()
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens folders
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    except OSError:
        return False
    return True


def _read_owner(fd: int) -> tuple[int | None, str]:
    """(PID, what) from the lock file's "PID what" line; (None, "") when empty or unreadable."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        return int(text[0]), " ".join(text[1:])
    except (OSError, ValueError, IndexError):
        return None, ""


def _acquire(path: Path, root: Path, owner: str) -> int:
    """Lock ``path`` (flock where available, else O_EXCL) and write our PID into it; returns its descriptor."""
    deadline = time.monotonic() + _DEAD_OWNER_WAIT
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"Cannot lock the run store {str(root)!r}: {exc.strerror or exc}.") from None
        pid, what = _read_owner(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
            except OSError:
                held = True
        else:  # pragma: no cover - without flock, a lock whose PID runs is held
            held = pid is not None and pid != os.getpid() and _pid_alive(pid)
        if held:
            os.close(fd)
            # the owner was killed but its pool workers still hold the lock: they exit within
            # a second of its death (PR_SET_PDEATHSIG, or their parent check), so wait for them
            if pid is not None and not _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if pid is None:
                who = "another process"
            elif _pid_alive(pid):
                who = f"{what or 'process'} PID {pid}"
            else:
                who = f"the worker processes of {what or 'process'} PID {pid}, which has exited"
            raise OutputError(
                f"The run store {str(root)!r} is in use by {who} (lock file {str(path)!r}); "
                "wait for it to finish or stop it, then run again."
            )
        try:  # a releasing owner unlinks the file: make sure we locked the one at `path`
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        if pid is not None and pid != os.getpid():
            warnings.warn(
                f"The run store {str(root)!r} had a stale lock of {what or 'process'} PID {pid}, "
                "which has exited; taking it over.",
                GradwatchWarning,
                stacklevel=4,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {owner}\n".encode(), 0)
        return fd
