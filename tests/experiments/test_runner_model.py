"""run(spec, model=...): a caller-built module trains through the runner; scoring on a held-out set."""

import torch

from gradwatch.experiments import Spec, build_model, run, run_seeds
from gradwatch.tasks import digits_split

SPEC = {"task": "digits_heldout", "length": 1, "model": "mlp", "hidden": 16, "layers": 2, "steps": 20}


def test_a_caller_built_model_is_the_one_trained_and_equals_the_spec_built_one():
    spec = Spec(**SPEC, eval_every=10)
    mine = build_model(spec)
    before = [p.detach().clone() for p in mine.parameters()]
    r = run(spec, model=mine, keep_model=True)
    assert r.model is mine
    assert any(not torch.equal(a, p) for a, p in zip(before, mine.parameters(), strict=True))
    assert r.error == run(spec).error  # the same weights as build_model(spec) ⇒ the same run


def test_digits_heldout_is_scored_on_the_397_held_out_images_in_eval_mode():
    spec = Spec(**SPEC, eval_every=20, norm="batch")
    r = run(spec, keep_model=True)
    assert r.model is not None and r.model.training  # back in training mode after each evaluation
    _, _, x, y = digits_split()
    r.model.eval()
    with torch.no_grad():
        expected = float((r.model(x).argmax(1) != y).float().mean())
    assert abs(r.final_error - expected) < 1e-6
    assert abs(r.final_error * 397 - round(r.final_error * 397)) < 1e-3  # a fraction of 397 images


def test_batched_seeds_score_on_the_same_held_out_set():
    spec = Spec(**SPEC, eval_every=20)
    one = run(spec)
    (batched,) = run_seeds(spec, [0])
    assert abs(one.final_error - batched.final_error) <= 2 / 397  # equal up to reassociation in batched kernels
