"""The one progress bar of long work (reproduce, sweep, lab, diagnose): done / total, the current item, elapsed time.

Every command that runs for a while draws its bar with :func:`progress_bar`, so they all
look alike and all follow one rule: a bar appears only on a terminal, never with
``--json`` (the caller passes ``enabled=False``) and never in a log file or a pipe. Work
reports through a :data:`ProgressCallback`, the same shape as
``reproduce(..., on_progress=)``, so the library never needs to know whether anyone draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

__all__ = ["ProgressCallback", "progress_bar"]

ProgressCallback = Callable[[int, int, str | None], None]
"""``on_progress(done, total, current)``: ``done`` of ``total`` items are finished and
``current`` names the item now running (None once all are done)."""


def _ignore(done: int, total: int, current: str | None) -> None:
    """The callback of a bar that is not drawn."""


@contextmanager
def progress_bar(label: str, console: Console | None = None, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Show a transient progress bar on ``console`` while the ``with`` block runs; yield its callback.

    The bar reads ``label ━━━━ done/total current-item 0:00:12`` and disappears when the
    block ends. Nothing is drawn, and the callback does nothing, when ``enabled`` is False
    (e.g. ``--json``) or when ``console`` is not a terminal (a pipe, a log file, a test runner).

    Args:
        label: what is running, shown first (e.g. ``"sweep"``).
        console: where to draw (default: a new console on stderr).
        enabled: False to draw nothing whatever the console.

    Yields:
        ``on_progress(done, total, current)``, the :data:`ProgressCallback` that moves the bar.

    Example:
        >>> import io
        >>> with progress_bar("demo", Console(file=io.StringIO())) as on_progress:  # not a terminal
        ...     on_progress(0, 2, "first")
        ...     on_progress(2, 2, None)
    """
    console = console if console is not None else Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield _ignore
        return
    bar = Progress(
        TextColumn(escape(label)),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        # a long name (a sweep's run id) is cut on a narrow terminal, never the counts or the time
        TextColumn("{task.fields[current]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        expand=True,
    )
    task = bar.add_task(label, total=None, current="", visible=False)  # shown from the first report on

    def on_progress(done: int, total: int, current: str | None) -> None:
        # an item's name is text, never rich markup: "[0.1, 1]" in a name must print as written
        bar.update(task, completed=done, total=total, current=escape(current or ""), visible=True, refresh=True)

    with bar:
        yield on_progress
