"""Jacobian singular values and Lyapunov exponents of any recurrent cell.

For a cell h_t = f(h_{t−1}, u_t) the one-step Jacobians J_t = ∂h_t/∂h_{t−1} decide whether
gradients vanish or explode over time: the T-step Jacobian is J_T ⋯ J_1, and its growth
rates are the Lyapunov exponents λ_1 ≥ … ≥ λ_n (nats per step), computed here by the
standard QR method (Benettin et al. 1980; see also Vogt et al. 2022, "On Lyapunov
exponents for RNNs"): Q_0 = I, J_t Q_{t−1} = Q_t R_t, λ_i = (1/T) Σ_t ln |R_t[i, i]|.
λ_1 < 0 means gradients vanish geometrically along this trajectory; λ_1 > 0, they explode.
For a linear cell h ↦ W h the exponents are ln |eig(W)| exactly (in the limit T → ∞).
:func:`max_lyapunov` computes λ_1 alone with one tangent vector (the same method with a
single column: v_t = J_t v_{t−1} / ‖J_t v_{t−1}‖, λ_1 = (1/T) Σ_t ln ‖J_t v_{t−1}‖) through
Jacobian-vector products, O(n²) per step instead of a full Jacobian and QR — what large
random networks need.

Both run the one QR loop of :func:`gradwatch._lyapunov.qr_lyapunov` (tangent vectors pushed
by forward-mode AD, Jacobian-vector products), which gradient flossing (:mod:`gradwatch.remedies.flossing`) and
the monitor's Lyapunov collector also use; here it is fed the full basis Q_0 = I, so that
(J_t Q)Qᵀ gives each one-step Jacobian too.

Cells: ``nn.RNNCell``, ``nn.GRUCell``, ``nn.LSTMCell`` (whose state is (h, c), handled as
one vector of size 2H) or any callable h ↦ h′. Everything runs on a float64 copy of the
cell; the caller's module is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradwatch import _checks, _lyapunov
from gradwatch.errors import ConfigError

__all__ = ["CELL_KINDS", "Spectrum", "lyapunov_spectrum", "max_lyapunov", "random_cell"]

_OWNER = "spectrum"
CELL_KINDS = ("gru", "lstm", "rnn")

Cell = nn.RNNCell | nn.GRUCell | nn.LSTMCell | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Spectrum:
    """Growth rates of the Jacobian products of a recurrent cell along one trajectory.

    Attributes:
        lyapunov: Lyapunov exponents, nats per step, shape (n,), descending.
        singular_values: singular values of the T-step Jacobian ∂h_T/∂h_0, shape (n,),
            descending (values below ~1e-16 of the largest are at rounding level).
        one_step_singular_values: singular values of each J_t, shape (T, n), descending.
        steps: T.
        state_size: n (2H for an LSTM cell).
    """

    lyapunov: np.ndarray
    singular_values: np.ndarray
    one_step_singular_values: np.ndarray
    steps: int
    state_size: int

    @property
    def max_lyapunov(self) -> float:
        """λ_1, the largest exponent."""
        return float(self.lyapunov[0])


def random_cell(kind: str, hidden_size: int, input_size: int = 8, *, seed: int = 0) -> nn.Module:
    """Build an ``nn.RNNCell`` (tanh), ``nn.GRUCell`` or ``nn.LSTMCell`` with torch's default init.

    The global RNG is forked, so seeding here leaves the caller's random state untouched.

    Raises:
        ConfigError: unknown ``kind`` or a size < 1.
    """
    kind = _checks.choice(kind, "cell", _OWNER, CELL_KINDS)
    h = _checks.positive_int(hidden_size, "hidden_size", _OWNER)
    m = _checks.positive_int(input_size, "input_size", _OWNER)
    classes: dict[str, type[nn.RNNCell | nn.GRUCell | nn.LSTMCell]] = {
        "rnn": nn.RNNCell,
        "gru": nn.GRUCell,
        "lstm": nn.LSTMCell,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return classes[kind](m, h)


def _state_map(
    cell: Cell, state_size: int | None
) -> tuple[Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], int, int]:
    """Wrap ``cell`` as s_t = F(s_{t−1}, u_t) over one flat float64 state vector."""
    if isinstance(cell, nn.LSTMCell):
        c64 = copy.deepcopy(cell).double().requires_grad_(False)
        H = c64.hidden_size

        def lstm_step(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            h, c = c64(u, (s[..., :H], s[..., H:]))  # one state (2H,) or a batch (B, 2H)
            return torch.cat([h, c], dim=-1)

        return lstm_step, 2 * H, c64.input_size
    if isinstance(cell, (nn.RNNCell, nn.GRUCell)):
        cell64 = copy.deepcopy(cell).double().requires_grad_(False)

        def step(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            h: torch.Tensor = cell64(u, s)
            return h

        return step, cell64.hidden_size, cell64.input_size
    if callable(cell):
        if state_size is None:
            raise ConfigError("A callable cell h -> h' needs its state size: pass state_size= or h0=.")

        def call(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            return cell(s)

        return call, state_size, 0
    raise ConfigError(
        f"The 'cell' parameter of {_OWNER} must be an nn.RNNCell, nn.GRUCell, nn.LSTMCell or a "
        f"callable h -> h'. Got {type(cell).__name__} instead."
    )


def _prepare(
    cell: Cell,
    steps: int,
    inputs: torch.Tensor | None,
    h0: torch.Tensor | None,
    state_size: int | None,
    burn_in: int,
) -> tuple[
    int,
    int,
    Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    int,
    torch.Tensor,
    Callable[[int], torch.Tensor | None],
]:
    """Validate the arguments, run the burn-in; return (T, burn_in, step map, n, state after burn-in, u_t)."""
    T = _checks.positive_int(steps, "steps", _OWNER)
    burn = _checks.positive_int(burn_in, "burn_in", _OWNER, minimum=0)
    if h0 is not None and state_size is None:
        state_size = int(h0.numel())
    fn, n, m = _state_map(cell, state_size)
    s = torch.zeros(n, dtype=torch.float64) if h0 is None else h0.detach().to(torch.float64).reshape(-1)
    if s.numel() != n:
        raise ConfigError(f"h0 must have {n} entries for this cell. Got {s.numel()}.")
    u_all: torch.Tensor | None = None
    if m and inputs is None:
        u_all = torch.zeros(burn + T, m, dtype=torch.float64)
    elif m and inputs is not None:
        u_all = inputs.detach().to(torch.float64)
        if u_all.shape != (burn + T, m):
            raise ConfigError(
                f"inputs must have shape ({burn + T}, {m}) = (burn_in + steps, input_size). Got {tuple(u_all.shape)}."
            )

    def u_at(t: int) -> torch.Tensor | None:
        return None if u_all is None else u_all[t]

    with torch.no_grad():
        for t in range(burn):
            s = fn(s, u_at(t))
    return T, burn, fn, n, s, u_at


def _batched(
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], cell: Cell
) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``fn`` as a map on a batch of states (B, n), for :func:`_lyapunov.qr_lyapunov`.

    The QR loop pushes k replicas of the state, one per tangent vector. Torch cells take a
    batch as they are; the article's callables h ↦ W h take one state, so they run row by row.
    """
    if isinstance(cell, (nn.RNNCell, nn.GRUCell, nn.LSTMCell)):
        return fn

    def step(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        return torch.stack([fn(s[i], None if u is None else u[i]) for i in range(s.shape[0])])

    return step


def _inputs(u_at: Callable[[int], torch.Tensor | None], burn: int, T: int) -> torch.Tensor | None:
    """u_{burn+1}..u_{burn+T} as (T, 1, m), or None for a cell without inputs."""
    if u_at(burn) is None:
        return None
    return torch.stack([u_at(t) for t in range(burn, burn + T)])[:, None]  # type: ignore[misc]


def lyapunov_spectrum(
    cell: Cell,
    *,
    steps: int = 200,
    inputs: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    state_size: int | None = None,
    burn_in: int = 0,
) -> Spectrum:
    """Compute the Lyapunov exponents and Jacobian singular values of a recurrent cell.

    Args:
        cell: an ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell`` or a callable h ↦ h′.
        steps: T, the number of steps measured (≥ 1).
        inputs: u_1..u_{burn_in+T}, shape (burn_in + T, input_size); zeros when None.
            Ignored for a callable cell.
        h0: initial state, shape (n,) (for an LSTM cell, h and c concatenated); zeros when None.
        state_size: n, needed for a callable cell when ``h0`` is None.
        burn_in: steps run first and not measured, to forget the initial state.

    Returns:
        A :class:`Spectrum`.

    Raises:
        ConfigError: a bad cell, size or shape.
    """
    T, burn, fn, n, s, u_at = _prepare(cell, steps, inputs, h0, state_size, burn_in)
    product = torch.eye(n, dtype=torch.float64)
    one_step = np.empty((T, n))

    def record(t: int, q: torch.Tensor, jq: torch.Tensor) -> None:
        nonlocal product
        J = (jq[0] @ q[0].T).detach()  # Q is square and orthonormal: (J Q) Qᵀ = J
        one_step[t] = torch.linalg.svdvals(J).numpy()
        product = J @ product

    run = _lyapunov.qr_lyapunov(
        _batched(fn, cell),
        s[None],
        torch.eye(n, dtype=torch.float64)[None],
        _inputs(u_at, burn, T),
        n_steps=T,
        on_step=record,
    )
    log_r = run.exponents[0].detach() * T
    lyap = np.sort((log_r / T).numpy())[::-1].copy()
    return Spectrum(
        lyapunov=lyap,
        singular_values=torch.linalg.svdvals(product).numpy(),
        one_step_singular_values=one_step,
        steps=T,
        state_size=n,
    )


def max_lyapunov(
    cell: Cell,
    *,
    steps: int = 200,
    inputs: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    v0: torch.Tensor | None = None,
    state_size: int | None = None,
    burn_in: int = 0,
) -> float:
    """Compute the largest Lyapunov exponent λ_1 (nats per step) with one tangent vector.

    Benettin et al. 1980 with a single direction: v_t = J_t v_{t−1}, renormalized every
    step, λ_1 = (1/T) Σ_t ln ‖J_t v_{t−1}‖; J_t v is a Jacobian-vector product
    (forward-mode AD), so a step costs about one evaluation of the cell. For a flow
    dh/dt = F(h) integrated by Euler steps of size dt, λ_1 / dt is the exponent per unit time.

    Args:
        cell, steps, inputs, h0, state_size, burn_in: as in :func:`lyapunov_spectrum`.
        v0: the initial tangent direction, shape (n,); the first basis vector when None
            (a random direction avoids starting orthogonal to the leading one).

    Returns:
        λ_1 along this trajectory, nats per step.

    Raises:
        ConfigError: a bad cell, size or shape, or a zero ``v0``.

    Example:
        >>> a = torch.diag(torch.tensor([-0.9, 0.5, 0.2], dtype=torch.float64))
        >>> round(max_lyapunov(lambda h: a @ h, steps=50, state_size=3), 6)  # ln 0.9
        -0.105361
    """
    T, burn, fn, n, s, u_at = _prepare(cell, steps, inputs, h0, state_size, burn_in)
    v = torch.zeros(n, dtype=torch.float64) if v0 is None else v0.detach().to(torch.float64).reshape(-1)
    if v0 is None:
        v[0] = 1.0
    if v.numel() != n:
        raise ConfigError(f"v0 must have {n} entries for this cell. Got {v.numel()}.")
    norm0 = float(v.norm())
    if not norm0 > 0:
        raise ConfigError("v0 must be a non-zero direction.")
    v = v / norm0
    run = _lyapunov.qr_lyapunov(_batched(fn, cell), s[None], v[None, :, None], _inputs(u_at, burn, T), n_steps=T)
    return float(run.exponents[0, 0])
