"""Pascanu, Mikolov & Bengio's (2013) regularizer that keeps the error signal alive in time.

Ω = Σ_k ( ‖∂E/∂x_{k+1} · ∂x_{k+1}/∂x_k‖ / ‖∂E/∂x_{k+1}‖ − 1 )²       (paper, eq. 9)

It asks every backward step to preserve the norm of the error signal in the direction it
travels, so that gradients neither vanish nor explode along the sequence.

The paper's approximation (§3.3): ∂E/∂x_{k+1} is treated as a constant when
differentiating Ω, so only the Jacobian ∂x_{k+1}/∂x_k carries gradient (one
vector-Jacobian product per step, no differentiation through the whole backward pass).
``exact=False`` (the default) follows the paper; ``exact=True`` differentiates through
∂E/∂x_{k+1} as well (a full double backward). The value of Ω is the same either way.

With a batch, each sample's Ω is computed from its own rows of the hidden states and
averaged over the batch; hidden states must then have shape (B, H) with the batch first.

Where the authors' published code differs from the paper (and we follow the paper): it
uses the ratio of *squared* norms, skips steps where ‖∂E/∂x_{k+1}‖² < 1e-20, and averages
over the steps it keeps instead of summing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradwatch.errors import ConfigError

__all__ = ["pascanu_penalty"]


def pascanu_penalty(
    loss: torch.Tensor, hidden_states: Sequence[torch.Tensor], *, exact: bool = False, eps: float = 1e-12
) -> torch.Tensor:
    """Compute Ω for hidden states x_1..x_T that ``loss`` depends on (differentiable).

    Args:
        loss: the scalar error E, computed from the hidden states.
        hidden_states: x_1..x_T, the tensors the recurrent loop produced, in order, each
            computed from the previous one (shape (H,) or (B, H)).
        exact: differentiate through ∂E/∂x_{k+1} too (default False: the paper's approximation).
        eps: guards the division where ‖∂E/∂x_{k+1}‖ = 0.

    Returns:
        Ω, a scalar tensor to add (times a weight) to the loss before ``backward()``.

    Raises:
        ConfigError: fewer than two hidden states, states that do not require grad, or a
            loss that is not a scalar.
    """
    xs = list(hidden_states)
    if len(xs) < 2:
        raise ConfigError(
            "pascanu_penalty needs the model's hidden states x_1..x_T (at least two): pass the list "
            f"the recurrent loop produced. Got {len(xs)}."
        )
    if not all(torch.is_tensor(x) and x.requires_grad for x in xs):
        raise ConfigError("pascanu_penalty: every hidden state must be a tensor in the autograd graph.")
    if loss.numel() != 1:
        raise ConfigError(f"pascanu_penalty: the loss must be a scalar. Got shape {tuple(loss.shape)}.")
    # ∂E/∂x_k for every k, total derivatives through every later step.
    grads = torch.autograd.grad(loss, xs, create_graph=exact, retain_graph=True, allow_unused=True)
    batched = xs[0].dim() > 1
    terms = []
    for k in range(len(xs) - 1):
        g_next = grads[k + 1]
        if g_next is None:
            continue
        if not exact:
            g_next = g_next.detach()
        # g_{k+1} · ∂x_{k+1}/∂x_k as one vector-Jacobian product, kept in the graph for Ω's gradient.
        (vjp,) = torch.autograd.grad(xs[k + 1], xs[k], grad_outputs=g_next, create_graph=True, retain_graph=True)
        if batched:
            num = vjp.reshape(vjp.shape[0], -1).norm(dim=1)
            den = g_next.reshape(g_next.shape[0], -1).norm(dim=1)
        else:
            num, den = vjp.norm(), g_next.norm()
        terms.append((num / (den + eps) - 1.0) ** 2)
    if not terms:
        return loss.new_zeros(())
    total = torch.stack(terms).sum(dim=0)
    return total.mean() if batched else total
