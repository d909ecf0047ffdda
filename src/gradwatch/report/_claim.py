"""What a claim is (:class:`Claim`), what checking it gives (:class:`Outcome`), and where runs go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

__all__ = ["TIERS", "Claim", "Outcome", "run_store_root", "use_run_store"]

TIERS = ("full", "quick")


@dataclass
class Outcome:
    """The result of checking one claim."""

    measured: str
    passed: bool
    values: dict[str, Any] = field(default_factory=dict)
    figure: Figure | None = None
    note: str = ""
    skipped: bool = False  # the experiment could not run here (e.g. no GPU): neither held nor failed


@dataclass(frozen=True)
class Claim:
    """One published claim and how we check it."""

    id: str
    source: str
    claim: str
    published: str
    criterion: str
    check: Callable[[str], Outcome]
    remedies: tuple[str, ...] = ()  # names from gradwatch.remedies.available() that the claim exercises


_RUN_STORE: ContextVar[Path | None] = ContextVar("gradwatch_reproduce_run_store", default=None)


@contextmanager
def use_run_store(root: Path | None) -> Iterator[None]:
    """Within the block, claims that train through the experiments runner store their runs under ``root``."""
    token = _RUN_STORE.set(root)
    try:
        yield
    finally:
        _RUN_STORE.reset(token)


def run_store_root() -> Path | None:
    """The run store root set by :func:`use_run_store`, or None."""
    return _RUN_STORE.get()
