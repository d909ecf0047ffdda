"""The ``gradwatch diagnose`` page: the verdict, the remedies tried side by side, their loss curves.

Drawn from the ``diagnosis.json`` document (:meth:`gradwatch.diagnose.Diagnosis.to_json`)
and the main model's gradient-flow figure; report never imports diagnose (layers point down).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradwatch._output import png_data_uri
from gradwatch.report.pages import _filters, render

__all__ = ["diagnosis_page", "loss_figure"]


def loss_figure(trials: Sequence[Mapping[str, Any]]) -> Figure:
    """The loss at every step of each run compared (NaN/Inf steps left as gaps, a diverged run marked ×)."""
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    finite_all = [v for t in trials for v in t["losses"] if v is not None and math.isfinite(v)]
    for t in trials:
        y = np.array([math.nan if v is None else v for v in t["losses"]], dtype=float)
        y[~np.isfinite(y)] = np.nan
        style = "--" if t["remedy"] is None and t["label"] != "as written" else "-"
        (line,) = ax.plot(np.arange(y.size), y, style, lw=1.2, label=t["label"])
        if t.get("diverged_at") is not None:
            k = int(t["diverged_at"])
            last = y[:k][np.isfinite(y[:k])]
            ax.plot(
                [k],
                [last[-1] if last.size else (min(finite_all) if finite_all else 0.0)],
                "x",
                ms=9,
                color=line.get_color(),
            )
    if finite_all and min(finite_all) > 0 and max(finite_all) / min(finite_all) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("loss of the same first steps, as written and with each remedy (× diverged)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    return fig


def diagnosis_page(doc: Mapping[str, Any], flow: Figure | bytes | None) -> str:
    """The self-contained HTML page of one diagnosis (``DIR/index.html``)."""
    figures: list[tuple[str, str]] = []
    if doc["trials"]:
        figures.append(("Loss, as written and with each remedy", png_data_uri(loss_figure(doc["trials"]))))
    if flow is not None:
        figures.append(("Gradient flow of the run as written", png_data_uri(flow)))
    verdict = doc["verdict"] or {"status": "unknown", "where": [], "evidence": [], "advice": [], "events": []}
    statuses = [t["status"] or "nonfinite" for t in doc["trials"]]
    filters = _filters(statuses, [(s, s) for s in ("healthy", "vanishing", "exploding", "nonfinite")])
    return render("diagnose.html.j2", doc=doc, verdict=verdict, figures=figures, filters=filters)
