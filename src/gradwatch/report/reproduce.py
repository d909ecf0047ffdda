"""``gradwatch reproduce``: re-check published claims and write results.json and an HTML page."""

from __future__ import annotations

import html
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradwatch import _checks
from gradwatch._output import atomic_write_text, dump_json, png_data_uri, prepare_folder
from gradwatch.report._claim import use_run_store
from gradwatch.report.claims import CLAIMS, TIERS, Outcome

__all__ = ["reproduce"]


def reproduce(tier: str = "quick", only: Sequence[str] | None = None, out: str | Path = "reproduce") -> dict[str, Any]:
    """Check every claim (or ``only`` those ids) at ``tier``; write ``results.json`` and ``index.html``.

    Claims that train through the experiments runner keep their runs in the run store
    ``out/runs/<claim id>/`` (spec.json, result.json, metrics and monitor logs per run).

    A claim whose experiment raises is reported as failed with the error, and the others
    still run.

    Returns:
        The results document (as written to results.json).

    Raises:
        ConfigError: an unknown tier or claim id (the message lists the valid ones);
        OutputError: ``out`` cannot be created or written (checked before any experiment).
    """
    _checks.choice(tier, "tier", "reproduce", TIERS)
    ids = list(only) if only else list(CLAIMS)
    for cid in ids:
        _checks.choice(cid, "only", "reproduce", tuple(CLAIMS))
    folder = prepare_folder(out)
    runs = prepare_folder(folder / "runs", "run store")
    rows = []
    outcomes: dict[str, Outcome] = {}
    for cid in ids:
        claim = CLAIMS[cid]
        t0 = time.perf_counter()
        try:
            with use_run_store(runs):
                outcome = claim.check(tier)
        except Exception as exc:  # a broken experiment is a failed claim, not a crashed suite
            outcome = Outcome(
                measured=f"the experiment raised {type(exc).__name__}: {exc}",
                passed=False,
                note=traceback.format_exc(limit=3),
            )
        outcomes[cid] = outcome
        rows.append(
            {
                "id": cid,
                "source": claim.source,
                "claim": claim.claim,
                "published": claim.published,
                "criterion": claim.criterion,
                "measured": outcome.measured,
                "pass": None if outcome.skipped else bool(outcome.passed),
                "skipped": outcome.skipped,
                "seconds": round(time.perf_counter() - t0, 2),
                "note": outcome.note,
            }
        )
    doc = {
        "tier": tier,
        "claims": rows,
        "passed": sum(r["pass"] is True for r in rows),
        "failed": sum(r["pass"] is False for r in rows),
        "skipped": sum(r["skipped"] for r in rows),
    }
    atomic_write_text(folder / "results.json", dump_json(doc, indent=1))
    atomic_write_text(folder / "index.html", _page(doc, outcomes))
    return doc


def _img(outcome: Outcome) -> str:
    if outcome.figure is None:
        return ""
    return f'<img alt="figure" src="{png_data_uri(outcome.figure)}">'


def _page(doc: dict[str, Any], outcomes: dict[str, Outcome]) -> str:
    esc = html.escape

    def verdict(r: dict[str, Any]) -> str:
        return "skipped" if r["skipped"] else ("pass" if r["pass"] else "FAIL")

    summary = "".join(
        f'<tr class="{verdict(r).lower()}"><td><a href="#{esc(r["id"])}">{esc(r["id"])}</a></td>'
        f"<td>{esc(r['claim'])}</td><td>{esc(r['published'])}</td><td>{esc(r['measured'])}</td>"
        f"<td>{verdict(r)}</td></tr>"
        for r in doc["claims"]
    )
    sections = "".join(
        f'<section id="{esc(r["id"])}"><h2>{esc(r["id"])}: {verdict(r)}</h2>'
        f"<p><b>Source:</b> {esc(r['source'])}</p><p><b>Claim:</b> {esc(r['claim'])}</p>"
        f"<p><b>Published:</b> {esc(r['published'])}</p><p><b>Criterion:</b> {esc(r['criterion'])}</p>"
        f"<p><b>Measured:</b> {esc(r['measured'])} ({r['seconds']} s)</p>"
        + (f"<p><b>Note:</b> {esc(r['note'])}</p>" if r["note"] else "")
        + _img(outcomes[r["id"]])
        + "</section>"
        for r in doc["claims"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gradwatch reproduce</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
tr.pass td:last-child{{color:#176b17;font-weight:bold}}tr.fail td:last-child{{color:#b00;font-weight:bold}}
img{{max-width:100%}}section{{margin-top:2em}}</style></head><body>
<h1>gradwatch reproduce ({esc(doc["tier"])})</h1>
<p>{doc["passed"]} of {len(doc["claims"])} claims held, {doc["failed"]} did not, {doc["skipped"]} could not run here.</p>
<table><tr><th>claim</th><th>statement</th><th>published</th><th>measured</th><th>result</th></tr>{summary}</table>
{sections}
</body></html>
"""
