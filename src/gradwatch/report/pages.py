"""The HTML pages gradwatch writes, from Jinja2 templates that share one base layout.

``templates/base.html.j2`` holds the page shell and the only CSS; each page extends it:
``run_store.html.j2`` (``gradwatch report``) and ``reproduce.html.j2`` (``gradwatch
reproduce``). Autoescaping is on, so every string a page shows is escaped once, here.
Figures are embedded as PNG data URIs: a page needs no network and no file beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from matplotlib.figure import Figure

from gradwatch._output import png_data_uri

__all__ = ["InvalidRow", "StoreRow", "render", "reproduce_page", "run_store_page"]


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gradwatch.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """Render one of the package's templates (e.g. ``"reproduce.html.j2"``) with autoescaping on."""
    return _environment().get_template(template).render(**context)


@dataclass(frozen=True)
class StoreRow:
    """One row of the run-store summary: the runs that differ only by seed.

    ``mean_error`` is over the runs with a finite final error; ``n_failed`` counts the runs
    that diverged or have no finite error (failures, never averaged in as numbers); the
    page shows "—" when no run has a finite error.
    """

    label: str  # model/activation/remedies
    length: int
    n_seeds: int
    n_solved: int
    mean_error: float
    verdicts: Sequence[str]
    n_failed: int = 0


@dataclass(frozen=True)
class InvalidRow:
    """A run folder of the store whose result could not be verified, and why."""

    run_id: str
    reason: str


def run_store_page(
    *,
    root: str,
    n_runs: int,
    seconds: float,
    rows: Sequence[StoreRow],
    figures: Sequence[tuple[str, Figure | bytes]],
    flows: Sequence[tuple[str, Figure | bytes]] = (),
    invalid: Sequence[InvalidRow] = (),
) -> str:
    """The ``gradwatch report`` page of a run store.

    Args:
        root: the run store's folder, as shown on the page.
        n_runs: finished runs in the store; ``seconds``: their training time in all.
        rows: the summary table, one row per group of seeds.
        figures: (title, figure or PNG bytes) drawn from all runs.
        flows: (title, figure or PNG bytes) of the monitor's gradient-flow heat maps.
        invalid: run folders whose result failed verification; listed, never counted.
    """
    return render(
        "run_store.html.j2",
        root=root,
        n_runs=n_runs,
        seconds=seconds,
        rows=rows,
        figures=[(title, png_data_uri(f)) for title, f in figures],
        flows=[(title, png_data_uri(f)) for title, f in flows],
        invalid=invalid,
    )


def reproduce_page(doc: Mapping[str, Any], figures: Mapping[str, Figure | bytes | None]) -> str:
    """The ``gradwatch reproduce`` page: a summary table, then one section per claim with its figure.

    Args:
        doc: the results document (``tier``, ``claims``, ``passed``, ``failed``, ``skipped``),
            each claim a mapping with ``id``, ``source``, ``claim``, ``published``,
            ``criterion``, ``measured``, ``pass``, ``skipped``, ``seconds`` and ``note``.
        figures: claim id → its figure or PNG bytes; a claim without one (absent or None) shows none.
    """
    claims = []
    for c in doc["claims"]:
        figure = figures.get(c["id"])
        result = "skipped" if c["skipped"] else ("pass" if c["pass"] else "FAIL")
        claims.append({**c, "result": result, "figure": None if figure is None else png_data_uri(figure)})
    return render(
        "reproduce.html.j2",
        tier=doc["tier"],
        claims=claims,
        passed=doc["passed"],
        failed=doc["failed"],
        skipped=doc["skipped"],
    )
