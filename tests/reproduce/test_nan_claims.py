"""NaN is never a pass (issue 15): every claim that trains fails when every run it trains diverges.

Each claim's experiment runs with ``train``/``train_module`` replaced by runs that diverged
at once (loss NaN, final error NaN, ``success`` False): whatever else the claim computes, it
must not hold. A claim that raises on such runs fails too (``reproduce`` reports it so).
About 12 s, most of it dbn-pretraining's RBM pre-training, which is not replaced.
"""

from __future__ import annotations

import math

import pytest

from gradwatch.experiments import Result, Spec
from gradwatch.reproduce import architectures, inits, optim, recurrent, theory
from gradwatch.reproduce.suite import CLAIMS

MODULES = (architectures, inits, optim, recurrent, theory)


def _diverged(spec: Spec) -> Result:
    return Result(
        spec=spec,
        steps=list(range(spec.eval_every, spec.steps + 1, spec.eval_every)) or [spec.steps],
        loss=[math.nan] * max(1, spec.steps // spec.eval_every),
        error=[math.nan] * max(1, spec.steps // spec.eval_every),
        final_error=math.nan,
        success=False,
        diverged=True,
        verdict={"status": "nonfinite", "where": [], "evidence": [], "advice": []},
    )


@pytest.fixture
def diverging(monkeypatch):
    """Replace the claims' training by runs that diverged; returns the list of calls."""
    calls: list[str] = []

    def train(ctx, claim_id, spec, seeds, *, batched, keep_model=False):
        calls.append(claim_id)
        return [_diverged(Spec.from_json({**spec.to_json(), "seed": s})) for s in seeds]

    def train_module(ctx, claim_id, variant, spec, model, *, keep_model=False):
        calls.append(claim_id)
        return _diverged(spec)

    for module in MODULES:
        if hasattr(module, "train"):
            monkeypatch.setattr(module, "train", train)
        if hasattr(module, "train_module"):
            monkeypatch.setattr(module, "train_module", train_module)
    return calls


# the claims that train through the experiments runner (the others never see a Result)
TRAINING = [
    "hs97-adding",
    "hs97-temporal-order",
    "pascanu-clipping",
    "latching",
    "trained-rnn-products",
    "kumar-init",
    "yilmaz-poli-init",
    "irnn",
    "relu-family",
    "clipping-rules",
    "batchnorm-deep-sigmoid",
    "he-degradation",
    "dbn-pretraining",
]


@pytest.mark.parametrize("claim_id", TRAINING)
def test_a_claim_never_holds_on_runs_that_diverged(diverging, claim_id):
    claim = CLAIMS[claim_id]
    try:
        outcome = claim.check("quick")
    except Exception:  # reproduce() reports an experiment that raises as a failed claim
        assert diverging, "the claim never trained"
        return
    assert diverging, f"{claim_id} trained nothing through train/train_module"
    assert outcome.skipped or outcome.passed is False, outcome.measured
