"""Pascanu's Ω: value and gradient against an explicit-Jacobian reference on a small RNN."""

import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.remedies.regularizer import pascanu_penalty

T, H = 6, 4


def setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    W = (torch.randn(H, H, generator=g, dtype=torch.float64) * 0.8).requires_grad_(True)
    U = torch.randn(H, 2, generator=g, dtype=torch.float64)
    u = torch.randn(T, 2, generator=g, dtype=torch.float64)
    y = torch.randn(H, generator=g, dtype=torch.float64)
    return W, U, u, y


def forward(W, U, u):
    x = torch.zeros(H, dtype=torch.float64)
    xs = []
    for t in range(T):
        x = torch.tanh(W @ x + U @ u[t])
        xs.append(x)
    return xs


def reference(W, U, u, y, exact):
    """Ω built from explicit Jacobians J_k = ∂x_{k+1}/∂x_k = diag(1 − x_{k+1}²) W."""
    xs = forward(W, U, u)
    g = [None] * T
    g[T - 1] = xs[-1] - y  # E = ½‖x_T − y‖²
    J = [torch.diag(1 - xs[k + 1] ** 2) @ W for k in range(T - 1)]
    for k in range(T - 2, -1, -1):
        g[k] = g[k + 1] @ J[k]
    omega = 0
    for k in range(T - 1):
        gk1 = g[k + 1] if exact else g[k + 1].detach()
        omega = omega + ((gk1 @ J[k]).norm() / gk1.norm() - 1) ** 2
    return omega


@pytest.mark.parametrize("exact", [False, True])
def test_value_and_gradient_match_the_explicit_reference(exact):
    W, U, u, y = setup()
    xs = forward(W, U, u)
    loss = 0.5 * (xs[-1] - y).pow(2).sum()
    omega = pascanu_penalty(loss, xs, exact=exact)
    (grad,) = torch.autograd.grad(omega, W)
    W2 = W.detach().clone().requires_grad_(True)
    ref = reference(W2, U, u, y, exact)
    (ref_grad,) = torch.autograd.grad(ref, W2)
    assert float(omega) == pytest.approx(float(ref), rel=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-12)


def test_the_approximation_changes_the_gradient_not_the_value():
    W, U, u, y = setup(1)
    xs = forward(W, U, u)
    loss = 0.5 * (xs[-1] - y).pow(2).sum()
    a = pascanu_penalty(loss, xs, exact=False)
    b = pascanu_penalty(loss, xs, exact=True)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    ga = torch.autograd.grad(a, W, retain_graph=True)[0]
    gb = torch.autograd.grad(b, W)[0]
    assert not torch.allclose(ga, gb)


def test_batched_penalty_is_the_mean_of_per_sample_penalties():
    g = torch.Generator().manual_seed(2)
    W = (torch.randn(H, H, generator=g, dtype=torch.float64) * 0.8).requires_grad_(True)
    u = torch.randn(3, T, H, generator=g, dtype=torch.float64)
    xs, x = [], torch.zeros(3, H, dtype=torch.float64)
    for t in range(T):
        x = torch.tanh(x @ W.T + u[:, t])
        xs.append(x)
    loss = xs[-1].pow(2).sum()  # samples independent: per-sample ∂E/∂x are the rows
    batched = pascanu_penalty(loss, xs)
    per_sample = []
    for b in range(3):
        xb, x = [], torch.zeros(H, dtype=torch.float64)
        for t in range(T):
            x = torch.tanh(W @ x + u[b, t])
            xb.append(x)
        per_sample.append(pascanu_penalty(xb[-1].pow(2).sum(), xb))
    assert float(batched) == pytest.approx(float(torch.stack(per_sample).mean()), rel=1e-10)


def test_bad_input_is_named():
    W, U, u, y = setup()
    xs = forward(W, U, u)
    loss = 0.5 * (xs[-1] - y).pow(2).sum()
    with pytest.raises(ConfigError, match=r"hidden states x_1\.\.x_T"):
        pascanu_penalty(loss, xs[:1])
    with pytest.raises(ConfigError, match="autograd graph"):
        pascanu_penalty(loss, [x.detach() for x in xs])
    with pytest.raises(ConfigError, match="scalar"):
        pascanu_penalty(torch.stack(xs).sum(dim=0), xs)
