"""The article's geometric model: a wall in the loss landscape of Doya's network.

Fix w = 5, x(0) = 0.5, u = 0 and take the loss L(b) = (0.855 − x(T))² (the article's
note 4; Pascanu et al. 2013, figure 6, shows the same cliff for a slightly richer model).
For b just above −2.5 the state starts above the unstable equilibrium and settles on
the upper attractor ≈ 0.855, so L ≈ 0; as soon as b crosses −2.5 the unstable equilibrium
passes x(0) = 0.5, the state falls to the lower attractor ≈ 0.145 and L jumps to
≈ (0.855 − 0.145)² ≈ 0.50. Gradient descent on b "hits the wall": dL/db spikes there.

The wall is located by bisection on the *simulated* basin (the sign of x(T) − x(0): in one
dimension the state moves monotonically away from x(0) towards its attractor), which is
independent of the closed form b_wall = ln(x0/(1 − x0)) − w x0 that tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradwatch import _checks
from gradwatch.theory import doya

__all__ = ["Wall", "landscape_2d", "loss_curve", "wall"]

_OWNER = "landscape"


def loss_curve(
    b: np.ndarray,
    *,
    w: float = 5.0,
    x0: float = 0.5,
    target: float = 0.855,
    eps: float = 0.1,
    n_steps: int = 600,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute L(b) = (target − x(T))² and dL/db by autograd over an array of b.

    Args:
        b: biases, any shape.
        w, x0, target: the model (defaults: the article's).
        eps, n_steps: the map's step ε and T (T ε = 60 time units by default, long
            enough to settle everywhere except within ~1e-6 of the wall).

    Returns:
        (loss, dL/db, x(T)), each of the shape of ``b``.
    """
    x0 = _checks.interval(x0, "x0", _OWNER, 0.0, 1.0)
    b_t = torch.tensor(np.asarray(b, dtype=np.float64), requires_grad=True)
    x_T = doya.simulate(torch.full_like(b_t, x0), b_t, w=w, eps=eps, n_steps=n_steps)
    loss = (target - x_T) ** 2
    (grad,) = torch.autograd.grad(loss.sum(), b_t)
    return loss.detach().numpy(), grad.numpy(), x_T.detach().numpy()


@dataclass(frozen=True)
class Wall:
    """Where and how the loss jumps.

    Attributes:
        wall_b: b at which the basin of x(0) changes (bisection on the simulation).
        loss_left, loss_right: L at wall_b − margin and wall_b + margin (simulated).
        margin: that distance.
        loss_jump: (target − x_low)² − (target − x_high)² over the attractors at the wall,
            the size of the jump in the limit T → ∞ (closed form),
            ≈ 0.50 for the article's values.
        max_abs_grad: the largest |dL/db| found, over the grid and at the wall itself.
        max_abs_grad_b: where it occurs.
        attractors_at_wall: the stable equilibria at wall_b, sorted.
        unstable_at_wall: the unstable equilibria at wall_b (x(0) itself, at the wall).
        b, loss, grad: the grid and L, dL/db on it, for plotting.
    """

    wall_b: float
    loss_left: float
    loss_right: float
    margin: float
    loss_jump: float
    max_abs_grad: float
    max_abs_grad_b: float
    attractors_at_wall: tuple[float, ...]
    unstable_at_wall: tuple[float, ...]
    b: np.ndarray
    loss: np.ndarray
    grad: np.ndarray


def wall(
    *,
    w: float = 5.0,
    x0: float = 0.5,
    target: float = 0.855,
    b_min: float = -3.0,
    b_max: float = -2.0,
    n_points: int = 2001,
    eps: float = 0.1,
    n_steps: int = 600,
    margin: float = 0.01,
) -> Wall:
    """Find the wall in L(b) over [b_min, b_max], the loss on each side and the gradient spike.

    Raises:
        ConfigError: a parameter outside its range, or no wall inside [b_min, b_max].
    """
    lo = _checks.finite(b_min, "b_min", _OWNER)
    hi = _checks.interval(b_max, "b_max", _OWNER, lo, low_open=True)
    n = _checks.positive_int(n_points, "n_points", _OWNER, minimum=3)
    m = _checks.interval(margin, "margin", _OWNER, 0, low_open=True)
    _checks.positive_int(n_steps, "n_steps", _OWNER)
    grid = np.linspace(lo, hi, n)
    loss, grad, _ = loss_curve(grid, w=w, x0=x0, target=target, eps=eps, n_steps=n_steps)
    b_wall = _bisect_basin(lo, hi, w=w, x0=x0, eps=eps)
    sides, side_grad, _ = loss_curve(
        np.array([b_wall - m, b_wall + m, b_wall]), w=w, x0=x0, target=target, eps=eps, n_steps=n_steps
    )
    abs_grid = np.abs(grad)
    i = int(np.argmax(abs_grid))
    if abs(side_grad[2]) >= abs_grid[i]:
        max_grad, max_b = abs(float(side_grad[2])), b_wall
    else:
        max_grad, max_b = float(abs_grid[i]), float(grid[i])
    eq = doya.equilibria(w, b_wall)
    return Wall(
        wall_b=b_wall,
        loss_left=float(sides[0]),
        loss_right=float(sides[1]),
        margin=m,
        loss_jump=(target - eq[0].x) ** 2 - (target - eq[-1].x) ** 2,
        max_abs_grad=max_grad,
        max_abs_grad_b=max_b,
        attractors_at_wall=tuple(e.x for e in eq if e.stable),
        unstable_at_wall=tuple(e.x for e in eq if not e.stable),
        b=grid,
        loss=loss,
        grad=grad,
    )


def _bisect_basin(lo: float, hi: float, *, w: float, x0: float, eps: float) -> float:
    """Bisect on the direction the simulated state leaves x(0): up or down."""

    def goes_up(b: float) -> bool:
        # 50 steps are plenty to read the direction; the state has moved by ε·|f(x0)|·50.
        x = doya.simulate(x0, b, w=w, eps=eps, n_steps=50)
        return bool(float(x) > x0)

    up_lo, up_hi = goes_up(lo), goes_up(hi)
    if up_lo == up_hi:
        raise _checks.out_of_range(
            "b_min/b_max", _OWNER, f"an interval in which the basin of x(0)={x0:g} changes", (lo, hi)
        )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if goes_up(mid) == up_lo:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def landscape_2d(
    w: np.ndarray,
    b: np.ndarray,
    *,
    x0: float = 0.5,
    target: float = 0.855,
    eps: float = 0.1,
    n_steps: int = 600,
) -> np.ndarray:
    """Compute L(w, b) = (target − x(T))² on the grid w × b, shape (len(w), len(b))."""
    w_t = torch.as_tensor(np.asarray(w, dtype=np.float64))[:, None]
    b_t = torch.as_tensor(np.asarray(b, dtype=np.float64))[None, :]
    with torch.no_grad():
        x_T = doya.simulate(
            torch.full((w_t.shape[0], b_t.shape[1]), x0, dtype=torch.float64),
            b_t,
            w=w_t,
            eps=eps,
            n_steps=n_steps,
        )
    return ((target - x_T) ** 2).numpy()
