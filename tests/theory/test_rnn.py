"""The sigmoid RNN and note 3, against autograd, torch.func and closed forms."""

import numpy as np
import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.theory import rnn


@pytest.fixture(scope="module")
def net():
    return rnn.random_sigmoid_rnn(12, 0.9, n_input=3, seed=4)


@pytest.fixture(scope="module")
def inputs(net):
    return rnn.random_inputs(25, net.n_input, seed=4)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 1.5, 3.0])
def test_recurrent_matrix_has_requested_spectral_radius(gamma):
    w = rnn.recurrent_matrix(20, gamma, seed=1)
    assert np.max(np.abs(np.linalg.eigvals(w))) == pytest.approx(gamma, rel=1e-10)


def test_recurrent_matrix_is_reproducible():
    np.testing.assert_array_equal(rnn.recurrent_matrix(8, 1.0, seed=3), rnn.recurrent_matrix(8, 1.0, seed=3))
    assert not np.array_equal(rnn.recurrent_matrix(8, 1.0, seed=3), rnn.recurrent_matrix(8, 1.0, seed=4))


def test_jacobian_products_match_autograd_jacobians(net, inputs):
    xs = rnn.trajectory(net, inputs)
    T = len(inputs)
    res = rnn.jacobian_products(net, xs)
    w_rec, w_in, b = (torch.tensor(a) for a in (net.w_rec, net.w_in, net.b))
    u = torch.tensor(inputs)
    for k in (1, 2, 7, T):

        def forward(x, k=k):
            for t in range(T - k, T):
                x = w_rec @ torch.sigmoid(x) + w_in @ u[t] + b
            return x

        jac = torch.autograd.functional.jacobian(forward, torch.tensor(xs[T - k])).numpy()
        assert res.product_norm[k - 1] == pytest.approx(np.linalg.norm(jac, 2), rel=1e-10, abs=1e-300)


def test_product_norms_respect_both_bounds(net, inputs):
    res = rnn.jacobian_products(net, rnn.trajectory(net, inputs))
    assert np.all(res.product_norm <= res.tight_bound * (1 + 1e-12))
    assert np.all(res.tight_bound <= res.bound)
    np.testing.assert_allclose(res.bound, np.linalg.norm(net.w_rec, 2) ** res.k)
    np.testing.assert_allclose(res.gamma_k, 0.9**res.k)


def test_gamma_k_is_not_a_bound_for_a_non_normal_matrix():
    # A nilpotent-ish non-normal W: γ = 0 but ‖W‖ > 0. The article's "γ^k" is a rate only.
    w = np.array([[0.0, 40.0], [0.0, 0.0]]) + 1e-3 * np.eye(2)
    net = rnn.SigmoidRNN(w, np.zeros((2, 1)), np.zeros(2))
    res = rnn.jacobian_products(net, rnn.trajectory(net, np.zeros((3, 1))))
    assert res.product_norm[0] > res.gamma_k[0]


def test_gradient_terms_sum_to_autograd_gradient(net, inputs):
    target = np.linspace(0.1, 0.9, net.n_hidden)
    terms = rnn.gradient_terms(net, inputs, target)
    reference = rnn.autograd_gradient(net, inputs, target)
    rel = np.linalg.norm(terms.gradient - reference) / np.linalg.norm(reference)
    assert rel < 1e-6
    assert terms.terms.shape == (len(inputs), net.n_hidden * (net.n_hidden + net.n_input + 1))


def test_closed_form_terms_equal_generic_torch_func_terms(net, inputs):
    target = np.full(net.n_hidden, 0.3)
    closed = rnn.gradient_terms(net, inputs, target)

    def step(x, u_t, p):
        w_rec, w_in, b = p
        return w_rec @ torch.sigmoid(x) + w_in @ u_t + b

    params = [torch.tensor(a) for a in (net.w_rec, net.w_in, net.b)]
    generic = rnn.unrolled_gradient_terms(
        step,
        params,
        torch.zeros(net.n_hidden, dtype=torch.float64),
        torch.tensor(inputs),
        lambda x: 0.5 * torch.sum((x - torch.tensor(target)) ** 2),
    )
    assert len(generic) == len(inputs)
    for k, parts in enumerate(generic):
        flat = torch.cat([p.reshape(-1) for p in parts]).numpy()
        np.testing.assert_allclose(flat, closed.terms[k], rtol=1e-10, atol=1e-300)


def test_term_norms_decay_geometrically_and_horizon_is_99_percent(net, inputs):
    terms = rnn.gradient_terms(net, inputs, np.zeros(net.n_hidden))
    logs = np.log(terms.term_norms)
    slope = np.polyfit(np.arange(len(logs)), logs, 1)[0]
    # every step back multiplies by at most ‖W_rec‖/4 (times bounded immediate partials)
    assert slope < np.log(np.linalg.norm(net.w_rec, 2) / 4) + 0.05
    h = terms.horizon_99
    total = terms.term_norms.sum()
    assert terms.term_norms[:h].sum() >= 0.99 * total
    assert terms.term_norms[: h - 1].sum() < 0.99 * total


def test_larger_spectral_radius_gives_longer_horizon():
    u = rnn.random_inputs(80, 1, seed=0)
    horizons = []
    for gamma in (0.9, 8.0):
        net = rnn.random_sigmoid_rnn(16, gamma, seed=0)
        horizons.append(rnn.gradient_terms(net, u, np.zeros(16)).horizon_99)
    assert horizons[1] > horizons[0]


def test_note3_closed_form():
    eps, c = 0.8, 0.5
    res = rnn.note3(eps, c, 40)
    assert res.spectral_radius == pytest.approx(np.sqrt(2 * eps), rel=1e-12)
    assert res.spectral_radius >= 1.0
    even = res.norms[1::2]  # n = 2, 4, ...
    np.testing.assert_allclose(even, (2 * eps * c * c) ** np.arange(1, 21), rtol=1e-10)
    assert res.behaviour == "vanishing"
    assert res.critical_c == pytest.approx(1 / np.sqrt(1.6))


@pytest.mark.parametrize(("c", "behaviour"), [(0.7, "vanishing"), (1 / np.sqrt(1.6), "neutral"), (0.9, "exploding")])
def test_note3_critical_c_separates_behaviours(c, behaviour):
    res = rnn.note3(0.8, c, 200)
    assert res.behaviour == behaviour
    last = res.norms[-1]
    if behaviour == "vanishing":
        assert last < 1e-6
    elif behaviour == "exploding":
        assert last > 1e6
    else:
        assert 0.1 < last < 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, r"'eps' parameter of note3 must be > 0\. Got 0\.0 instead"),
        ({"c": 1.5}, r"'c' parameter of note3 must be in \(0, 1\]\. Got 1.5"),
        ({"n_max": 0}, r"'n_max' parameter of note3 must be an integer >= 1"),
    ],
)
def test_note3_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        rnn.note3(**kwargs)


def test_bad_shapes_and_sizes_are_named():
    with pytest.raises(ConfigError, match="'n_hidden' parameter of recurrent_matrix"):
        rnn.recurrent_matrix(0, 1.0)
    with pytest.raises(ConfigError, match="'spectral_radius'"):
        rnn.recurrent_matrix(3, -1.0)
    net = rnn.random_sigmoid_rnn(4, 0.9)
    with pytest.raises(ConfigError, match=r"inputs must have shape \(T, 1\)"):
        rnn.trajectory(net, np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="target must have shape"):
        rnn.gradient_terms(net, np.zeros((5, 1)), np.zeros(3))
    with pytest.raises(ConfigError, match="'n_back'"):
        rnn.jacobian_products(net, rnn.trajectory(net, np.zeros((5, 1))), n_back=9)
