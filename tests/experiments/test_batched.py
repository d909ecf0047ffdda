"""K seeds as one vmapped model give the numbers of K separate runs."""

import math

import pytest

from gradwatch.errors import ConfigError
from gradwatch.experiments import Spec, run, run_seeds

BASE = {
    "task": "temporal_order",
    "length": 15,
    "hidden": 12,
    "steps": 12,
    "eval_every": 4,
    "eval_batch": 128,
    "batch_size": 16,
}


@pytest.mark.parametrize(
    ("optimizer", "remedies"),
    [
        ("sgd", {"clip_grad_norm": {"max_norm": 0.05}}),  # small: clipping is active on every seed
        ("adam", {"clip_grad_value": {"clip_value": 0.01}}),
        ("rprop", {}),
        ("sign_sgd", {}),
    ],
)
def test_batched_seeds_equal_separate_runs(optimizer, remedies):
    spec = Spec(**BASE, optimizer=optimizer, lr=0.05, remedies=remedies)
    seeds = [0, 3, 7]
    batched = run_seeds(spec, seeds)
    for s, b in zip(seeds, batched, strict=True):
        single = run(Spec.from_json({**spec.to_json(), "seed": s}))
        assert b.spec.seed == s and b.steps == single.steps
        assert b.loss == pytest.approx(single.loss, rel=1e-4)
        assert b.error == pytest.approx(single.error, abs=1.5 / 128)  # at most one held-out sequence apart


def test_jitter_free_adding_and_mlp():
    spec = Spec(**{**BASE, "task": "adding", "length": 12}, jitter=False, optimizer="adam", lr=0.01)
    batched = run_seeds(spec, [1, 2])
    single = run(Spec.from_json({**spec.to_json(), "seed": 2}))
    assert batched[1].loss == pytest.approx(single.loss, rel=1e-4)
    mlp = Spec(
        task="digits_mlp",
        length=1,
        model="mlp",
        activation="relu",
        hidden=16,
        layers=2,
        steps=6,
        eval_every=3,
        eval_batch=64,
    )
    assert run_seeds(mlp, [0])[0].loss == pytest.approx(run(mlp).loss, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "seeds", "match"),
    [
        (
            {"remedies": {"pascanu_regularizer": {}}},
            [0, 1],
            r"support the remedies \['clip_grad_norm', 'clip_grad_value'\]",
        ),
        ({"task": "adding", "length": 12}, [0, 1], "set jitter=False"),
        ({}, [], "at least one seed"),
        ({}, [1, 1], "repeated seeds"),
        ({"model": "lstm"}, [0], "no batching rule for the fused"),
    ],
)
def test_limits_are_named(kwargs, seeds, match):
    with pytest.raises(ConfigError, match=match):
        run_seeds(Spec(**{**BASE, **kwargs}), seeds)


def test_a_diverged_seed_is_a_failure_with_no_error_rate():
    """lr 1e30: every seed's loss becomes inf; its error is unknown (NaN), never the 0 % NaN outputs score."""
    spec = Spec(
        task="adding", length=10, hidden=8, steps=20, eval_every=10, eval_batch=64, batch_size=16, jitter=False, lr=1e30
    )
    for r in run_seeds(spec, [0, 1]):
        assert r.diverged and not r.success and math.isnan(r.final_error)


def test_non_finite_outputs_score_nan_not_zero():
    import torch

    from gradwatch.experiments.runner import _heldout_error
    from gradwatch.tasks import get_task

    task = get_task("adding")
    targets = torch.zeros(4)
    assert math.isnan(task.error(torch.full((4,), math.nan), targets))  # no answer: unknown, not 0 % wrong
    assert math.isnan(_heldout_error(task, torch.full((4,), math.nan), targets))
    assert math.isnan(_heldout_error(task, torch.tensor([0.0, 0.0, math.inf, 0.0]), targets))
    assert _heldout_error(task, torch.zeros(4), targets) == 0.0
