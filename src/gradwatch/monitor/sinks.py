"""Where the monitor's records go: JSONL (default), CSV, TensorBoard scalars, W&B.

A sink receives batches of JSON records (see :mod:`gradwatch.monitor.history`) each time
the monitor syncs, and is closed with the monitor. Every sink raises ``SinkClosedError``
when written after ``close()``, and checks at construction that its path can be written.

- :class:`JSONL` — one JSON object per recorded step, appended as it goes (the file is
  opened, appended and closed at each sync). A monitor still open when the interpreter
  exits — the program ended, or raised — is closed then (:func:`close_at_exit`), so its
  pending records reach the sinks; only a hard kill loses them (at most one sync window).
- :class:`CSV` — one row per (step, layer), a header written once.
- :class:`TensorBoard` — scalars through ``torch.utils.tensorboard.SummaryWriter``
  (needs the ``tensorboard`` package: ``pip install gradwatch[tensorboard]``).
- :class:`WandB` — ``wandb.log`` on a run you pass or on the current run (``[wandb]``).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from gradwatch.errors import GradwatchError, SinkClosedError, check_writable

__all__ = ["CSV", "JSONL", "Sink", "SinkClosedError", "TensorBoard", "WandB", "close_at_exit", "flat_scalars"]

Record = Mapping[str, Any]


class _Closable(Protocol):
    def close(self) -> None: ...


# Held weakly: an exit hook must not keep a monitor (and through it the model) alive.
_open_at_exit: weakref.WeakSet[_Closable] = weakref.WeakSet()


def close_at_exit(obj: _Closable) -> None:
    """Call ``obj.close()`` at interpreter exit if it is still alive then (``close`` must be idempotent).

    The monitor registers itself, so a program that ends — also by an uncaught exception —
    flushes the records still pending below ``sync_every`` to its sinks. Only a weak
    reference is kept; errors at exit are ignored (the interpreter is going away).
    """
    if not _open_at_exit:
        atexit.unregister(_close_all)  # registered once, however many monitors come and go
        atexit.register(_close_all)
    _open_at_exit.add(obj)


def _close_all() -> None:
    for obj in list(_open_at_exit):
        with contextlib.suppress(Exception):
            obj.close()


class Sink(Protocol):
    """What the monitor needs of a sink."""

    def write(self, records: Sequence[Record]) -> None:
        """Take a batch of records (in step order)."""

    def close(self) -> None:
        """Release resources; later writes raise SinkClosedError."""


class _Base:
    def __init__(self) -> None:
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise SinkClosedError(f"{self!r} is closed: create a new sink to keep writing.")

    def close(self) -> None:
        self._closed = True


class JSONL(_Base):
    """Append one JSON object per recorded step to ``path`` (created if missing).

    Args:
        path: the .jsonl file; its folder must exist.
        mode: "w" to start the log afresh (default), "a" to append to it (resuming a run).

    Raises:
        OutputError: the path cannot be written.
    """

    def __init__(self, path: str | Path, mode: str = "w") -> None:
        super().__init__()
        if mode not in ("a", "w"):
            raise GradwatchError(f"The 'mode' parameter of JSONL must be 'a' or 'w'. Got {mode!r} instead.")
        self.path = check_writable(path, "JSONL log")
        if mode == "w" or not self.path.exists():
            self.path.write_text("")

    def write(self, records: Sequence[Record]) -> None:
        self._check_open()
        if not records:
            return
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(lines)

    def __repr__(self) -> str:
        return f"JSONL({str(self.path)!r})"


CSV_COLUMNS = (
    "step",
    "layer",
    "grad_norm",
    "grad_max",
    "param_norm",
    "update_ratio",
    "global_grad_norm",
    "loss",
)


class CSV(_Base):
    """Write one row per (step, layer) with the columns in ``CSV_COLUMNS``.

    Raises:
        OutputError: the path cannot be written.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = check_writable(path, "CSV log")
        with self.path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(CSV_COLUMNS)

    def write(self, records: Sequence[Record]) -> None:
        self._check_open()
        with self.path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            for r in records:
                for name, s in r["layers"].items():
                    w.writerow(
                        [
                            r["step"],
                            name,
                            s["grad_norm"],
                            s["grad_max"],
                            s["param_norm"],
                            s["update_ratio"],
                            r["global_grad_norm"],
                            r.get("loss"),
                        ]
                    )

    def __repr__(self) -> str:
        return f"CSV({str(self.path)!r})"


def flat_scalars(record: Record) -> dict[str, float]:
    """Flatten a record into logger-ready keys ("grad_norm/fc.0", ...); strings become floats."""
    out: dict[str, float] = {}

    def put(key: str, v: Any) -> None:
        if v is None:
            return
        out[key] = float(v)

    put("gradwatch/global_grad_norm", record.get("global_grad_norm"))
    put("gradwatch/loss", record.get("loss"))
    put("gradwatch/loss_scale", record.get("loss_scale"))
    clip = record.get("clip")
    if clip:
        put("gradwatch/clip/pre", clip.get("pre"))
        put("gradwatch/clip/post", clip.get("post"))
    if "clipped" in record:  # only on steps whose clipping was measured
        put("gradwatch/clipped", 1.0 if record["clipped"] else 0.0)
    if "skipped" in record:
        put("gradwatch/skipped", 1.0 if record["skipped"] else 0.0)
    for name, s in record["layers"].items():
        for q in ("grad_norm", "grad_max", "param_norm", "update_ratio"):
            put(f"gradwatch/{q}/{name or '(model)'}", s.get(q))
    for name, a in (record.get("activations") or {}).items():
        put(f"gradwatch/{a.get('kind', 'activation')}/{name}", a.get("fraction"))
        put(f"gradwatch/activation_std/{name}", a.get("std"))
    return out


class TensorBoard(_Base):
    """Log every record's numbers as TensorBoard scalars.

    Args:
        log_dir: folder for the event files (a ``SummaryWriter`` is created), or
        writer: an existing ``SummaryWriter`` (not closed by this sink).

    Raises:
        GradwatchError: the tensorboard package is missing.
    """

    def __init__(self, log_dir: str | Path | None = None, *, writer: Any = None) -> None:
        super().__init__()
        if (log_dir is None) == (writer is None):
            raise GradwatchError("TensorBoard sink: pass exactly one of log_dir= or writer=.")
        self._owns = writer is None
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise GradwatchError(
                    "The TensorBoard sink needs the tensorboard package: pip install 'gradwatch[tensorboard]'."
                ) from None
            writer = SummaryWriter(log_dir=str(log_dir))
        self.writer = writer

    def write(self, records: Sequence[Record]) -> None:
        self._check_open()
        for r in records:
            for key, value in flat_scalars(r).items():
                self.writer.add_scalar(key, value, global_step=int(r["step"]))
        self.writer.flush()

    def close(self) -> None:
        if not self._closed and self._owns:
            self.writer.close()
        super().close()

    def __repr__(self) -> str:
        return "TensorBoard()"


class WandB(_Base):
    """Log every record's numbers to Weights & Biases with ``run.log(..., step=)``.

    Args:
        run: a ``wandb`` run; the current ``wandb.run`` when None.

    Raises:
        GradwatchError: wandb is missing or no run is active.
    """

    def __init__(self, run: Any = None) -> None:
        super().__init__()
        if run is None:
            try:
                import wandb
            except ImportError:
                raise GradwatchError("The WandB sink needs wandb: pip install 'gradwatch[wandb]'.") from None
            run = wandb.run
            if run is None:
                raise GradwatchError("The WandB sink needs an active run: call wandb.init(...) first or pass run=.")
        self.run = run

    def write(self, records: Sequence[Record]) -> None:
        self._check_open()
        for r in records:
            self.run.log(flat_scalars(r), step=int(r["step"]))

    def __repr__(self) -> str:
        return "WandB()"
