"""The HTML pages gradwatch writes, from Jinja2 templates that share one base layout.

``templates/base.html.j2`` holds the page shell, the only CSS and the only script; each
page extends it: ``run_store.html.j2`` (``gradwatch report``) and ``reproduce.html.j2``
(``gradwatch reproduce``). The shell gives every page the same design: a sticky summary
bar, buttons that filter rows and sections by status (elements with ``data-status``),
light and dark modes (the system's choice, or the toggle's), and figures that open full
size in a ``<dialog>`` (``_figure.html.j2``). Without JavaScript the page still reads
whole; the buttons stay hidden. Autoescaping is on, so every string a page shows is
escaped once, here. Figures are embedded as PNG data URIs: a page needs no network and
no file beside it.
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

    @property
    def status(self) -> str:
        """``"solved"`` (every seed solved), ``"partial"`` (some did) or ``"unsolved"`` (none did)."""
        if self.n_seeds and self.n_solved == self.n_seeds:
            return "solved"
        return "partial" if self.n_solved else "unsolved"


@dataclass(frozen=True)
class InvalidRow:
    """A run folder of the store whose result could not be verified, and why."""

    run_id: str
    reason: str


STORE_STATUSES = ("solved", "partial", "unsolved")
CLAIM_STATUSES = (("pass", "held"), ("fail", "failed"), ("skipped", "skipped"))


def _filters(statuses: Sequence[str], labels: Sequence[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """The filter buttons of a page: (status, label, count) for each status that occurs."""
    counts = {status: statuses.count(status) for status, _ in labels}
    return [(status, label, counts[status]) for status, label in labels if counts[status]]


def run_store_page(
    *,
    root: str,
    n_runs: int,
    seconds: float,
    rows: Sequence[StoreRow],
    figures: Sequence[tuple[str, Figure | bytes]],
    flows: Sequence[tuple[str, Figure | bytes] | tuple[str, Figure | bytes, str]] = (),
    invalid: Sequence[InvalidRow] = (),
) -> str:
    """The ``gradwatch report`` page of a run store.

    Args:
        root: the run store's folder, as shown on the page.
        n_runs: finished runs in the store; ``seconds``: their training time in all.
        rows: the summary table, one row per group of seeds.
        figures: (title, figure or PNG bytes) drawn from all runs.
        flows: (title, figure or PNG bytes[, status]) of the monitor's gradient-flow heat maps;
            a status (:attr:`StoreRow.status` of its group) lets the status filter hide it.
        invalid: run folders whose result failed verification; listed, never counted.
    """
    return render(
        "run_store.html.j2",
        root=root,
        n_runs=n_runs,
        seconds=seconds,
        rows=rows,
        figures=[(title, png_data_uri(f)) for title, f in figures],
        flows=[(flow[0], png_data_uri(flow[1]), flow[2] if len(flow) > 2 else "") for flow in flows],
        invalid=invalid,
        filters=_filters([row.status for row in rows], [(s, s) for s in STORE_STATUSES]),
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
        claims.append(
            {
                **c,
                "result": result,
                "status": result.lower(),
                "figure": None if figure is None else png_data_uri(figure),
            }
        )
    return render(
        "reproduce.html.j2",
        tier=doc["tier"],
        claims=claims,
        passed=doc["passed"],
        failed=doc["failed"],
        skipped=doc["skipped"],
        seconds=sum(float(c.get("seconds") or 0.0) for c in claims),
        filters=_filters([c["status"] for c in claims], CLAIM_STATUSES),
    )
