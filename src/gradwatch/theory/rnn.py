"""The article's recurrent network models, computed exactly.

Two levels, as in the article (section "Recurrent network model", after Pascanu, Mikolov
and Bengio 2013, "On the difficulty of training recurrent neural networks"):

* the **generic** network x_t = F(x_{t−1}, u_t, θ), whose gradient is a sum of terms, one
  per step back in time, each a product of Jacobians ∇_x F times an immediate partial
  ∇_θ F (:func:`unrolled_gradient_terms`, any ``F`` written in torch);
* the **sigmoid** network x_t = W_rec σ(x_{t−1}) + W_in u_t + b, where
  ∇_x F = W_rec diag(σ′(x_{t−1})), so that the product over k steps is bounded by
  ‖W_rec‖^k (the article, which bounds |σ′| by 1) and by (‖W_rec‖/4)^k (the tight bound
  for the logistic σ, whose derivative is at most 1/4) (:func:`jacobian_products`,
  :func:`gradient_terms`);
* the article's **note 3**, the 2×2 example showing that the spectral radius of W_rec
  alone does not decide between vanishing and exploding (:func:`note3`).

A remark on γ^k: the article says that with spectral radius γ < 1 the product is bounded
by γ^k "at large k". For a normal W_rec and σ′ ≡ 1 that is exact; in general γ^k is the
asymptotic *rate* of ‖W_rec^k‖ (Gelfand's formula), not a bound at every k, and a
non-normal W_rec can exceed it for a while. We report γ^k beside the true bounds and let
the numbers show this.

All arrays are float64 numpy arrays; torch is used (in float64) only for autograd checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit

from gradwatch import _checks
from gradwatch.errors import ConfigError

__all__ = [
    "GradientTerms",
    "JacobianProducts",
    "Note3",
    "SigmoidRNN",
    "autograd_gradient",
    "gradient_terms",
    "jacobian_products",
    "note3",
    "random_inputs",
    "random_sigmoid_rnn",
    "recurrent_matrix",
    "trajectory",
    "unrolled_gradient_terms",
]


def _sigmoid_prime(x: np.ndarray) -> np.ndarray:
    s: np.ndarray = expit(x)
    return s * (1.0 - s)


def recurrent_matrix(n_hidden: int, spectral_radius: float, *, seed: int = 0) -> np.ndarray:
    """Draw a Gaussian matrix rescaled to a chosen spectral radius.

    Args:
        n_hidden: size n of the square matrix.
        spectral_radius: the largest |eigenvalue| γ wanted, > 0.
        seed: seed of numpy's generator; same seed, same matrix.

    Returns:
        W of shape (n, n) with max |eig(W)| = ``spectral_radius`` (to rounding).

    Raises:
        ConfigError: ``n_hidden`` < 1 or ``spectral_radius`` ≤ 0.
    """
    n = _checks.positive_int(n_hidden, "n_hidden", "recurrent_matrix")
    gamma = _checks.interval(spectral_radius, "spectral_radius", "recurrent_matrix", 0, low_open=True)
    rng = np.random.default_rng(seed)
    w: np.ndarray = rng.standard_normal((n, n)) / np.sqrt(n)
    radius = float(np.max(np.abs(np.linalg.eigvals(w))))
    return w * (gamma / radius)


@dataclass(frozen=True)
class SigmoidRNN:
    """Weights of x_t = W_rec σ(x_{t−1}) + W_in u_t + b.

    Attributes:
        w_rec: W_rec, shape (n, n).
        w_in: W_in, shape (n, m).
        b: bias, shape (n,).
    """

    w_rec: np.ndarray
    w_in: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        n = self.w_rec.shape[0]
        if self.w_rec.ndim != 2 or self.w_rec.shape != (n, n):
            raise ConfigError(f"w_rec must be a square matrix. Got shape {self.w_rec.shape}.")
        if self.w_in.ndim != 2 or self.w_in.shape[0] != n:
            raise ConfigError(f"w_in must have shape ({n}, m). Got shape {self.w_in.shape}.")
        if self.b.shape != (n,):
            raise ConfigError(f"b must have shape ({n},). Got shape {self.b.shape}.")

    @property
    def n_hidden(self) -> int:
        """Number of hidden units n."""
        return int(self.w_rec.shape[0])

    @property
    def n_input(self) -> int:
        """Input size m."""
        return int(self.w_in.shape[1])

    @property
    def spectral_radius(self) -> float:
        """γ = max |eig(W_rec)|."""
        return float(np.max(np.abs(np.linalg.eigvals(self.w_rec))))


def random_sigmoid_rnn(n_hidden: int, spectral_radius: float, *, n_input: int = 1, seed: int = 0) -> SigmoidRNN:
    """Build a sigmoid RNN whose W_rec has a chosen spectral radius.

    W_rec comes from :func:`recurrent_matrix`; W_in ~ N(0, 1/m); b ~ N(0, 0.1²).

    Raises:
        ConfigError: a size < 1 or ``spectral_radius`` ≤ 0.
    """
    w_rec = recurrent_matrix(n_hidden, spectral_radius, seed=seed)
    m = _checks.positive_int(n_input, "n_input", "random_sigmoid_rnn")
    rng = np.random.default_rng([seed, 1])
    w_in = rng.standard_normal((n_hidden, m)) / np.sqrt(m)
    b = 0.1 * rng.standard_normal(n_hidden)
    return SigmoidRNN(w_rec, w_in, b)


def random_inputs(n_steps: int, n_input: int, *, seed: int = 0) -> np.ndarray:
    """Draw bounded inputs u_1..u_T ~ U(−1, 1), shape (T, m)."""
    t = _checks.positive_int(n_steps, "n_steps", "random_inputs")
    rng = np.random.default_rng([seed, 2])
    return rng.uniform(-1.0, 1.0, size=(t, n_input))


def trajectory(rnn: SigmoidRNN, inputs: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """Run the sigmoid RNN forward.

    Args:
        rnn: the weights.
        inputs: u_1..u_T, shape (T, m).
        x0: initial state, shape (n,); zeros when None.

    Returns:
        States x_0..x_T, shape (T + 1, n).
    """
    u = _as_inputs(rnn, inputs)
    x = np.zeros(rnn.n_hidden) if x0 is None else np.asarray(x0, dtype=np.float64)
    xs = [x]
    for u_t in u:
        x = rnn.w_rec @ expit(x) + rnn.w_in @ u_t + rnn.b
        xs.append(x)
    return np.stack(xs)


def _as_inputs(rnn: SigmoidRNN, inputs: np.ndarray) -> np.ndarray:
    u = np.asarray(inputs, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != rnn.n_input or u.shape[0] < 1:
        raise ConfigError(f"inputs must have shape (T, {rnn.n_input}) with T >= 1. Got shape {u.shape}.")
    return u


@dataclass(frozen=True)
class JacobianProducts:
    """Norms of ∂x_T/∂x_{T−k} = ∏_{j=1..k} W_rec diag(σ′(x_{T−j})) and their bounds.

    Attributes (arrays of shape (K,), entry i for k = i + 1):
        k: number of steps back, 1..K.
        product_norm: operator (spectral) norm of the product.
        bound: the article's bound ‖W_rec‖^k.
        tight_bound: (‖W_rec‖ / 4)^k, tight for the logistic σ.
        gamma_k: γ^k, γ the spectral radius (an asymptotic rate, not a bound).
        gamma: γ.
        w_rec_norm: ‖W_rec‖ (spectral norm).
    """

    k: np.ndarray
    product_norm: np.ndarray
    bound: np.ndarray
    tight_bound: np.ndarray
    gamma_k: np.ndarray
    gamma: float
    w_rec_norm: float


def jacobian_products(rnn: SigmoidRNN, states: np.ndarray, n_back: int | None = None) -> JacobianProducts:
    """Compute the Jacobian products of the sigmoid RNN along a real trajectory.

    Args:
        rnn: the weights.
        states: x_0..x_T from :func:`trajectory`, shape (T + 1, n).
        n_back: K, how many steps back from T (default and maximum: T).

    Returns:
        A :class:`JacobianProducts` for k = 1..K.

    Raises:
        ConfigError: ``n_back`` outside [1, T].
    """
    xs = np.asarray(states, dtype=np.float64)
    T = xs.shape[0] - 1
    if xs.ndim != 2 or T < 1:
        raise ConfigError(f"states must have shape (T + 1, n) with T >= 1. Got shape {xs.shape}.")
    K = T if n_back is None else int(_checks.interval(n_back, "n_back", "jacobian_products", 1, T))
    w = rnn.w_rec
    product = np.eye(rnn.n_hidden)
    norms = np.empty(K)
    for i in range(K):
        # ∂x_T/∂x_{T-k} = (∂x_T/∂x_{T-k+1}) · W_rec diag(σ'(x_{T-k})); scaling columns is the diag.
        product = product @ (w * _sigmoid_prime(xs[T - 1 - i])[None, :])
        norms[i] = np.linalg.norm(product, 2)
    k = np.arange(1, K + 1)
    w_norm = float(np.linalg.norm(w, 2))
    gamma = rnn.spectral_radius
    with np.errstate(over="ignore"):  # a bound past the float range is +inf, its honest value: no warning
        bounds = (w_norm**k, (w_norm / 4.0) ** k, gamma**k)
    return JacobianProducts(
        k=k,
        product_norm=norms,
        bound=bounds[0],
        tight_bound=bounds[1],
        gamma_k=bounds[2],
        gamma=gamma,
        w_rec_norm=w_norm,
    )


@dataclass(frozen=True)
class GradientTerms:
    """∇_θ L written as the article's sum, one term per step back in time.

    θ = (W_rec, W_in, b), flattened in that order (the article names θ = (W_rec, W_in)
    and keeps b fixed; we include b because it is trained in practice).

    Attributes:
        terms: shape (T, P); row k is ∇_x L(x_T) · ∂x_T/∂x_{T−k} · ∇_θ F(x_{T−k−1}, u_{T−k}),
            the part of the gradient that travels k steps back (k = 0 is the immediate term).
        term_norms: ‖terms[k]‖, shape (T,): the article's "M γ^k" decay.
        gradient: the sum of the terms, ∇_θ L, shape (P,).
        horizon_99: the smallest h such that terms 0..h−1 carry 99 % of Σ_k ‖term_k‖
            (norm mass; terms can cancel, so a norm of partial sums would not be monotone).
    """

    terms: np.ndarray
    term_norms: np.ndarray
    gradient: np.ndarray
    horizon_99: int


def _horizon(term_norms: np.ndarray, fraction: float = 0.99) -> int:
    total = float(term_norms.sum())
    if total == 0.0:
        return 0
    return int(np.searchsorted(np.cumsum(term_norms), fraction * total) + 1)


def gradient_terms(
    rnn: SigmoidRNN, inputs: np.ndarray, target: np.ndarray, x0: np.ndarray | None = None
) -> GradientTerms:
    """Split ∇_θ L of the sigmoid RNN into its per-time-step terms, in closed form.

    The loss is L = ½ ‖x_T − y‖². With g_T = x_T − y and g_{t−1} = g_t W_rec diag(σ′(x_{t−1}))
    (the row vector ∇_x L · ∂x_T/∂x_{t−1}), the term of step t is
    (g_t ⊗ σ(x_{t−1}), g_t ⊗ u_t, g_t) for (W_rec, W_in, b).

    Args:
        rnn: the weights.
        inputs: u_1..u_T, shape (T, m).
        target: y, shape (n,).
        x0: initial state, shape (n,); zeros when None.

    Returns:
        A :class:`GradientTerms`, term k = T − t.
    """
    u = _as_inputs(rnn, inputs)
    y = np.asarray(target, dtype=np.float64)
    if y.shape != (rnn.n_hidden,):
        raise ConfigError(f"target must have shape ({rnn.n_hidden},). Got shape {y.shape}.")
    xs = trajectory(rnn, u, x0)
    T = u.shape[0]
    g = xs[T] - y
    rows = []
    for t in range(T, 0, -1):
        rows.append(np.concatenate([np.outer(g, expit(xs[t - 1])).ravel(), np.outer(g, u[t - 1]).ravel(), g]))
        g = (g @ rnn.w_rec) * _sigmoid_prime(xs[t - 1])
    terms = np.stack(rows)
    norms = np.linalg.norm(terms, axis=1)
    return GradientTerms(terms=terms, term_norms=norms, gradient=terms.sum(axis=0), horizon_99=_horizon(norms))


def autograd_gradient(
    rnn: SigmoidRNN, inputs: np.ndarray, target: np.ndarray, x0: np.ndarray | None = None
) -> np.ndarray:
    """Compute ∇_θ L of L = ½ ‖x_T − y‖² by plain torch autograd through the unrolled loop.

    The independent reference for :func:`gradient_terms` (float64). Same θ layout.
    """
    u = torch.as_tensor(_as_inputs(rnn, inputs), dtype=torch.float64)
    w_rec = torch.tensor(rnn.w_rec, requires_grad=True)
    w_in = torch.tensor(rnn.w_in, requires_grad=True)
    b = torch.tensor(rnn.b, requires_grad=True)
    x = torch.zeros(rnn.n_hidden, dtype=torch.float64) if x0 is None else torch.as_tensor(x0, dtype=torch.float64)
    for u_t in u:
        x = w_rec @ torch.sigmoid(x) + w_in @ u_t + b
    loss = 0.5 * torch.sum((x - torch.as_tensor(target, dtype=torch.float64)) ** 2)
    grads = torch.autograd.grad(loss, (w_rec, w_in, b))
    return torch.cat([g.reshape(-1) for g in grads]).numpy()


def unrolled_gradient_terms(
    step: Callable[[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor],
    params: Sequence[torch.Tensor],
    x0: torch.Tensor,
    inputs: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
) -> list[list[torch.Tensor]]:
    """Split ∇_θ L of any recurrent map x_t = F(x_{t−1}, u_t, θ) into per-step terms.

    This is the article's expansion of the loss differential for the generic network:
    ∇_θ L = ∇_x L(x_T) [∇_θ F_T + ∇_x F_T ∇_θ F_{T−1} + ∇_x F_T ∇_x F_{T−1} ∇_θ F_{T−2} + ⋯],
    with F_t = F(x_{t−1}, u_t, θ). Each product is applied as vector-Jacobian products
    (``torch.func.vjp``), never formed as a matrix.

    Args:
        step: F(x_prev, u_t, params) → x_t.
        params: θ, a sequence of tensors.
        x0: initial state.
        inputs: u_1..u_T stacked along dim 0.
        loss: L(x_T) → scalar.

    Returns:
        ``terms[k][i]``: the part of ∂L/∂params[i] that travels k steps back (k = 0 is
        the immediate term at t = T). Summing over k gives autograd's gradient.
    """
    params = tuple(params)
    xs = [x0]
    with torch.no_grad():
        for u_t in inputs:
            xs.append(step(xs[-1], u_t, params))
    x_T = xs[-1].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(x_T), x_T)
    terms: list[list[torch.Tensor]] = []
    for t in range(len(inputs), 0, -1):
        u_t = inputs[t - 1]
        vjp_fn = torch.func.vjp(lambda x, p, u_t=u_t: step(x, u_t, p), xs[t - 1], params)[1]
        g_x, g_params = vjp_fn(g)
        terms.append(list(g_params))
        g = g_x
    return terms


@dataclass(frozen=True)
class Note3:
    """The article's note 3: W_rec = [[0, 2], [ε, 0]], every σ′ factor equal to c.

    Attributes:
        eps: ε.
        c: the constant σ′ factor.
        spectral_radius: γ of W_rec, = √(2ε).
        n: powers 1..N, shape (N,).
        norms: ‖(W_rec D)^n‖ (spectral norm), D = c·I, shape (N,), by repeated
            multiplication.
        rate: 2 ε c², the factor by which (W_rec D)² scales the identity.
        critical_c: c* = 1/√(2ε): below it products vanish, above it they explode.
        behaviour: "vanishing", "exploding", or "neutral" (c = c*).
    """

    eps: float
    c: float
    spectral_radius: float
    n: np.ndarray
    norms: np.ndarray
    rate: float
    critical_c: float
    behaviour: str


def note3(eps: float = 0.8, c: float = 0.5, n_max: int = 40) -> Note3:
    """Compute the article's note-3 counter-example: the spectral radius does not decide.

    (W_rec D)^{2n} = (2 ε c²)^n · I, so the products vanish or explode according to c,
    whatever γ = √(2ε) is. With ε = 0.8 (γ ≈ 1.26 ≥ 1) and c = 0.5 they vanish.

    Args:
        eps: ε > 0.
        c: the constant derivative factor, in (0, 1] (the article: σ′ values in (0, 1)).
        n_max: N, the largest power, ≥ 1.

    Raises:
        ConfigError: a parameter outside its range.
    """
    e = _checks.interval(eps, "eps", "note3", 0, low_open=True)
    cc = _checks.interval(c, "c", "note3", 0, 1, low_open=True)
    N = _checks.positive_int(n_max, "n_max", "note3")
    w = np.array([[0.0, 2.0], [e, 0.0]])
    m = w * cc
    power = np.eye(2)
    norms = np.empty(N)
    for i in range(N):
        power = power @ m
        norms[i] = np.linalg.norm(power, 2)
    rate = 2.0 * e * cc * cc
    behaviour = "exploding" if rate > 1.0 else "vanishing"
    if np.isclose(rate, 1.0, rtol=1e-12, atol=0.0):
        behaviour = "neutral"
    return Note3(
        eps=e,
        c=cc,
        spectral_radius=float(np.max(np.abs(np.linalg.eigvals(w)))),
        n=np.arange(1, N + 1),
        norms=norms,
        rate=rate,
        critical_c=float(1.0 / np.sqrt(2.0 * e)),
        behaviour=behaviour,
    )
