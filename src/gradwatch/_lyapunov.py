"""Lyapunov exponents by QR re-orthonormalisation of tangent vectors: the one implementation.

Shared by :mod:`gradwatch.theory.spectrum` (the article's cells, exact, float64),
:mod:`gradwatch.remedies.flossing` (differentiable, on the training trajectory) and the
monitor's Lyapunov collector (no grad, every N steps). It lives at the top of the package,
beside ``_checks`` and ``_hidden``, because the import contracts (pyproject.toml) let neither
the monitor nor the remedies import ``gradwatch.theory``.

For a recurrence s_t = F(s_{t−1}, u_t) with one-step Jacobians J_t = ∂s_t/∂s_{t−1}, k
orthonormal tangent vectors Q_0 (n × k) are pushed forward and re-orthonormalised every
step (Benettin et al. 1980): J_t Q_{t−1} = Q_t R_t, λ_i = (1/T) Σ_t ln |R_t[i, i]| (nats per
step). J_t Q is computed without forming J_t, by forward-mode automatic differentiation
(``torch.autograd.forward_ad``, the machinery of ``torch.func.jvp``) on k replicas of the
state, one tangent column each: one call of F on k·B states per step. The whole computation
stays in the autograd graph when F's parameters require grad (differentiating through
``torch.linalg.qr``, as gradient flossing needs).

:func:`recurrence` turns a module into such an F over one flat state per sample:

- ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (fused, any ``num_layers``): the state is the
  concatenated hidden state of all layers, [h¹, …, h^L] — and for an LSTM the cell states
  after them, [h¹, …, h^L, c¹, …, c^L] (n = L·H, or L·(H_out + H) for an LSTM). Layer l reads
  layer l−1's new h at the same time step, exactly as the fused kernel does; inter-layer
  dropout is not applied (the exponents are those of the deterministic map).
- ``nn.RNNCell`` / ``nn.GRUCell`` / ``nn.LSTMCell``: the same with one layer.
- a callable ``step(x_t, h) -> h`` (a hand-written cell), or a sequence of them (a stack
  whose cell l reads cell l−1's new output; state [h¹, …, h^L]). It is called on k·B rows at
  once (k replicas of each sample, adjacent: see :func:`qr_lyapunov`), so it must treat the
  rows of its batch independently.

Fused modules and torch cells are evaluated from their parameters with the formulas of
torch's documentation (not by calling the module), so no forward hook fires during the
measurement; a hand-written cell is called as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwad
from torch import nn

from gradwatch.errors import ConfigError

__all__ = ["QRRun", "Recurrence", "qr_lyapunov", "recurrence", "sequence_inputs"]

StepFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""F(s, u): state (B, n) and input (B, m) (or None) → the next state (B, n)."""

_FUSED = (nn.RNN, nn.GRU, nn.LSTM)
_CELLS = (nn.RNNCell, nn.GRUCell, nn.LSTMCell)


@dataclass(frozen=True)
class QRRun:
    """What :func:`qr_lyapunov` returns.

    Attributes:
        exponents: (B, k), nats per step, in the order of Q's columns (sort for λ_1 ≥ … ≥ λ_k).
        state: the state after the last step, (B, n).
        tangents: the orthonormal tangent vectors after the last step, (B, n, k).
        counted: the number of steps summed (steps − warmup).
    """

    exponents: torch.Tensor
    state: torch.Tensor
    tangents: torch.Tensor
    counted: int


def qr_lyapunov(
    step: StepFn,
    state: torch.Tensor,
    tangents: torch.Tensor,
    inputs: torch.Tensor | None = None,
    *,
    n_steps: int | None = None,
    warmup: int = 0,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> QRRun:
    """Push a state and k tangent vectors through ``step``, re-orthonormalising by QR every step.

    Args:
        step: F(s, u) → s′ on batched states; called on k·B rows (k adjacent replicas of
            each of the B states, row b·k + j carrying tangent column j), rows independent.
        state: s_0, shape (B, n).
        tangents: Q_0, shape (B, n, k), orthonormal columns (k ≤ n).
        inputs: u_1..u_T, shape (T, B, m); None for an autonomous map (then ``n_steps``).
        n_steps: T when ``inputs`` is None.
        warmup: the first ``warmup`` steps move the state and the tangents but are not
            summed (the tangents align with the leading directions first).
        on_step: called as ``on_step(t, Q_{t−1}, J_t Q_{t−1})`` before each QR (for the
            one-step Jacobian J_t = (J_t Q)Qᵀ when Q is square).

    Returns:
        A :class:`QRRun`. Differentiable with respect to whatever ``step`` closes over.

    Raises:
        ConfigError: shapes that do not fit, or no step left to sum after the warm-up.
    """
    if state.dim() != 2 or tangents.dim() != 3 or tangents.shape[:2] != state.shape:
        raise ConfigError(
            f"qr_lyapunov needs a state (B, n) and tangents (B, n, k). Got {tuple(state.shape)} and "
            f"{tuple(tangents.shape)}."
        )
    T = int(inputs.shape[0]) if inputs is not None else n_steps
    if T is None:
        raise ConfigError("qr_lyapunov needs inputs (T, B, m) or n_steps for an autonomous map.")
    if T - warmup < 1:
        raise ConfigError(f"qr_lyapunov: {T} steps leave none to measure after a warm-up of {warmup}.")
    B, n, k = tangents.shape
    total = torch.zeros(B, k, dtype=tangents.dtype, device=tangents.device)
    q, s = tangents, state
    for t in range(T):
        u = None if inputs is None else inputs[t]
        # Forward-mode AD on k replicas of each state, one tangent column each: a single cell call
        # per step. (vmap over torch.func.jvp does the same in 2-3x the time on small cells: its
        # per-call overhead dominates.) Dual tensors stay in the autograd graph: differentiable.
        with fwad.dual_level():
            dual = fwad.make_dual(s.repeat_interleave(k, dim=0), q.transpose(1, 2).reshape(B * k, n))
            out = step(dual, None if u is None else u.repeat_interleave(k, dim=0))
            primal, tangent = fwad.unpack_dual(out)
        if tangent is None:  # the step ignores its state: J_t = 0
            tangent = torch.zeros_like(primal)
        jq = tangent.reshape(B, k, n).transpose(1, 2)
        if on_step is not None:
            on_step(t, q, jq)
        q, r = torch.linalg.qr(jq)
        if t >= warmup:
            total = total + torch.log(torch.abs(torch.diagonal(r, dim1=-2, dim2=-1)))
        s = primal[::k]
    return QRRun(total / (T - warmup), s, q, T - warmup)


# ---- recurrent modules as maps over one flat state ------------------------------------


@dataclass(frozen=True)
class Recurrence:
    """A recurrent module as s_t = F(s_{t−1}, u_t) over one flat state per sample.

    Attributes:
        step: F, on (B, n) states and (B, m) inputs.
        state_size: n.
        input_size: m (None: a hand-written cell, whose input size is not known).
        state: how the flat state is laid out, in words.
    """

    step: StepFn
    state_size: int
    input_size: int | None
    state: str


def _gates(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None,
    b_hh: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    gi = x @ w_ih.T if b_ih is None else torch.addmm(b_ih, x, w_ih.T)
    gh = h @ w_hh.T if b_hh is None else torch.addmm(b_hh, h, w_hh.T)
    return gi, gh


def _layer_params(
    module: nn.Module, suffix: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    w_ih = getattr(module, f"weight_ih{suffix}")
    w_hh = getattr(module, f"weight_hh{suffix}")
    b_ih = getattr(module, f"bias_ih{suffix}", None)
    b_hh = getattr(module, f"bias_hh{suffix}", None)
    return w_ih, w_hh, b_ih, b_hh


def _torch_recurrence(module: nn.Module) -> Recurrence:
    fused = isinstance(module, _FUSED)
    if fused and getattr(module, "bidirectional", False):
        raise ConfigError(
            f"Lyapunov exponents need a forward-in-time recurrence; this {type(module).__name__} is "
            "bidirectional (its backward direction runs against time). Measure a unidirectional module."
        )
    layers = int(getattr(module, "num_layers", 1)) if fused else 1
    H: int = module.hidden_size  # type: ignore[assignment]
    P = int(getattr(module, "proj_size", 0) or 0)
    h_out = P or H
    suffixes = [f"_l{i}" for i in range(layers)] if fused else [""]
    lstm = isinstance(module, (nn.LSTM, nn.LSTMCell))
    gru = isinstance(module, (nn.GRU, nn.GRUCell))
    tanh = getattr(module, "nonlinearity", "tanh") == "tanh"

    def step(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        if u is None:
            raise ConfigError(f"A {type(module).__name__} needs its input sequence to be measured.")
        x = u
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for i, suffix in enumerate(suffixes):
            w_ih, w_hh, b_ih, b_hh = _layer_params(module, suffix)
            h = s[:, i * h_out : (i + 1) * h_out]
            gi, gh = _gates(x, h, w_ih, w_hh, b_ih, b_hh)
            if lstm:
                c0 = layers * h_out
                c = s[:, c0 + i * H : c0 + (i + 1) * H]
                ig, fg, gg, og = (gi + gh).chunk(4, dim=-1)
                c_new = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg)
                h_new = torch.sigmoid(og) * torch.tanh(c_new)
                if P:
                    h_new = h_new @ getattr(module, f"weight_hr{suffix}").T
                cs.append(c_new)
            elif gru:
                ir, iz, in_ = gi.chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r = torch.sigmoid(ir + hr)
                z = torch.sigmoid(iz + hz)
                n = torch.tanh(in_ + r * hn)
                h_new = (1 - z) * n + z * h
            else:
                pre = gi + gh
                h_new = torch.tanh(pre) if tanh else torch.relu(pre)
            hs.append(h_new)
            x = h_new
        return torch.cat(hs + cs, dim=-1)

    n = layers * h_out + (layers * H if lstm else 0)
    kind = "h" if not lstm else "h, then c"
    where = f"the concatenated state of {layers} layer(s) ({kind})" if layers > 1 else f"the state ({kind})"
    input_size: int = module.input_size  # type: ignore[assignment]
    return Recurrence(step, n, input_size, where)


def _stacked(cells: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], sizes: Sequence[int]) -> Recurrence:
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)

    def step(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        x = u
        out = []
        for cell, a, b in zip(cells, bounds[:-1], bounds[1:], strict=True):
            x = cell(x, s[:, a:b])  # type: ignore[arg-type]
            out.append(x)
        return torch.cat(out, dim=-1)

    return Recurrence(step, bounds[-1], None, f"the concatenated state of {len(cells)} stacked cell(s)")


def recurrence(module: object, hidden_size: int | Sequence[int] | None = None) -> Recurrence:
    """Describe ``module`` as a map over one flat state (see the module docstring for the layout).

    Args:
        module: ``nn.RNN``/``nn.GRU``/``nn.LSTM``, ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell``,
            a callable ``step(x_t, h) -> h``, or a sequence of such callables (a stack).
        hidden_size: the state size of a callable cell (one int per cell for a stack); read
            from ``.hidden_size`` / ``.hidden`` when the cell has one.

    Raises:
        ConfigError: a bidirectional module, or a callable whose state size is unknown.
    """
    if isinstance(module, (*_FUSED, *_CELLS)):
        return _torch_recurrence(module)
    cells = list(module) if isinstance(module, (list, tuple, nn.ModuleList)) else [module]
    if not cells or not all(callable(c) for c in cells):
        raise ConfigError(
            "The 'module' parameter must be an nn.RNN/nn.GRU/nn.LSTM, a torch cell, a callable "
            f"step(x_t, h) -> h or a sequence of them. Got {type(module).__name__} instead."
        )
    sizes: list[int] = []
    given = [hidden_size] * len(cells) if isinstance(hidden_size, int) else list(hidden_size or [])
    for i, cell in enumerate(cells):
        size = given[i] if i < len(given) else getattr(cell, "hidden_size", getattr(cell, "hidden", None))
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(
                f"The state size of hand-written cell {i} is unknown: pass hidden_size= (an integer >= 1, "
                f"one per cell for a stack). Got {size!r}."
            )
        sizes.append(size)
    if len(cells) == 1:
        cell = cells[0]

        def single(s: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            return cell(u, s)  # type: ignore[operator]

        return Recurrence(single, sizes[0], None, "the cell's state h")
    return _stacked(cells, sizes)  # type: ignore[arg-type]


def sequence_inputs(
    module: object, x: torch.Tensor, hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None, rec: Recurrence
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs as (T, B, m) and the initial flat state (B, n) of a module's call ``module(x, hx)``.

    Fused modules read ``batch_first`` and unbatched (T, m) inputs; any other module takes
    (B, T, m) (batch first, as :class:`gradwatch.models.RecurrentNet`). ``hx`` is the
    module's initial state as it takes it (for an LSTM the pair (h₀, c₀) of shape
    (L, B, ·)); None: zeros.

    Raises:
        ConfigError: an input that is not a floating-point tensor of the right rank/size.
    """
    if not torch.is_tensor(x) or not torch.is_floating_point(x):
        raise ConfigError(
            "Lyapunov exponents need the recurrent module's input as a floating-point tensor "
            f"(a PackedSequence or integer tokens cannot be measured). Got {type(x).__name__}"
            f"{' of ' + str(x.dtype) if torch.is_tensor(x) else ''}."
        )
    fused = isinstance(module, _FUSED)
    unbatched = fused and x.dim() == 2
    if x.dim() != 3 and not unbatched:
        raise ConfigError(f"The recurrent input must have shape (B, T, m) or (T, B, m). Got {tuple(x.shape)}.")
    if unbatched:
        seq = x.unsqueeze(1)
    elif fused and not getattr(module, "batch_first", False):
        seq = x
    else:
        seq = x.transpose(0, 1)
    if rec.input_size is not None and seq.shape[-1] != rec.input_size:
        raise ConfigError(
            f"The recurrent input has {seq.shape[-1]} features; the module takes input_size={rec.input_size}."
        )
    B = seq.shape[1]
    if hx is None:
        s0 = seq.new_zeros(B, rec.state_size)
    elif isinstance(hx, tuple):
        h, c = hx
        if unbatched:
            h, c = h.unsqueeze(1), c.unsqueeze(1)
        s0 = torch.cat([h.transpose(0, 1).reshape(B, -1), c.transpose(0, 1).reshape(B, -1)], dim=-1)
    else:
        h = hx.unsqueeze(1) if unbatched else hx
        s0 = h.transpose(0, 1).reshape(B, -1) if fused else h.reshape(B, -1)
    if s0.shape[-1] != rec.state_size:
        raise ConfigError(
            f"The initial state has {s0.shape[-1]} entries per sample; the module's state has {rec.state_size}."
        )
    return seq, s0.to(seq.dtype)
