"""Gradient flossing: exponents against theory.spectrum and closed forms, gradients, and the effect."""

import numpy as np
import pytest
import torch
from torch import nn

from gradwatch import _lyapunov
from gradwatch.errors import ConfigError
from gradwatch.remedies import flossing
from gradwatch.theory import spectrum


def _symmetric(n: int, eigs: list[float], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"}), (nn.GRU, {}), (nn.LSTM, {}), (nn.LSTM, {"proj_size": 3})],
)
@pytest.mark.parametrize("batch_first", [True, False])
def test_the_step_map_replays_the_fused_module(cls, kwargs, batch_first):
    # the map whose Jacobians we measure is the module's own recurrence: same last hidden state
    torch.manual_seed(0)
    m = cls(3, 5, num_layers=2, batch_first=batch_first, **kwargs).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    rec = _lyapunov.recurrence(m)
    seq, s = _lyapunov.sequence_inputs(m, x, None, rec)
    for t in range(seq.shape[0]):
        s = rec.step(s, seq[t])
    hn = m(x)[1]
    h_last = hn[0] if isinstance(hn, tuple) else hn
    width = h_last.shape[-1]
    torch.testing.assert_close(s[:, :width], h_last[0])
    torch.testing.assert_close(s[:, width : 2 * width], h_last[1])
    if isinstance(hn, tuple):  # LSTM: the cell states follow the hidden states
        torch.testing.assert_close(s[:, 2 * width :], hn[1].transpose(0, 1).reshape(4, -1))


def test_exponents_agree_with_theory_spectrum_on_an_rnn_cell():
    cell = spectrum.random_cell("rnn", 6, 3, seed=1)
    u = torch.randn(600, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theory = spectrum.lyapunov_spectrum(cell, steps=600, inputs=u)
    ours = flossing.lyapunov_exponents(cell.double(), u[None], warmup=0).detach().numpy()
    # different initial tangents: an O(1/T) difference
    np.testing.assert_allclose(ours, theory.lyapunov, atol=0.01)


def test_a_linear_cell_has_the_log_of_its_eigenvalues():
    # h' = W h with W symmetric (normal): λ_i = ln |eig_i(W)| exactly as T → ∞
    eigs = [1.2, -0.9, 0.6, 0.3, -0.2]
    w = _symmetric(5, eigs, seed=3)
    x = torch.zeros(2, 800, 1, dtype=torch.float64)
    lam = flossing.lyapunov_exponents(lambda u, h: h @ w.T, x, k=3, hidden_size=5, warmup=0)
    expected = np.sort(np.log(np.abs(eigs)))[::-1][:3]
    np.testing.assert_allclose(lam.numpy(), expected, atol=2e-3)


def test_a_two_layer_rnn_at_its_fixed_point_is_linear():
    # zero input, zero biases, h0 = 0: the state stays 0 and tanh'(0) = 1, so the Jacobian is the
    # block-triangular [[W1, 0], [W_ih2 W1, W2]] whose eigenvalues are those of W1 and W2
    m = nn.RNN(2, 4, num_layers=2, batch_first=True).double()
    e1, e2 = [1.1, 0.8, -0.5, 0.2], [-1.3, 0.7, 0.4, 0.1]
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("bias"):
                p.zero_()
        m.weight_hh_l0.copy_(_symmetric(4, e1, seed=0))
        m.weight_hh_l1.copy_(_symmetric(4, e2, seed=1))
    lam = flossing.lyapunov_exponents(m, torch.zeros(1, 1500, 2, dtype=torch.float64), warmup=100)
    expected = np.sort(np.log(np.abs(e1 + e2)))[::-1]
    np.testing.assert_allclose(lam.detach().numpy(), expected, atol=5e-3)


def test_the_gradient_reaches_the_weights_and_matches_finite_differences():
    torch.manual_seed(0)
    m = nn.GRU(2, 6, batch_first=True).double()
    x = torch.randn(3, 40, 2, dtype=torch.float64)
    loss = flossing.flossing_loss(m, x, k=3, warmup=4)
    loss.backward()
    g = m.weight_hh_l0.grad
    assert g is not None and float(g.norm()) > 0
    direction = torch.randn_like(g)
    eps = 1e-6
    with torch.no_grad():
        m.weight_hh_l0.add_(eps * direction)
        up = flossing.flossing_loss(m, x, k=3, warmup=4)
        m.weight_hh_l0.sub_(2 * eps * direction)
        down = flossing.flossing_loss(m, x, k=3, warmup=4)
    fd = float((up - down) / (2 * eps))
    assert float((g * direction).sum()) == pytest.approx(fd, rel=1e-5)


def test_flossing_brings_the_top_exponent_toward_zero():
    torch.manual_seed(0)
    m = nn.RNN(1, 16, batch_first=True)
    with torch.no_grad():
        m.weight_hh_l0.mul_(0.5)  # a contracting network: λ_1 well below 0
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 40, 1, generator=gen) for _ in range(60)]
    before = flossing.lyapunov_exponents(m, batches[0], k=2).detach()
    losses = flossing.floss_(m, batches, k=2, lr=0.01)
    after = flossing.lyapunov_exponents(m, batches[0], k=2).detach()
    assert float(before[0]) < -0.5
    assert abs(float(after[0])) < 0.3 * abs(float(before[0]))
    assert losses[-1] < 0.2 * losses[0]


def test_a_stack_of_hand_written_cells_is_one_state():
    # two linear cells h1' = A h1 + u, h2' = B h2 + h1': block-triangular, eigenvalues of A and B
    a = _symmetric(3, [0.9, 0.5, -0.3], seed=4)
    b = _symmetric(2, [1.1, -0.4], seed=5)
    cells = [lambda u, h: h @ a.T + u, lambda u, h: h @ b.T + u[:, :2]]
    x = torch.zeros(1, 1000, 3, dtype=torch.float64)
    lam = flossing.lyapunov_exponents(cells, x, k=2, hidden_size=[3, 2], warmup=50)
    np.testing.assert_allclose(lam.numpy(), np.log([1.1, 0.9]), atol=5e-3)


def test_flossing_penalty_is_on_its_period_only():
    m = nn.RNN(1, 4, batch_first=True)
    floss = flossing.Flossing(m, k=2, weight=0.5, every=3)
    x = torch.randn(2, 12, 1)
    values = [float(floss(x).detach()) for _ in range(6)]
    expected = 0.5 * float(flossing.flossing_loss(m, x, k=2).detach())
    assert values[0] == values[1] == values[3] == values[4] == 0.0
    assert values[2] == pytest.approx(expected) and values[5] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: flossing.lyapunov_exponents(nn.RNN(1, 3, bidirectional=True), torch.zeros(5, 1)), "bidirectional"),
        (lambda: flossing.lyapunov_exponents(nn.RNN(1, 3), torch.zeros(5, 1), k=4), r"'k' .* at most the state size 3"),
        (lambda: flossing.lyapunov_exponents(nn.GRU(2, 3), torch.zeros(5, 1, 1)), "input_size=2"),
        (lambda: flossing.lyapunov_exponents(nn.RNN(1, 3), torch.zeros(5, 1, dtype=torch.long)), "floating-point"),
        (lambda: flossing.lyapunov_exponents(lambda u, h: h, torch.zeros(1, 5, 1)), "hidden_size="),
        (lambda: flossing.lyapunov_exponents(nn.RNN(1, 3), torch.zeros(5, 1), warmup=5), "'warmup'"),
        (lambda: flossing.lyapunov_exponents(42, torch.zeros(5, 1)), "'module' parameter"),
        (lambda: flossing.Flossing(nn.RNN(1, 3), weight=-1.0), "'weight' parameter of Flossing must be >= 0"),
        (lambda: flossing.floss_(lambda u, h: h, [torch.zeros(1, 5, 1)], hidden_size=1), "optimizer="),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


@pytest.mark.parametrize("model", ["rnn", "gru"])
def test_the_runner_applies_it_by_name(model):
    from gradwatch.experiments import Spec, run
    from gradwatch.remedies import registry

    fields = registry.spec_fields({"flossing": {"k": 2, "weight": 0.5, "every": 2}}, model=model)
    spec = Spec(task="adding", length=12, model=model, hidden=6, steps=4, eval_every=4, batch_size=4, **fields)
    plain = run(Spec.from_json({**spec.to_json(), "remedies": {}}), keep_model=True)
    flossed = run(spec, keep_model=True)
    assert not flossed.diverged
    # the penalty acted: same data and init, different weights after training (and only then)
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.parameters(), flossed.model.parameters(), strict=True))


def test_the_registry_names_a_bad_k():
    from gradwatch.remedies import registry

    with pytest.raises(ConfigError, match="'k' parameter of remedy 'flossing' must be an integer"):
        registry.build({"flossing": {"k": 2.5}})
