"""Gradient-free search: vmapped population losses vs a loop, and the latching task GD cannot learn."""

import pytest
import torch
from torch import nn

from gradwatch import models
from gradwatch.errors import ConfigError
from gradwatch.remedies import search


def latching(T, n, seed):
    """Bengio et al. 1994's information latching, simplified: the class is the sign of u_0,
    followed by T − 1 steps of small noise; the network must hold it to the end."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).float()
    x = torch.randn(n, T, 1, generator=g) * 0.1
    x[:, 0, 0] = y * 2 - 1
    return x, y


def bce(out, t):
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), t)


def accuracy(model, x, y):
    with torch.no_grad():
        return float(((model(x).squeeze(-1) > 0).float() == y).float().mean())


def test_population_loss_equals_a_loop_over_candidates():
    net = models.mlp(layers=2, hidden=8, in_dim=3, out_dim=1, activation="tanh", seed=0)
    x, y = torch.randn(20, 3), torch.randn(20)
    pop = torch.randn(5, search.flat_parameters(net).numel(), generator=torch.Generator().manual_seed(0))
    fast = search.population_loss(net, pop, x, y, lambda o, t: (o.squeeze(-1) - t).pow(2).mean())
    for i in range(5):
        search.load_flat_(net, pop[i])
        slow = float((net(x).squeeze(-1) - y).pow(2).mean())
        assert float(fast[i]) == pytest.approx(slow, rel=1e-5)


def test_flat_round_trip():
    net = models.rnn(kind="rnn", hidden=3, in_dim=2, seed=0)
    flat = search.flat_parameters(net)
    other = models.rnn(kind="rnn", hidden=3, in_dim=2, seed=1)
    search.load_flat_(other, flat)
    assert torch.equal(search.flat_parameters(other), flat)
    with pytest.raises(ConfigError, match="trainable weights"):
        search.load_flat_(other, flat[:-1])


def test_search_solves_the_latching_task_that_gradient_descent_fails():
    torch.manual_seed(0)
    x, y = latching(60, 128, 0)
    xt, yt = latching(60, 512, 1)
    # gradient descent on the article's sigmoid RNN: the signal of u_0 vanishes over 60 steps
    gd = models.rnn(kind="rnn", hidden=2, in_dim=1, out_dim=1, activation="sigmoid", seed=0)
    opt = torch.optim.Adam(gd.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        bce(gd(x), y).backward()
        opt.step()
    assert accuracy(gd, xt, yt) < 0.6
    ga_net = models.rnn(kind="rnn", hidden=2, in_dim=1, out_dim=1, activation="sigmoid", seed=0)
    ga = search.genetic_algorithm(ga_net, x, y, bce, population=128, generations=40, init_scale=5.0, mutation_std=0.5)
    search.load_flat_(ga_net, ga.best)
    assert accuracy(ga_net, xt, yt) > 0.95
    assert ga.history == sorted(ga.history, reverse=True)  # elitism: the best never gets worse
    rs_net = models.rnn(kind="rnn", hidden=2, in_dim=1, out_dim=1, activation="sigmoid", seed=0)
    rs = search.random_search(rs_net, x, y, bce, n_samples=2048, batch=256, scale=8.0)
    search.load_flat_(rs_net, rs.best)
    assert accuracy(rs_net, xt, yt) > 0.95
    assert rs.evaluations == 2048


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: search.genetic_algorithm(
                nn.Linear(2, 1), torch.zeros(1, 2), torch.zeros(1), bce, elite=10, population=4
            ),
            "elite <= population",
        ),
        (lambda: search.random_search(nn.Linear(2, 1), torch.zeros(1, 2), torch.zeros(1), bce, scale=0), r"'scale'"),
        (lambda: search.flat_parameters(nn.ReLU()), "no trainable parameters"),
        (
            lambda: search.population_loss(nn.Linear(2, 1), torch.zeros(3), torch.zeros(1, 2), torch.zeros(1), bce),
            r"shape \(P, n_weights\)",
        ),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_stop_below_counts_trials_until_the_first_solution():
    """random_search(stop_below=…) = a plain loop that guesses one vector at a time from the same stream."""
    net = models.mlp(layers=1, hidden=4, in_dim=2, out_dim=1, activation="tanh", seed=0)
    x, y = torch.randn(16, 2, generator=torch.Generator().manual_seed(1)), torch.randn(16)

    def loss(o, t):
        return (o.squeeze(-1) - t).pow(2).mean()

    threshold = 1.2
    res = search.random_search(net, x, y, loss, n_samples=5000, batch=64, scale=2.0, seed=3, stop_below=threshold)
    dim = search.flat_parameters(net).numel()
    g = torch.Generator().manual_seed(3)
    trial = 0
    while True:
        block = (torch.rand(64, dim, generator=g) * 2 - 1) * 2.0
        for row in block:
            trial += 1
            search.load_flat_(net, row)
            with torch.no_grad():
                if float(loss(net(x), y)) < threshold:
                    break
        else:
            continue
        break
    assert res.evaluations == trial and res.best_loss < threshold
    assert torch.equal(res.best, row)
    # the GA stops too, and counts evaluations up to and including the solving individual
    ga = search.genetic_algorithm(
        net, x, y, loss, population=16, parents=8, elite=2, generations=200, stop_below=threshold, seed=0
    )
    assert ga.best_loss < threshold and 1 <= ga.evaluations <= 16 * 200
    assert float(search.population_loss(net, ga.best[None], x, y, loss)[0]) == pytest.approx(ga.best_loss)
    never = search.random_search(net, x, y, loss, n_samples=100, batch=64, scale=2.0, stop_below=-1.0)
    assert never.evaluations == 100 and never.best_loss >= 0
