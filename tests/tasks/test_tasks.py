"""Tasks: shapes, targets recomputed from the inputs, chance levels analytic vs simulated."""

import math

import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.tasks import TASKS, get_task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_determinism_and_seeding(name):
    task = get_task(name)
    x, y = task.generate(40, 16, seed=3)
    assert x.dim() == 3 and x.shape[0] == 16 and x.shape[2] == task.n_inputs
    assert y.shape[0] == 16
    x2, y2 = task.generate(40, 16, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = task.generate(40, 16, seed=4)
    assert not torch.equal(x, x3)
    assert task.source and 0 < task.chance_error <= 1


@pytest.mark.parametrize("name", ["adding", "multiplication"])
def test_regression_targets_are_recomputed_from_the_marked_inputs(name):
    x, y = get_task(name).generate(100, 64, seed=0)
    assert 100 <= x.shape[1] < 110  # the authors' ±10 % length jitter
    marks = x[:, :, 0]
    assert torch.all(marks.sum(dim=1) == 2)
    vals = [x[b, marks[b] == 1, 1] for b in range(64)]
    expected = torch.stack([(v[0] + v[1]) / 2 if name == "adding" else v[0] * v[1] for v in vals])
    torch.testing.assert_close(y, expected)
    first = marks.argmax(dim=1)
    assert torch.all(first < 10)  # p0 in the first 10 %


@pytest.mark.parametrize(("name", "bits"), [("temporal_order", 2), ("temporal_order_3bit", 3)])
def test_temporal_order_label_is_the_order_of_the_a_b_symbols(name, bits):
    x, y = get_task(name).generate(100, 64, seed=1)
    sym = x.argmax(-1)
    assert torch.all(x.sum(-1) == 1)  # one-hot
    for b in range(64):
        ab = sym[b][sym[b] < 2]
        assert ab.numel() == bits
        assert int(y[b]) == sum(int(v) << i for i, v in enumerate(ab))


def test_permutation_memorization_latching_targets():
    x, y = get_task("random_permutation").generate(30, 32, seed=0)
    assert torch.equal(x[:, 0].argmax(-1), y) and torch.all(x[:, 1:].argmax(-1) >= 2)
    x, y = get_task("memorization").generate(20, 8, seed=0)
    assert x.shape == (8, 40, 7) and y.shape == (8, 40)
    torch.testing.assert_close(y[:, -10:], x[:, :10, :5].argmax(-1))
    assert torch.all(y[:, :-10] == 5)
    assert torch.all(x[:, 30, 6] == 1)  # the "go" signal right before recall
    x, y = get_task("latching").generate(50, 64, seed=0)
    protos = {int(c): x[y == c][0, :3, 0] for c in (0, 1)}
    for b in range(64):
        torch.testing.assert_close(x[b, :3, 0], protos[int(y[b])])


def _constant_predictor_error(name, n=100_000):
    task = get_task(name)
    _x, y = task.generate(task.min_length, n, seed=7)  # the shortest sequences: chance does not depend on T
    if task.kind == "regression":
        const = 0.5 if name == "adding" else 0.25
        return task.error(torch.full((n, 1), const), y)
    if task.kind == "sequence":
        guess = torch.zeros(n, y.shape[1], task.n_outputs)
        guess[:, :, 5] = 1.0  # "blank" everywhere but the guessed symbol 0 at recall
        guess[:, -10:, 0] = 2.0
        return task.error(guess, y)
    counts = torch.bincount(y, minlength=task.n_outputs)
    guess = torch.zeros(n, task.n_outputs)
    guess[:, int(counts.argmax())] = 1.0
    return task.error(guess, y)


@pytest.mark.parametrize(
    "name",
    [
        "adding",
        "multiplication",
        "temporal_order",
        "temporal_order_3bit",
        "random_permutation",
        "latching",
        "memorization",
        "sequential_digits",
    ],
)
def test_chance_error_analytic_matches_simulation(name):
    simulated = _constant_predictor_error(name)
    assert simulated == pytest.approx(get_task(name).chance_error, abs=0.006)  # ~4 standard errors at n = 1e5


def test_analytic_chance_values():
    assert get_task("adding").chance_error == pytest.approx(0.36)
    z1, z2 = 0.05, 0.45
    assert get_task("multiplication").chance_error == pytest.approx(
        z1 - z1 * math.log(z1) + 1 - (z2 - z2 * math.log(z2))
    )


def test_error_and_solved():
    task = get_task("adding")
    _x, y = task.generate(20, 100, seed=0)
    assert task.error(y.unsqueeze(1), y) == 0.0 and task.solved(y.unsqueeze(1), y)
    assert task.error((y + 0.3).unsqueeze(1), y) == 1.0  # 0.09 > 0.04
    assert float(task.loss(y.unsqueeze(1), y)) == 0.0


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match=r"'task' parameter of get_task must be one of .*'adding'"):
        get_task("copying")
    with pytest.raises(ConfigError, match=r"'length' parameter of adding must be an integer >= 10"):
        get_task("adding").generate(5, 4)
    with pytest.raises(ConfigError, match=r"'batch_size'"):
        get_task("latching").generate(10, 0)


def test_rare_events_task():
    from gradwatch.tasks import rare_events

    x, y = rare_events(32, 40, seed=0)
    assert x.shape == (32, 40, 6) and torch.all(x.sum(-1) == 1)
    sym = x.argmax(-1)
    for b in range(32):
        events = sym[b][sym[b] >= 3]
        assert int(events[0]) == 3 + int(y[b])  # the class event comes first, within steps 1-3
        assert int(torch.nonzero(sym[b] == 3 + int(y[b]))[0]) <= 3
    with pytest.raises(ConfigError, match=r"'length' parameter of rare_events must be an integer >= 12"):
        rare_events(4, 5)


def test_digits_heldout_trains_on_the_first_1400_images_and_scores_on_the_rest():
    from gradwatch.tasks import digits_split

    Xtr, _ytr, Xte, yte = digits_split()
    task = get_task("digits_heldout")
    x, _y = task.generate(1, 64, seed=0)
    assert x.shape == (64, 1, 64)
    train_rows = {tuple(r.tolist()) for r in Xtr}
    assert all(tuple(r.tolist()) in train_rows for r in x[:, 0])
    x_eval, y_eval = task.eval_batch(1, 512, seed=5)  # the fixed held-out set, whatever the size asked
    assert torch.equal(x_eval[:, 0], Xte) and torch.equal(y_eval, yte)
    # a generated task scores on a batch drawn with the seed
    xa, _ = get_task("adding").eval_batch(20, 8, seed=3, jitter=False)
    assert torch.equal(xa, get_task("adding").generate(20, 8, seed=3, jitter=False)[0])


def test_latch_and_parity_sequences_for_weight_guessing():
    from gradwatch.tasks import latch_sequences, parity_sequences

    x, y = latch_sequences(200, 30, seed=1)
    assert x.shape == (200, 30) and torch.equal(x[:, 0], y) and set(y.tolist()) == {-1.0, 1.0}
    assert float(x[:, 1:].var()) == pytest.approx(0.2, rel=0.1)
    x, y = parity_sequences(100, 25, 50, seed=0)
    assert x.shape[0] == 100 and 25 <= x.shape[1] <= 50 and set(x.unique().tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(y, ((x > 0).sum(dim=1) % 2).float())
    with pytest.raises(ConfigError, match="max_length"):
        parity_sequences(10, 5, 4)


@pytest.mark.parametrize("name", ["adding", "temporal_order", "digits_mlp"])
def test_a_non_finite_output_has_no_error_rate(name):
    """NaN/Inf outputs are no answer: the error is unknown (NaN), and the task is not solved."""
    task = get_task(name)
    _x, y = task.eval_batch(20, 8, seed=0)
    out = torch.zeros(*y.shape, task.n_outputs) if task.kind != "regression" else torch.zeros(y.shape[0], 1)
    out[0] = float("nan")
    assert math.isnan(task.error(out, y)) and not task.solved(out, y)
