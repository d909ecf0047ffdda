"""RBMs against brute-force enumeration on a 4×3 machine, and training on scikit-learn's digits."""

import itertools

import pytest
import torch
from sklearn.datasets import load_digits

from gradwatch import models
from gradwatch.errors import ConfigError
from gradwatch.remedies.pretrain import RBM, load_dbn_, pretrain_dbn

ALL_V = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
ALL_H = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)


def small_rbm(visible="bernoulli", seed=0):
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(3, visible=visible)
    rbm.W_ = torch.randn(4, 3, generator=g, dtype=torch.float64)
    rbm.b_ = torch.randn(4, generator=g, dtype=torch.float64)
    rbm.c_ = torch.randn(3, generator=g, dtype=torch.float64)
    rbm._gen = g
    return rbm


def brute_free_energy(W, b, c, v, visible):
    """F(v) = −log Σ_h exp(−E(v, h)) by enumerating the 8 hidden states."""
    vis = -(v @ b) if visible == "bernoulli" else 0.5 * ((v - b) ** 2).sum(-1)
    energies = vis[:, None] - ALL_H @ c - (v @ W) @ ALL_H.T  # (batch, 8)
    return -torch.logsumexp(-energies, dim=1)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_matches_enumeration(visible):
    rbm = small_rbm(visible)
    v = ALL_V if visible == "bernoulli" else torch.randn(10, 4, dtype=torch.float64)
    torch.testing.assert_close(rbm.free_energy(v), brute_free_energy(rbm.W_, rbm.b_, rbm.c_, v, visible))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_cd_gradients_are_the_free_energy_gradient_difference(visible):
    rbm = small_rbm(visible, seed=1)
    g = torch.Generator().manual_seed(2)
    v_data = torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.float64), generator=g)
    v_model = torch.bernoulli(torch.full((5, 4), 0.3, dtype=torch.float64), generator=g)
    W, b, c = (t.clone().requires_grad_(True) for t in (rbm.W_, rbm.b_, rbm.c_))
    objective = brute_free_energy(W, b, c, v_data, visible).mean() - brute_free_energy(W, b, c, v_model, visible).mean()
    gW, gb, gc = torch.autograd.grad(objective, (W, b, c))
    cd = rbm.cd_gradients(v_data, v_model)
    torch.testing.assert_close(cd.W, -gW)
    torch.testing.assert_close(cd.b, -gb)
    torch.testing.assert_close(cd.c, -gc)


def test_exact_likelihood_gradient_is_cd_with_the_model_distribution():
    rbm = small_rbm(seed=3)
    F = rbm.free_energy(ALL_V)
    p = torch.softmax(-F, dim=0)  # exact p(v) over the 16 visible states
    v_data = ALL_V[[1, 5, 7]]
    W = rbm.W_.clone().requires_grad_(True)
    F_all = brute_free_energy(W, rbm.b_, rbm.c_, ALL_V, "bernoulli")
    loglik = (-brute_free_energy(W, rbm.b_, rbm.c_, v_data, "bernoulli")).mean() - torch.logsumexp(-F_all, 0)
    (gW,) = torch.autograd.grad(loglik, W)
    pos = rbm.cd_gradients(v_data, v_data[:1]).W + v_data[:1].T @ rbm.hidden_probs(v_data[:1])  # positive phase
    neg = (ALL_V * p[:, None]).T @ rbm.hidden_probs(ALL_V)
    torch.testing.assert_close(pos - neg, gW)


@pytest.fixture(scope="module")
def digits():
    X = torch.tensor(load_digits().data / 16.0)
    return (X > 0.5).double(), X


@pytest.mark.parametrize("persistent", [False, True])
def test_training_on_digits_lowers_reconstruction_error_and_raises_pll(digits, persistent):
    binary, _ = digits
    untrained = RBM(64, n_epochs=0, seed=0).fit(binary)
    rbm = RBM(64, n_epochs=8, k=1, persistent=persistent, lr=0.1, seed=0).fit(binary)
    # untrained = visible biases at the data's log-odds: reconstructs the pixel marginals
    assert rbm.history_[-1] < rbm.history_[0]
    assert rbm.reconstruction_error(binary) < 0.75 * untrained.reconstruction_error(binary)
    assert rbm.pseudo_log_likelihood(binary[:300]) > untrained.pseudo_log_likelihood(binary[:300]) + 3.0


def test_gaussian_rbm_on_standardized_digits(digits):
    _, X = digits
    Z = (X - X.mean(0)) / (X.std(0) + 1e-6)
    rbm = RBM(48, visible="gaussian", lr=0.01, n_epochs=6, seed=0).fit(Z)
    assert rbm.history_[-1] < rbm.history_[0]
    assert rbm.reconstruction_error(Z) < 0.9 * float(Z.var())


def test_dbn_pretraining_initializes_an_mlp(digits):
    binary, _ = digits
    rbms = pretrain_dbn(binary, [32, 32], n_epochs=2)
    net = models.mlp(layers=1, hidden=32, in_dim=64, out_dim=10, activation="sigmoid", seed=0)
    load_dbn_(net, rbms)
    torch.testing.assert_close(net.input.weight, rbms[0].W_.T.float())
    torch.testing.assert_close(net.blocks[0].linear.bias, rbms[1].c_.float())
    # the second RBM was trained on the first one's features
    assert rbms[1].W_.shape == (32, 32)
    with pytest.raises(
        ConfigError, match=r"Linear layer 0 has weight shape \(32, 64\), RBM 0 needs \(out, in\) = \(16, 64\)"
    ):
        load_dbn_(net, pretrain_dbn(binary[:100], [16], n_epochs=1))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: RBM(4).fit(torch.full((3, 2), 2.0)), r"Bernoulli visible units need data in \[0, 1\]"),
        (lambda: RBM(4).transform(torch.zeros(2, 2)), "not fitted"),
        (lambda: RBM(4, visible="poisson"), r"'visible' parameter of RBM must be one of 'bernoulli', 'gaussian'"),
        (lambda: RBM(4).fit(torch.zeros(3)), r"shape \(n_samples, n_visible\)"),
        (lambda: pretrain_dbn(torch.zeros(2, 2), []), "at least one hidden size"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
