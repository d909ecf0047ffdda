"""``gradwatch reproduce``: check every claim, write ``results.json`` and the HTML page.

The claims live in one module per family (theory, recurrent, search, inits,
architectures, optim, spikes, flossing); :data:`CLAIMS` lists them in the order of the reproduction issue.
The page is rendered by :mod:`gradwatch.report.reproduce` (report draws, this package
decides).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradwatch import _checks
from gradwatch._output import atomic_write_text, dump_json, prepare_folder
from gradwatch.experiments import Result
from gradwatch.report.reproduce import render_page
from gradwatch.reproduce import architectures, flossing, inits, optim, recurrent, search, spikes, theory
from gradwatch.reproduce.core import TIERS, Claim, Outcome

__all__ = ["CLAIMS", "reproduce"]

# The order: the article's own claims, then the long-lag tasks, inits, architectures, optimizers.
_ORDER = (
    "doya-bistability",
    "loss-wall",
    "trained-rnn-products",
    "product-spectra",
    "lyapunov-transition",
    "hs97-adding",
    "hs97-temporal-order",
    "pascanu-clipping",
    "latching",
    "guessing",
    "glorot-bengio",
    "kumar-init",
    "yilmaz-poli-init",
    "he-degradation",
    "veit-paths",
    "batchnorm-deep-sigmoid",
    "rprop",
    "dbn-pretraining",
    "history-compressor",
    "irnn",
    "faster-hardware",
    # beyond the list: every remedy in gradwatch.remedies appears in some claim
    "relu-family",
    "clipping-rules",
    "amp-loss-scaling",
    "spike-control",
    "gradient-flossing",
)
_ALL = {c.id: c for m in (theory, recurrent, search, inits, architectures, optim, spikes, flossing) for c in m.CLAIMS}
CLAIMS: dict[str, Claim] = {k: _ALL[k] for k in _ORDER}


def reproduce(
    tier: str = "quick",
    only: Sequence[str] | None = None,
    out: str | Path = "reproduce",
    *,
    claims: dict[str, Claim] | None = None,
    on_progress: Callable[[int, int, str | None], None] | None = None,
) -> dict[str, Any]:
    """Check every claim (or ``only`` those ids) at ``tier``; write ``results.json`` and ``index.html``.

    Claims that train through the experiments runner keep their runs in the run store
    ``out/runs/<claim id>/`` (spec.json, result.json, metrics and monitor logs per run).
    A claim whose experiment raises is reported as failed with the error, and the others
    still run.

    Args:
        tier: "quick" (minutes on 2 CPU cores) or "full" (the papers' sizes, slow).
        only: claim ids to check; all of them when None.
        out: the output folder (created; its parent must exist).
        claims: the registry to check (default :data:`CLAIMS`), e.g. a test's variant.
        on_progress: called as ``on_progress(done, total, claim_id)`` before each claim starts
            and as ``on_progress(total, total, None)`` when all are checked (the CLI draws
            its progress bar from it).

    Returns:
        The results document (as written to results.json).

    Raises:
        ConfigError: an unknown tier or claim id (the message lists the valid ones);
        OutputError: ``out`` cannot be created or written (checked before any experiment).
    """
    registry = CLAIMS if claims is None else claims
    _checks.choice(tier, "tier", "reproduce", TIERS)
    ids = list(only) if only else list(registry)
    for cid in ids:
        _checks.choice(cid, "only", "reproduce", tuple(registry))
    folder = prepare_folder(out)
    runs = prepare_folder(folder / "runs", "run store")
    cache: dict[str, list[Result]] = {}  # runs shared by claims (hs97-adding and irnn), trained once
    rows: list[dict[str, Any]] = []
    outcomes: dict[str, Outcome] = {}
    for done, cid in enumerate(ids):
        if on_progress is not None:
            on_progress(done, len(ids), cid)
        claim = registry[cid]
        t0 = time.perf_counter()
        try:
            outcome = claim.check(tier, runs, cache)
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
                "criterion": claim.criterion.sentence,
                "measured": outcome.measured,
                "pass": None if outcome.skipped else bool(outcome.passed),
                "skipped": outcome.skipped,
                "seconds": round(time.perf_counter() - t0, 2),
                "note": outcome.note,
            }
        )
    if on_progress is not None:
        on_progress(len(ids), len(ids), None)
    doc = {
        "tier": tier,
        "claims": rows,
        "passed": sum(r["pass"] is True for r in rows),
        "failed": sum(r["pass"] is False for r in rows),
        "skipped": sum(r["skipped"] for r in rows),
    }
    atomic_write_text(folder / "results.json", dump_json(doc, indent=1))
    atomic_write_text(folder / "index.html", render_page(doc, {cid: o.figure for cid, o in outcomes.items()}))
    return doc
