"""K seeds as one vmapped model give the numbers of K separate runs."""

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
