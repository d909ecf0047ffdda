"""Lyapunov exponents and Jacobian spectra, against linear theory and closed-form Jacobians."""

import numpy as np
import pytest
import torch
from torch import nn

from gradwatch.errors import ConfigError
from gradwatch.theory import rnn, spectrum


def test_linear_cell_exponents_are_log_abs_eigenvalues():
    W = torch.tensor(rnn.recurrent_matrix(8, 1.3, seed=2))
    h0 = torch.randn(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = spectrum.lyapunov_spectrum(lambda h: W @ h, steps=1500, h0=h0)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(W.numpy()))))[::-1]
    np.testing.assert_allclose(res.lyapunov, expected, atol=5e-3)
    assert res.max_lyapunov == pytest.approx(np.log(1.3), abs=5e-3)


def test_product_singular_values_give_the_top_exponent():
    W = torch.tensor(rnn.recurrent_matrix(6, 0.8, seed=5))
    res = spectrum.lyapunov_spectrum(lambda h: W @ h, steps=400, state_size=6)
    assert np.log(res.singular_values[0]) / 400 == pytest.approx(res.max_lyapunov, abs=0.02)


def test_rnn_cell_one_step_jacobian_is_the_closed_form():
    cell = spectrum.random_cell("rnn", 5, 3, seed=1)
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = spectrum.lyapunov_spectrum(cell, steps=4, inputs=u)
    c = cell.double()
    h = torch.zeros(5, dtype=torch.float64)
    with torch.no_grad():
        for t in range(4):
            h_new = c(u[t], h)
            # tanh cell: ∂h'/∂h = diag(1 − h'²) W_hh
            J = torch.diag(1 - h_new**2) @ c.weight_hh
            np.testing.assert_allclose(res.one_step_singular_values[t], torch.linalg.svdvals(J).numpy(), rtol=1e-10)
            h = h_new


def test_lstm_state_is_h_and_c_and_the_module_is_left_untouched():
    cell = spectrum.random_cell("lstm", 6, 2, seed=0)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    res = spectrum.lyapunov_spectrum(cell, steps=30)
    assert res.state_size == 12
    assert res.lyapunov.shape == (12,)
    assert np.all(np.diff(res.lyapunov) <= 0)
    for k, v in cell.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, before[k])


def test_contracting_gru_has_negative_exponents():
    cell = spectrum.random_cell("gru", 16, 4, seed=0)
    u = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    res = spectrum.lyapunov_spectrum(cell, steps=80, inputs=u, burn_in=20)
    assert res.max_lyapunov < 0


def test_random_cell_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    spectrum.random_cell("gru", 4, seed=9)
    assert torch.equal(torch.rand(3), expected)
    a = spectrum.random_cell("rnn", 4, seed=9).weight_hh
    b = spectrum.random_cell("rnn", 4, seed=9).weight_hh
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: spectrum.random_cell("transformer", 4),
            r"'cell' parameter of spectrum must be one of 'gru', 'lstm', 'rnn'",
        ),
        (lambda: spectrum.random_cell("gru", 0), r"'hidden_size' .* integer >= 1"),
        (lambda: spectrum.lyapunov_spectrum(lambda h: h, steps=3), "needs its state size"),
        (
            lambda: spectrum.lyapunov_spectrum(nn.GRUCell(2, 3), steps=3, inputs=torch.zeros(5, 2)),
            r"inputs must have shape \(3, 2\)",
        ),
        (lambda: spectrum.lyapunov_spectrum(nn.GRUCell(2, 3), steps=0), r"'steps' .* integer >= 1"),
        (lambda: spectrum.lyapunov_spectrum(42, steps=3), "must be an nn.RNNCell"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_max_lyapunov_of_a_linear_map_is_the_log_of_its_largest_eigenvalue():
    # closed form: for h ↦ A h with A = Q diag(d) Qᵀ, λ₁ = ln max |d| whatever the start direction
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    d = torch.tensor([1.3, -0.7, 0.5, 0.2, -0.1, 0.05], dtype=torch.float64)
    a = q @ torch.diag(d) @ q.T
    v0 = torch.randn(6, generator=gen, dtype=torch.float64)
    lam = spectrum.max_lyapunov(lambda h: a @ h, steps=2000, state_size=6, v0=v0)
    # the start direction costs ln|cos angle to the top eigenvector| / T: O(1/T)
    assert lam == pytest.approx(np.log(1.3), abs=2e-3)


def test_max_lyapunov_agrees_with_the_qr_spectrum_on_an_rnn_cell():
    cell = spectrum.random_cell("rnn", 12, seed=3)
    inputs = torch.randn(350, 8, generator=torch.Generator().manual_seed(1))
    full = spectrum.lyapunov_spectrum(cell, steps=300, inputs=inputs, burn_in=50)
    v0 = torch.randn(12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    one = spectrum.max_lyapunov(cell, steps=300, inputs=inputs, burn_in=50, v0=v0)
    assert one == pytest.approx(full.max_lyapunov, abs=0.03)


def test_max_lyapunov_rejects_a_zero_direction():
    with pytest.raises(ConfigError, match="non-zero"):
        spectrum.max_lyapunov(lambda h: h, state_size=2, v0=torch.zeros(2))
