"""Doya's one-neuron recurrent network: equilibria, folds, hysteresis, sensitivities.

The article's dynamical-systems model (after Doya 1992, "Bifurcations in the learning of
recurrent neural networks"):

    x_{t+1} = (1 − ε) x_t + ε σ(w x_t + b) + ε w′ u_t,

whose small-ε limit is the flow dx/dt = −x + σ(w x + b) + w′ u. In the autonomous case
(u = 0) the equilibria satisfy x = σ(w x + b), i.e. b = ln(x / (1 − x)) − w x. For w > 4
this curve folds at x (1 − x) = 1/w, and between the two fold values of b there are two
stable equilibria and one unstable one: the network is a one-bit memory with hysteresis.

Stability here is that of the flow (the article's limit): an equilibrium is stable when
f′(x*) = −1 + w x*(1 − x*) < 0. The map with step ε has the same stability when
−2/ε < f′(x*) < 0, which always holds for ε ∈ (0, 1] and w ≥ 0 (f′ ≥ −1 then);
:meth:`Equilibrium.stable_for_step` checks it in general.

Sensitivities are computed through the map with a finite ε (default 0.1), by autograd and
by central finite differences. Note what the article's Δx(T)/Δx(0) means near the
separatrix: a perturbation that crosses the unstable equilibrium moves x(T) to the other
attractor, so the finite-difference quotient is ≈ (distance between attractors)/Δ; the
derivative itself, at a point on the separatrix, grows as (1 + ε f′(x_u))^T. Both explode.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import expit, logit

from gradwatch import _checks
from gradwatch.errors import out_of_range

__all__ = [
    "Bifurcation",
    "Equilibrium",
    "Fold",
    "Hysteresis",
    "Sensitivity",
    "bifurcation",
    "bistable_interval",
    "equilibria",
    "folds",
    "hysteresis",
    "sensitivity",
    "sensitivity_profile",
    "simulate",
]

_OWNER = "doya"


@dataclass(frozen=True)
class Equilibrium:
    """An equilibrium x* = σ(w x* + b) of the autonomous network.

    Attributes:
        x: the state x*, in (0, 1).
        slope: f′(x*) = −1 + w x*(1 − x*), the flow's linearization (per unit time).
        stable: True when the flow is stable there (slope < 0).
    """

    x: float
    slope: float
    stable: bool

    def stable_for_step(self, eps: float) -> bool:
        """Return whether the map with step ``eps`` is stable here: |1 + ε f′(x*)| < 1."""
        return abs(1.0 + eps * self.slope) < 1.0


@dataclass(frozen=True)
class Fold:
    """A fold (saddle-node) point of the equilibrium curve: where db/dx = 0."""

    x: float
    b: float


def _slope(x: float, w: float) -> float:
    return -1.0 + w * x * (1.0 - x)


def equilibria(w: float, b: float) -> tuple[Equilibrium, ...]:
    """Find every equilibrium of dx/dt = −x + σ(w x + b), sorted by x.

    Root finding on h(z) = z − w σ(z) − b over the pre-activation z = w x + b, bracketed
    between the critical points of h (where σ′(z) = 1/w), so no root is missed.

    Args:
        w: self-connection weight (any finite real).
        b: bias (any finite real).

    Returns:
        One or three :class:`Equilibrium` (two when (w, b) sits exactly on a fold).
    """
    w = _checks.finite(w, "w", f"{_OWNER}.equilibria")
    b = _checks.finite(b, "b", f"{_OWNER}.equilibria")

    def h(z: float) -> float:
        return z - w * float(expit(z)) - b

    # z = b + w σ(z) lies within |w| of b: a bracket that always holds the roots.
    edges = [b + min(0.0, w) - 1.0]
    if w > 4.0:
        disc = math.sqrt(1.0 - 4.0 / w)
        edges += sorted(float(logit((1.0 + s * disc) / 2.0)) for s in (-1.0, 1.0))
    edges.append(b + max(0.0, w) + 1.0)
    roots: list[float] = []
    for lo, hi in itertools.pairwise(edges):
        h_lo, h_hi = h(lo), h(hi)
        if h_lo == 0.0:
            roots.append(lo)
        elif h_lo * h_hi < 0.0:
            roots.append(brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))
    if h(edges[-1]) == 0.0:
        roots.append(edges[-1])
    xs = sorted({float(expit(z)) for z in roots})
    return tuple(Equilibrium(x=x, slope=_slope(x, w), stable=_slope(x, w) < 0.0) for x in xs)


def folds(w: float) -> tuple[Fold, ...]:
    """Return the fold points of the equilibrium curve for weight ``w``, sorted by b.

    Closed form: db/dx = 1/(x(1 − x)) − w = 0 at x = (1 ± √(1 − 4/w))/2, and
    b = ln(x/(1 − x)) − w x there. For w ≤ 4 the curve is monotone and has no folds.

    Example:
        >>> [round(f.b, 4) for f in folds(5.0)]
        [-2.6556, -2.3444]
    """
    w = _checks.finite(w, "w", f"{_OWNER}.folds")
    if w <= 4.0:
        return ()
    disc = math.sqrt(1.0 - 4.0 / w)
    points = [Fold(x=x, b=float(logit(x)) - w * x) for x in ((1 - disc) / 2, (1 + disc) / 2)]
    return tuple(sorted(points, key=lambda f: f.b))


def bistable_interval(w: float) -> tuple[float, float] | None:
    """Return (b_low, b_high) between the folds, where two stable equilibria coexist; None for w ≤ 4."""
    f = folds(w)
    return (f[0].b, f[1].b) if f else None


@dataclass(frozen=True)
class Bifurcation:
    """The equilibrium curve over a range of b, for plotting.

    Attributes:
        x: states on the curve, shape (N,), increasing.
        b: b = ln(x/(1 − x)) − w x at each x, shape (N,).
        stable: flow stability at each point, shape (N,), bool.
        folds: the fold points inside the b range.
    """

    x: np.ndarray
    b: np.ndarray
    stable: np.ndarray
    folds: tuple[Fold, ...]


def bifurcation(w: float = 5.0, b_min: float = -3.0, b_max: float = -2.0, n_points: int = 4001) -> Bifurcation:
    """Trace the bifurcation diagram (equilibria against b) by the curve's parametrization in x.

    Raises:
        ConfigError: ``b_min`` ≥ ``b_max`` or ``n_points`` < 2.
    """
    owner = f"{_OWNER}.bifurcation"
    w = _checks.finite(w, "w", owner)
    lo = _checks.finite(b_min, "b_min", owner)
    hi = _checks.interval(b_max, "b_max", owner, lo, low_open=True)
    n = _checks.positive_int(n_points, "n_points", owner, minimum=2)
    # Parametrized by the pre-activation z = w x + b, which spans at most [b + min(0, w),
    # b + max(0, w)]: points crowd where the curve turns, and b = z − w x needs no logit.
    z = np.linspace(lo + min(0.0, w) - 1.0, hi + max(0.0, w) + 1.0, n)
    x = expit(z)
    b = z - w * x
    keep = (b >= lo) & (b <= hi)
    x, b = x[keep], b[keep]
    return Bifurcation(
        x=x,
        b=b,
        stable=(-1.0 + w * x * (1.0 - x)) < 0.0,
        folds=tuple(f for f in folds(w) if lo <= f.b <= hi),
    )


def simulate(
    x0: torch.Tensor | float,
    b: torch.Tensor | float,
    *,
    w: torch.Tensor | float = 5.0,
    eps: float = 0.1,
    n_steps: int = 1000,
    w_in: float = 0.0,
    inputs: torch.Tensor | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor:
    """Iterate x_{t+1} = (1 − ε) x_t + ε σ(w x_t + b) + ε w′ u_t in torch (differentiable).

    ``x0``, ``b`` and ``w`` broadcast against each other, so one call simulates a whole
    grid. Python floats become float64 tensors.

    Args:
        x0: initial state(s).
        b: bias(es).
        w: weight(s).
        eps: step ε in (0, 1].
        n_steps: T ≥ 1.
        w_in: input weight w′.
        inputs: u_0..u_{T−1}, shape (T, ...) broadcastable with x0; zeros when None.
        return_trajectory: return x_0..x_T stacked (shape (T + 1, ...)) instead of x_T.

    Returns:
        x_T (or the trajectory), float64 unless tensors of another dtype were given.
    """
    owner = f"{_OWNER}.simulate"
    e = _checks.interval(eps, "eps", owner, 0, 1, low_open=True)
    T = _checks.positive_int(n_steps, "n_steps", owner)
    if inputs is not None and inputs.shape[0] != T:
        raise out_of_range("inputs", owner, f"a tensor with {T} rows (one per step)", tuple(inputs.shape))
    x, b_t, w_t = (v if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64) for v in (x0, b, w))
    traj = [x]
    for t in range(T):
        drive = torch.sigmoid(w_t * x + b_t)
        if inputs is not None:
            drive = drive + w_in * inputs[t]
        x = (1.0 - e) * x + e * drive
        if return_trajectory:
            traj.append(x)
    return torch.stack(traj) if return_trajectory else x


@dataclass(frozen=True)
class Hysteresis:
    """A quasi-static sweep of b up, then down, letting the state settle at each b.

    Attributes:
        b_up, x_up: b values of the upward sweep and the settled states, shape (N,).
        b_down, x_down: the same for the downward sweep.
        jump_up_b: first b of the upward sweep at which the state has jumped to the upper
            branch (None when there is no jump: w ≤ 4).
        jump_down_b: the same for the downward sweep.
    """

    b_up: np.ndarray
    x_up: np.ndarray
    b_down: np.ndarray
    x_down: np.ndarray
    jump_up_b: float | None
    jump_down_b: float | None


def _settle(x: float, b: float, w: float, eps: float, max_steps: int, tol: float) -> float:
    for _ in range(max_steps):
        x_new = (1.0 - eps) * x + eps / (1.0 + math.exp(-(w * x + b)))
        if abs(x_new - x) < tol:
            return x_new
        x = x_new
    return x


def hysteresis(
    w: float = 5.0,
    b_min: float = -3.0,
    b_max: float = -2.0,
    n_points: int = 201,
    settle_time: float = 300.0,
    eps: float = 0.1,
) -> Hysteresis:
    """Sweep b slowly from ``b_min`` to ``b_max`` and back, by simulation, and find the jumps.

    At each b the map runs until the state moves less than 1e-13 per step, or for
    ``settle_time`` time units (settle_time/ε steps). Close past a fold the flow crawls
    through the fold's "ghost" (passage time ∝ 1/√|b − b_fold|), so the jump shows within
    one grid step of the fold when settle_time is long enough (the default is, for a grid
    step of 0.005 at w = 5).

    A jump is the largest change of the settled state between neighbouring b values,
    counted only when it exceeds a quarter of the state range (0.25).

    Raises:
        ConfigError: a parameter outside its range.
    """
    owner = f"{_OWNER}.hysteresis"
    w = _checks.finite(w, "w", owner)
    lo = _checks.finite(b_min, "b_min", owner)
    hi = _checks.interval(b_max, "b_max", owner, lo, low_open=True)
    n = _checks.positive_int(n_points, "n_points", owner, minimum=3)
    e = _checks.interval(eps, "eps", owner, 0, 1, low_open=True)
    settle = _checks.interval(settle_time, "settle_time", owner, 0, low_open=True)
    max_steps = max(1, math.ceil(settle / e))
    b_up = np.linspace(lo, hi, n)
    b_down = b_up[::-1].copy()
    x = 0.0
    x_up = np.empty(n)
    for i, b in enumerate(b_up):
        x = x_up[i] = _settle(x, float(b), w, e, max_steps, 1e-13)
    x_down = np.empty(n)
    for i, b in enumerate(b_down):
        x = x_down[i] = _settle(x, float(b), w, e, max_steps, 1e-13)
    return Hysteresis(b_up, x_up, b_down, x_down, _jump(b_up, x_up), _jump(b_down, x_down))


def _jump(b: np.ndarray, x: np.ndarray) -> float | None:
    dx = np.abs(np.diff(x))
    i = int(np.argmax(dx))
    return float(b[i + 1]) if dx[i] > 0.25 else None


@dataclass(frozen=True)
class Sensitivity:
    """How x(T) responds to x(0) and to b, by autograd and by finite differences.

    Attributes:
        x0, b: where it is evaluated.
        x_T: the final state.
        dxT_dx0, dxT_db: exact derivatives of the simulated map (autograd, float64).
        fd_dxT_dx0, fd_dxT_db: central finite-difference quotients with step ``delta``:
            [x(T; v + Δ) − x(T; v − Δ)] / (2Δ), the article's Δx(T)/Δx(0) and Δx(T)/Δb.
        delta: Δ.
        n_steps, eps: T and ε of the map.
    """

    x0: float
    b: float
    x_T: float
    dxT_dx0: float
    dxT_db: float
    fd_dxT_dx0: float
    fd_dxT_db: float
    delta: float
    n_steps: int
    eps: float


def sensitivity(
    x0: float,
    b: float,
    *,
    w: float = 5.0,
    eps: float = 0.1,
    n_steps: int = 1000,
    delta: float = 1e-6,
) -> Sensitivity:
    """Compute Δx(T)/Δx(0) and Δx(T)/Δb for the autonomous network (u = 0).

    Raises:
        ConfigError: a parameter outside its range (x0 must lie in [0, 1], delta > 0).
    """
    owner = f"{_OWNER}.sensitivity"
    x0 = _checks.interval(x0, "x0", owner, 0.0, 1.0)
    b = _checks.finite(b, "b", owner)
    d = _checks.interval(delta, "delta", owner, 0, low_open=True)
    x0_t = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    b_t = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    x_T = simulate(x0_t, b_t, w=w, eps=eps, n_steps=n_steps)
    g_x0, g_b = torch.autograd.grad(x_T, (x0_t, b_t))
    with torch.no_grad():
        probes = torch.tensor([x0 + d, x0 - d, x0, x0], dtype=torch.float64)
        biases = torch.tensor([b, b, b + d, b - d], dtype=torch.float64)
        ends = simulate(probes, biases, w=w, eps=eps, n_steps=n_steps)
    return Sensitivity(
        x0=x0,
        b=b,
        x_T=float(x_T.detach()),
        dxT_dx0=float(g_x0),
        dxT_db=float(g_b),
        fd_dxT_dx0=float(ends[0] - ends[1]) / (2 * d),
        fd_dxT_db=float(ends[2] - ends[3]) / (2 * d),
        delta=d,
        n_steps=n_steps,
        eps=eps,
    )


def sensitivity_profile(
    x0: np.ndarray, b: float, *, w: float = 5.0, eps: float = 0.1, n_steps: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute x(T), dx(T)/dx(0) and dx(T)/db for many initial states at once (autograd).

    Each x(T) depends only on its own x(0), so one backward pass of the sum gives every
    derivative.

    Returns:
        (x_T, dxT_dx0, dxT_db), each of the shape of ``x0``.
    """
    x0_t = torch.tensor(np.asarray(x0, dtype=np.float64), requires_grad=True)
    b_t = torch.full_like(x0_t, float(b), requires_grad=True)
    x_T = simulate(x0_t, b_t, w=w, eps=eps, n_steps=n_steps)
    g_x0, g_b = torch.autograd.grad(x_T.sum(), (x0_t, b_t))
    return x_T.detach().numpy(), g_x0.numpy(), g_b.numpy()
