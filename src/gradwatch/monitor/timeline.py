"""Gradient over time steps of sequence models: ‖∂L/∂u_t‖ and, when exposed, ‖∂L/∂h_t‖.

For a sequence model the article's vanishing gradient is a decay of ∂L/∂u_t (or ∂L/∂h_t)
with the distance between t and the loss. :func:`time_profile` measures it for any
model: fused ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (batch_first or not, padded or packed) and
hand-written loops alike, by differentiating the loss with respect to the inputs only
(the parameters' ``.grad`` are left untouched).

Hidden states of a hand-written loop are measured when the loop passes them through
:func:`track_hidden`::

    for t in range(T):
        h = gw.track_hidden(torch.tanh(self.w_in(x[:, t]) + self.w_rec(h)))

Outside a profiling pass ``track_hidden`` returns its argument and costs one attribute
look-up. Fused modules hide their internal states from autograd, so for them only the
input profile exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from gradwatch import _checks
from gradwatch._hidden import collect_hidden, track_hidden
from gradwatch.errors import ConfigError

__all__ = ["TimeProfile", "collect_hidden", "input_profile", "time_profile", "track_hidden"]


@dataclass(frozen=True)
class TimeProfile:
    """Gradient norms per time step.

    Attributes:
        input: ‖∂L/∂u_t‖ for t = 0..T−1, shape (T,), or (B, T) when per-sample.
        hidden: ‖∂L/∂h_t‖ for the states passed through :func:`track_hidden`, in the
            order they were tracked, shape (T_h,) or (B, T_h); None when none was tracked.
    """

    input: torch.Tensor
    hidden: torch.Tensor | None

    def plot(self, path: str | Path) -> Path:
        """Draw the profile against t on a log axis (PNG); raises OutputError if unwritable."""
        from gradwatch.monitor.plot import plot_time_profile

        if self.input.dim() != 1:
            raise ConfigError("plot() draws one profile: take a per_sample=False profile, or index one sample.")
        return plot_time_profile(
            self.input.cpu().numpy(), path, None if self.hidden is None else self.hidden.cpu().numpy()
        )


def input_profile(
    grad: torch.Tensor | PackedSequence, *, time_dim: int = 1, batch_dim: int = 0, per_sample: bool = False
) -> torch.Tensor:
    """Reduce a gradient w.r.t. a sequence input to norms per time step (on its device).

    Args:
        grad: ∂L/∂u, a tensor with a time and a batch dimension, or a PackedSequence.
        time_dim, batch_dim: the dimensions of time and batch in ``grad``.
        per_sample: keep the batch dimension.

    Returns:
        Shape (T,), or (B, T) when ``per_sample``.
    """
    if isinstance(grad, PackedSequence):
        # float64: squares of small float32 gradients (< 1e-19) would underflow to zero.
        data = grad.data.reshape(grad.data.shape[0], -1).double()
        sq = (data * data).sum(dim=1)
        sizes = grad.batch_sizes.to(sq.device)
        T = sizes.numel()
        t_of_row = torch.repeat_interleave(torch.arange(T, device=sq.device), sizes)
        if not per_sample:
            return torch.zeros(T, dtype=sq.dtype, device=sq.device).index_add_(0, t_of_row, sq).sqrt()
        # Row j of time t is the j-th longest sequence; sorted_indices maps it back.
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(sq.numel(), device=sq.device) - starts[t_of_row]
        sample = rank if grad.sorted_indices is None else grad.sorted_indices.to(sq.device)[rank]
        B = int(sizes[0])
        out = torch.zeros(B, T, dtype=sq.dtype, device=sq.device)
        out[sample, t_of_row] = sq
        return out.sqrt()
    g = grad.double()
    nd = g.dim()
    td, bd = time_dim % nd, batch_dim % nd
    if td == bd:
        raise ConfigError(f"time_dim and batch_dim must differ. Got {time_dim} and {batch_dim}.")
    g = g.movedim((bd, td), (0, 1)).reshape(g.shape[bd], g.shape[td], -1)
    sq = (g * g).sum(dim=2)
    return sq.sqrt() if per_sample else sq.sum(dim=0).sqrt()


def _leaf_like(x: Any) -> Any:
    if isinstance(x, PackedSequence):
        data = x.data.detach().requires_grad_(True)
        return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    if torch.is_tensor(x):
        if not torch.is_floating_point(x):
            raise ConfigError(
                f"time_profile needs floating-point inputs to differentiate; got dtype {x.dtype}. "
                "For token ids, profile the embedding output: pass the embedded sequence to the rest of the model."
            )
        return x.detach().requires_grad_(True)
    raise ConfigError(f"inputs must be a tensor or a PackedSequence. Got {type(x).__name__}.")


def time_profile(
    model: nn.Module | Callable[[Any], Any],
    inputs: torch.Tensor | PackedSequence,
    loss_fn: Callable[[Any], torch.Tensor],
    *,
    time_dim: int = 1,
    batch_dim: int = 0,
    per_sample: bool = False,
) -> TimeProfile:
    """Compute ‖∂L/∂u_t‖ for every time step t (and ‖∂L/∂h_t‖ for tracked hidden states).

    Runs one forward and one backward pass of ``loss_fn(model(inputs))``, differentiating
    with respect to the inputs (and tracked hidden states) only: parameters' ``.grad`` are
    not touched.

    Args:
        model: any module or callable taking ``inputs``.
        inputs: shape with a batch and a time dimension (default (B, T, ...), i.e.
            batch_first; pass ``time_dim=0, batch_dim=1`` for (T, B, ...)), or a
            PackedSequence.
        loss_fn: maps the model's output to a scalar loss.
        time_dim, batch_dim: where time and batch are in ``inputs``.
        per_sample: return one profile per sample, shape (B, T).

    Returns:
        A :class:`TimeProfile` (tensors on the inputs' device).

    Raises:
        ConfigError: integer inputs, a non-scalar loss, or a loss that does not depend on
            the inputs.
    """
    if torch.is_tensor(inputs):
        _checks.interval(time_dim, "time_dim", "time_profile", -inputs.dim(), inputs.dim() - 1)
    x = _leaf_like(inputs)
    leaf = x.data if isinstance(x, PackedSequence) else x
    with torch.enable_grad(), collect_hidden() as states:
        loss = loss_fn(model(x))
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise ConfigError("loss_fn must return a scalar tensor.")
        wrt = [leaf, *states]
        grads = torch.autograd.grad(loss.reshape(()), wrt, allow_unused=True)
    g_in = grads[0]
    if g_in is None:
        raise ConfigError("The loss does not depend on the inputs: nothing to profile.")
    g_seq: torch.Tensor | PackedSequence = g_in
    if isinstance(x, PackedSequence):
        g_seq = PackedSequence(g_in, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    profile = input_profile(g_seq, time_dim=time_dim, batch_dim=batch_dim, per_sample=per_sample)
    hidden = None
    if states:
        rows = []
        for h, g in zip(states, grads[1:], strict=True):
            g = torch.zeros_like(h) if g is None else g
            flat = g.double().reshape(g.shape[0], -1) if g.dim() > 1 else g.double().reshape(1, -1)
            rows.append(flat.norm(dim=1) if per_sample else flat.norm())
        hidden = torch.stack(rows, dim=-1)
    return TimeProfile(input=profile.detach(), hidden=None if hidden is None else hidden.detach())
