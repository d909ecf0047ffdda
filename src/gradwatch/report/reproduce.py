"""The ``gradwatch reproduce`` page: a results document and the claims' figures → one self-contained HTML page.

The claims and their checking live in :mod:`gradwatch.reproduce`; this module only renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from gradwatch.report.pages import reproduce_page

__all__ = ["render_page"]


def render_page(doc: dict[str, Any], figures: Mapping[str, Figure | None]) -> str:
    """Render the reproduce page: the summary table, then one section per claim with its figure.

    An alias of :func:`gradwatch.report.pages.reproduce_page`, which renders every page of the
    report layer from one base template.

    Args:
        doc: the results document of :func:`gradwatch.reproduce.reproduce` (``tier``, ``claims``,
            ``passed``, ``failed``, ``skipped``).
        figures: claim id → its figure (or None).
    """
    return reproduce_page(doc, figures)


_page = render_page  # the name the orchestrator called before it moved to gradwatch.reproduce
