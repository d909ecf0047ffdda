"""Initializations against their formulas, and one behaviour each rule exists for."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradwatch.errors import ConfigError
from gradwatch.remedies import init


def test_kumar_std_follows_the_general_rule():
    n = 100
    # v² = 1/(N g'(0)² (1 + g(0)²)): sigmoid g(0)=1/2, g'(0)=1/4 → 12.8/N ≈ (3.58/√N)²
    assert init.kumar_std(n, "sigmoid") == pytest.approx(math.sqrt(12.8 / n))
    assert init.kumar_std(n, "sigmoid") * math.sqrt(n) == pytest.approx(3.6, abs=0.03)
    assert init.kumar_std(n, "sigmoid", "code") == pytest.approx(math.sqrt(3.6 / n))
    assert init.kumar_std(n, "tanh") == pytest.approx(1 / math.sqrt(n))
    assert init.kumar_std(n, "relu") == pytest.approx(math.sqrt(2 / n))


def test_kumar_draws_have_the_right_spread_and_zero_biases():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(400, 300)
    init.kumar_(lin, "sigmoid", generator=g)
    assert float(lin.weight.detach().std()) == pytest.approx(math.sqrt(12.8 / 400), rel=0.02)
    assert abs(float(lin.weight.detach().mean())) < 0.01
    assert torch.count_nonzero(lin.bias) == 0
    lstm = nn.LSTM(50, 40)
    init.kumar_(lstm, "tanh", generator=g)
    assert float(lstm.weight_hh_l0.detach().std()) == pytest.approx(1 / math.sqrt(40), rel=0.05)
    assert float(lstm.weight_ih_l0.detach().std()) == pytest.approx(1 / math.sqrt(50), rel=0.05)


def test_kumar_keeps_gradients_alive_in_a_deep_sigmoid_mlp():
    def first_last_ratio(model):
        torch.manual_seed(1)
        x = torch.randn(256, 64)
        model(x).pow(2).mean().backward()
        lin = [m for m in model if isinstance(m, nn.Linear)]
        return float(lin[0].weight.grad.norm() / lin[-2].weight.grad.norm())

    def build():
        torch.manual_seed(0)
        return nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(64, 64), nn.Sigmoid())], nn.Linear(64, 1))

    default = first_last_ratio(build())
    kumar = first_last_ratio(init.kumar_(build(), "sigmoid"))
    assert kumar > 1e3 * default


@pytest.mark.parametrize(("fan_in", "mean"), [(4, -1.0), (64, -0.125)])
def test_yilmaz_poli_mean(fan_in, mean):
    lin = nn.Linear(fan_in, 2000)
    init.yilmaz_poli_(lin, std=0.05, generator=torch.Generator().manual_seed(0))
    assert float(lin.weight.detach().mean()) == pytest.approx(mean, abs=0.01)
    assert float(lin.weight.detach().std()) == pytest.approx(0.05, rel=0.05)


def test_orthogonal_and_identity_recurrent():
    lin = init.orthogonal_(nn.Linear(32, 32))
    torch.testing.assert_close(lin.weight @ lin.weight.T, torch.eye(32), atol=1e-5, rtol=0)
    rnn = init.identity_recurrent_(nn.RNN(3, 6, nonlinearity="relu"))
    assert torch.equal(rnn.weight_hh_l0, torch.eye(6))
    assert float(rnn.weight_ih_l0.detach().std()) < 0.01
    gru = init.identity_recurrent_(nn.GRU(3, 4))
    assert torch.equal(gru.weight_hh_l0, torch.eye(4).repeat(3, 1))


def test_glorot_and_he_spreads():
    g = torch.Generator().manual_seed(0)
    lin = init.glorot_(nn.Linear(300, 500), generator=g)
    assert float(lin.weight.detach().std()) == pytest.approx(math.sqrt(2 / 800), rel=0.03)
    lin = init.he_(nn.Linear(300, 500), generator=g)
    assert float(lin.weight.detach().std()) == pytest.approx(math.sqrt(2 / 300), rel=0.03)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: init.kumar_(nn.Linear(2, 2), "gelu"),
            r"'activation' parameter of kumar_ must be one of .*'sigmoid'.*Got 'gelu'",
        ),
        (lambda: init.kumar_(nn.Linear(2, 2), "tanh", "code"), "only for activation='sigmoid'"),
        (lambda: init.kumar_(nn.Linear(2, 2), "sigmoid", "blog"), r"'convention'"),
        (lambda: init.orthogonal_(nn.ReLU()), "no nn.Linear or nn.RNN"),
        (lambda: init.init_(nn.Linear(2, 2), "xavier"), r"'init' parameter of init_ must be one of"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_init_returns_the_module_in_place():
    lin = nn.Linear(3, 3)
    assert init.kumar_(lin) is lin
    assert np.isfinite(lin.weight.detach().numpy()).all()


def test_forget_bias_sets_only_the_forget_gate():
    from gradwatch.remedies.init import forget_bias_

    lstm = nn.LSTM(3, 5, num_layers=2)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    forget_bias_(lstm, 4.0)
    for n, p in lstm.named_parameters():
        if n.startswith("bias_ih"):
            assert torch.equal(p[5:10], torch.full((5,), 4.0))
        elif n.startswith("bias_hh"):
            assert torch.equal(p[5:10], torch.zeros(5))
        if n.startswith("bias"):
            assert torch.equal(torch.cat([p[:5], p[10:]]), torch.cat([before[n][:5], before[n][10:]]))
        else:
            assert torch.equal(p, before[n])
    with pytest.raises(ConfigError, match=r"needs a module containing an nn\.LSTM"):
        forget_bias_(nn.GRU(3, 5))


def test_glorot_standard_and_normalized_follow_the_paper_bounds():
    # Glorot & Bengio 2010: eq. 1, U[−1/√n, 1/√n]; eq. 16, U[±√6/√(n_in + n_out)] = nn.init.xavier_uniform_
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(400, 100)
    init.glorot_standard_(lin, generator=g)
    w = lin.weight.detach()
    assert float(w.abs().max()) <= 1 / math.sqrt(400) and float(w.abs().max()) > 0.95 / math.sqrt(400)
    assert float(w.var()) == pytest.approx(1 / (3 * 400), rel=0.05)  # variance of U[−a, a] is a²/3
    assert torch.count_nonzero(lin.bias) == 0
    init.glorot_normalized_(lin, generator=torch.Generator().manual_seed(1))
    ref = torch.empty(100, 400)
    nn.init.xavier_uniform_(ref, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lin.weight.detach(), ref)
    assert torch.count_nonzero(lin.bias) == 0
