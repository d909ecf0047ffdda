"""``gradwatch watch run.jsonl``: a live dashboard of a monitor log while a job writes it.

The log is read incrementally (:class:`LogFollower` keeps a byte offset and parses only
complete new lines, with the same checks as ``read_jsonl``); each frame rebuilds the History
from the records so far and asks ``gw.verdict`` for the diagnosis, so the live view, ``show``
and the monitor always agree. The drawing is :func:`render`, a pure function of
(history, verdict, width).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gradwatch import _checks
from gradwatch.cli.app import emit_json, stderr
from gradwatch.cli.show import STATUS_COLOURS, verdict_document
from gradwatch.errors import ConfigError
from gradwatch.monitor import History, Verdict, verdict
from gradwatch.monitor.history import parse_line

_BLOCKS = "▁▂▃▄▅▆▇█"
_NONFINITE_GLYPH = "✕"
_POLL_S = 0.25
_SHOWN_EVENTS = 5


class LogFollower:
    """Follow a growing JSONL log: parse only the complete lines written since the last poll."""

    def __init__(self, path: str | Path) -> None:
        self.path = _checks.readable_file(path, "log")
        self.records: list[dict[str, Any]] = []
        self.offset = 0  # bytes consumed: always the end of a complete line
        self._lineno = 0

    def poll(self) -> int:
        """Read what was appended since the last call; return the number of new records.

        Raises:
            ConfigError: the log vanished, shrank, is not UTF-8 text or holds an invalid record.
        """
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, 2)
                if size < self.offset:
                    raise ConfigError(f"The log {str(self.path)!r} shrank while watched (truncated or replaced).")
                f.seek(self.offset)
                chunk = f.read(size - self.offset)
        except OSError as exc:
            raise ConfigError(f"Cannot read the log {str(self.path)!r}: {exc.strerror or exc}.") from None
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits for its newline
        before = len(self.records)
        for raw in complete.splitlines(keepends=True):
            self._lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"Cannot read the log {str(self.path)!r}: it is not UTF-8 text (byte {exc.start} of a line)."
                ) from None
            rec = parse_line(line, self.path, self._lineno)
            if rec is not None:
                self.records.append(rec)
        self.offset += len(complete)
        return len(self.records) - before

    def history(self) -> History:
        """The History of the records read so far.

        Raises:
            ConfigError: no record yet.
        """
        if not self.records:
            raise ConfigError(f"The log {str(self.path)!r} holds no records.")
        return History.from_records(self.records)


def sparkline(values: np.ndarray, width: int) -> Text:
    """The last ``width`` values as unicode blocks on a log scale; 0 as "·", NaN/Inf as a red "✕"."""
    v = np.asarray(values, dtype=float)[-max(width, 1) :]
    positive = v[np.isfinite(v) & (v > 0)]
    lo, hi = (np.log10(positive.min()), np.log10(positive.max())) if positive.size else (0.0, 0.0)
    text = Text()
    for x in v:
        if not math.isfinite(x):
            text.append(_NONFINITE_GLYPH, style="bold red")
        elif x <= 0:
            text.append("·", style="dim")
        else:
            frac = (math.log10(x) - lo) / (hi - lo) if hi > lo else 0.5
            text.append(_BLOCKS[int(frac * (len(_BLOCKS) - 1) + 0.5)], style="cyan")
    return text


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _latest(values: np.ndarray) -> float:
    """The last measured value (NaN marks "not measured" in sparse columns such as the update ratio)."""
    measured = np.asarray(values, dtype=float)
    measured = measured[~np.isnan(measured)]
    return float(measured[-1]) if measured.size else math.nan


def worst_first(history: History, result: Verdict) -> list[str]:
    """Layer names, worst first: non-finite ‖g‖, then those the verdict names (in its order), then
    by the distance of the latest log10 RMS gradient from the median layer's."""
    rms = {name: float(lh.grad_rms[-1]) for name, lh in history.layers.items()}
    logs = [math.log10(r) for r in rms.values() if math.isfinite(r) and r > 0]
    median = float(np.median(logs)) if logs else 0.0
    named = {name: i for i, name in enumerate(result.where)}

    def badness(name: str) -> tuple[bool, int, float]:
        r = rms[name]
        spread = abs(math.log10(r) - median) if math.isfinite(r) and r > 0 else math.inf
        return (math.isfinite(r), named.get(name, len(named)), -spread)

    return sorted(history.layers, key=badness)


def render(history: History, result: Verdict, width: int, *, title: str = "", max_layers: int = 12) -> RenderableType:
    """The dashboard: global-norm sparkline, layers worst first, the verdict and its latest events."""
    steps = history.steps
    head = Text(f"{title}  " if title else "", style="bold")
    head.append(f"{history.n_steps} records, step {int(steps[-1])}, {len(history.layers)} layers")
    spark = Text("‖g‖ ", style="bold")
    spark.append(sparkline(history.global_grad_norm, max(width - 24, 8)))
    spark.append(f" {_fmt(float(history.global_grad_norm[-1]))}")

    with_ratio = any(not math.isnan(_latest(lh.update_ratio)) for lh in history.layers.values())
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("layer", "role", "‖g‖", "RMS", *(("‖Δθ‖/‖θ‖",) if with_ratio else ())):
        table.add_column(column, justify="left" if column in ("layer", "role") else "right")
    order = worst_first(history, result)
    for name in order[:max_layers]:
        lh = history.layers[name]
        cells = [name, lh.role, _fmt(float(lh.grad_norm[-1])), _fmt(float(lh.grad_rms[-1]))]
        style = "red" if not math.isfinite(float(lh.grad_norm[-1])) else ("yellow" if name in result.where else "")
        table.add_row(*cells, *((_fmt(_latest(lh.update_ratio)),) if with_ratio else ()), style=style)
    if len(order) > max_layers:
        table.add_row(f"… {len(order) - max_layers} more", "", "", "", *(("",) if with_ratio else ()))

    status = Text(result.status, style=f"bold {STATUS_COLOURS[result.status]}")
    if result.where:
        status.append(" in " + ", ".join(result.where[:6]) + (", …" if len(result.where) > 6 else ""))
    parts: list[RenderableType] = [head, spark, table, status]
    parts += [Text(f"  - {e.sentence}") for e in result.evidence]
    if result.events:
        parts.append(Text(f"  events ({len(result.events)}, latest last):"))
        parts += [Text(f"  · step {e.step}: {e.sentence}") for e in result.events[-_SHOWN_EVENTS:]]
    return Group(*parts)


def _frame(follower: LogFollower, width: int) -> tuple[History, Verdict, RenderableType]:
    history = follower.history()
    result = verdict(history)
    return history, result, render(history, result, width, title=follower.path.name)


def watch(
    log: Annotated[Path, typer.Argument(help="A JSONL log that a running job writes (Monitor(log=...)).")],
    idle: Annotated[float, typer.Option("--idle", help="Stop after this many seconds without the log growing.")] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Draw one frame of the log as it is and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="No dashboard: print the final verdict as `show --json` does.")
    ] = False,
) -> None:
    """Follow a monitor log while a job writes it: a live dashboard until the log stops growing or Ctrl-C."""
    if not (math.isfinite(idle) and idle > 0):
        raise ConfigError(f"The 'idle' parameter of watch must be a number of seconds > 0. Got {idle} instead.")
    follower = LogFollower(log)
    follower.poll()
    console = Console(highlight=False)
    try:
        if as_json and not once:
            _follow(follower, idle)
        elif not once:
            stderr.print(f"watching {log}: stops after {idle:g} s without growth, or on Ctrl-C", highlight=False)
            # transient: the last frame is printed once below, with the advice, terminal or not
            with Live(console=console, auto_refresh=False, transient=True) as live:
                _follow(follower, idle, live)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user leaves a live view: not an error
    history, result, frame = _frame(follower, console.width)
    if as_json:
        emit_json(verdict_document(history, result))
        return
    console.print(frame)
    for a in result.advice:
        console.print(f"  * {a.remedy}: {a.reason}", markup=False)


def _follow(follower: LogFollower, idle: float, live: Live | None = None) -> None:
    """Poll the log until it has not grown for ``idle`` seconds; redraw ``live`` and print new events above it."""
    seen: set[tuple[int, str, str | None]] = set()
    last_growth = time.monotonic()
    fresh = bool(follower.records)
    while True:
        if fresh and live is not None:
            _, result, frame = _frame(follower, live.console.width)
            for e in result.events:
                if (e.step, e.kind, e.layer) not in seen:
                    seen.add((e.step, e.kind, e.layer))
                    if live.console.is_terminal:  # a pipe gets the final frame only
                        live.console.print(Text(f"step {e.step}: {e.sentence}", style="magenta"))
            live.update(frame, refresh=True)
        if time.monotonic() - last_growth > idle:
            return
        time.sleep(_POLL_S)
        fresh = follower.poll() > 0
        if fresh:
            last_growth = time.monotonic()
