"""Gradient flossing (Engelken 2023, NeurIPS): push the first k Lyapunov exponents toward zero.

The gradient through T steps of a recurrent network is a product of one-step Jacobians
J_T ⋯ J_1, whose growth rates are the Lyapunov exponents λ_1 ≥ λ_2 ≥ … of the forward
dynamics (nats per step): λ_1 < 0 makes the error signal vanish like e^{λ_1 T}, λ_1 > 0
makes it explode. Flossing adds the differentiable loss

    L_floss = Σ_{i=1..k} λ_i²

computed along the *actual* forward trajectory of a batch (each sample's own states and
inputs), by QR re-orthonormalisation of k tangent vectors pushed by forward-mode AD (JVPs)
(:func:`gradwatch._lyapunov.qr_lyapunov`, the loop :mod:`gradwatch.theory.spectrum` uses
too) and backpropagation through ``torch.linalg.qr``. Minimising it keeps k directions of
the long-term Jacobian neither growing nor shrinking, so the gradient has k well-conditioned
channels across time.

Use it

- before training: :func:`floss_` takes optimizer steps on L_floss alone (the paper's
  "preflossing"), on sequences of the task;
- during training: ``loss + weight * flossing_loss(...)`` every m steps (:class:`Flossing`
  counts the steps), or :func:`floss_` again every m steps (the paper's "interflossing").

State measured: for ``nn.RNN``/``nn.GRU`` the concatenated hidden state of all layers,
for ``nn.LSTM`` the hidden states then the cell states of all layers, for a hand-written
cell ``step(x_t, h) -> h`` its h (a stack of cells: their h's concatenated); see
:func:`gradwatch._lyapunov.recurrence`.

Where we differ from the paper (and its Julia code):

- the paper's loss is the mean of (λ_i − λ_target)² with λ_target = 0, i.e. ours divided by
  k; we sum, as the issue's ``loss + weight · Σ λ_i²`` reads (only the weight's scale differs);
- the paper flosses on one sequence at a time (batch 1); we average Σλ_i² over the batch's
  samples, each on its own trajectory;
- the paper's preflossing/interflossing steps update only the input, recurrent and bias
  weights (not the readout); :func:`floss_` updates the module's parameters — the readout is
  not part of the recurrent module, so this is the same set for a fused module;
- the paper discards ~10 + T/10 steps at the start of each trajectory while the tangent
  vectors align; our ``warmup`` defaults to T/10;
- the initial state is the module's (zeros or the ``hx`` passed), not a relaxed random one.

Cost: k forward-mode evaluations of the cell and one (n × k) QR per time step, plus the
backward pass through them: measured in ``benchmarks/flossing.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from gradwatch import _checks, _lyapunov
from gradwatch.errors import ConfigError

__all__ = ["Flossing", "floss_", "flossing_loss", "lyapunov_exponents"]

_OWNER = "flossing"
Module = nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | Sequence[nn.Module]
Hx = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def _per_sample(
    module: Module,
    inputs: torch.Tensor,
    k: int | None,
    hx: Hx,
    warmup: int | None,
    seed: int,
    hidden_size: int | Sequence[int] | None,
) -> torch.Tensor:
    """λ of every sample, (B, k), descending per sample; in the graph of the module's parameters."""
    rec = _lyapunov.recurrence(module, hidden_size)
    # the exponents are a property of the weights on this trajectory: no gradient to the data
    x = inputs.detach()
    h0: Hx = None if hx is None else (hx.detach() if torch.is_tensor(hx) else (hx[0].detach(), hx[1].detach()))
    seq, s0 = _lyapunov.sequence_inputs(module, x, h0, rec)
    n, T = rec.state_size, int(seq.shape[0])
    kk = n if k is None else _checks.positive_int(k, "k", _OWNER)
    if kk > n:
        raise ConfigError(f"The 'k' parameter of {_OWNER} must be at most the state size {n}. Got {k!r} instead.")
    w = T // 10 if warmup is None else _checks.positive_int(warmup, "warmup", _OWNER, minimum=0)
    if T - w < 1:
        raise ConfigError(f"The 'warmup' parameter of {_OWNER} must leave a step to measure: T={T}. Got {w!r} instead.")
    gen = torch.Generator().manual_seed(_checks.seed(seed, "seed", _OWNER))
    q0 = torch.linalg.qr(torch.randn(n, kk, generator=gen, dtype=torch.float64))[0]
    q0 = q0.to(device=seq.device, dtype=seq.dtype).expand(seq.shape[1], n, kk)
    run = _lyapunov.qr_lyapunov(rec.step, s0, q0, seq, warmup=w)
    return torch.sort(run.exponents, dim=-1, descending=True).values


def lyapunov_exponents(
    module: Module,
    inputs: torch.Tensor,
    *,
    k: int | None = None,
    hx: Hx = None,
    warmup: int | None = None,
    seed: int = 0,
    hidden_size: int | Sequence[int] | None = None,
    per_sample: bool = False,
) -> torch.Tensor:
    """Compute the first k Lyapunov exponents of ``module`` along the trajectory of ``inputs``.

    Args:
        module: ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (any ``num_layers``, not bidirectional),
            a torch cell, a callable ``step(x_t, h) -> h`` or a sequence of them (a stack).
            A callable is called on k·B rows at once (k adjacent replicas of each sample,
            one per tangent vector): it must treat rows independently.
        inputs: the sequence as the module takes it: (B, T, m) if ``batch_first`` (and for
            cells), (T, B, m) otherwise, or (T, m) unbatched.
        k: how many exponents (≤ the state size n); None: all n.
        hx: the initial state as the module takes it ((h₀, c₀) for an LSTM); zeros when None.
        warmup: steps at the start not summed while the tangents align (default T // 10).
        seed: seeds the random orthonormal initial tangent vectors.
        hidden_size: the state size of a hand-written cell without ``.hidden_size``.
        per_sample: return each sample's exponents, (B, k), instead of their mean.

    Returns:
        λ_1 ≥ … ≥ λ_k in nats per time step, the mean over the batch of each sample's
        exponents, shape (k,) (or (B, k) with ``per_sample``). Differentiable with respect to the module's parameters
        (not the inputs: they are detached).

    Raises:
        ConfigError: a bidirectional or unknown module, a bad shape, ``k`` above the state
            size, or a warm-up as long as the sequence.

    Example:
        >>> rnn = torch.nn.RNN(2, 8, batch_first=True)
        >>> lyapunov_exponents(rnn, torch.randn(4, 30, 2), k=3).shape
        torch.Size([3])
    """
    lam = _per_sample(module, inputs, k, hx, warmup, seed, hidden_size)
    return lam if per_sample else lam.mean(dim=0)


def flossing_loss(
    module: Module,
    inputs: torch.Tensor,
    *,
    k: int = 1,
    hx: Hx = None,
    warmup: int | None = None,
    seed: int = 0,
    hidden_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Compute the flossing loss Σ_{i≤k} λ_i², averaged over the batch's samples (differentiable).

    Args: as :func:`lyapunov_exponents` (``k`` ≥ 1, default 1).

    Returns:
        A scalar tensor (nats² per step²) to add, times a weight, to the training loss, or to
        minimise alone (:func:`floss_`).

    Raises:
        ConfigError: see :func:`lyapunov_exponents`.
    """
    lam = _per_sample(module, inputs, k, hx, warmup, seed, hidden_size)
    return (lam * lam).sum(dim=-1).mean()


def floss_(
    module: Module,
    batches: Iterable[torch.Tensor],
    *,
    k: int = 1,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    warmup: int | None = None,
    seed: int = 0,
    hidden_size: int | Sequence[int] | None = None,
) -> list[float]:
    """Floss: take one optimizer step on :func:`flossing_loss` alone per input batch, in place.

    The paper's flossing before training (and, called again every m steps, during it).

    Args:
        module: as :func:`lyapunov_exponents`; its parameters are updated in place.
        batches: input sequences (each as ``inputs`` of :func:`lyapunov_exponents`).
        k: how many exponents to push toward 0.
        lr: Adam's learning rate when ``optimizer`` is None (the paper: Adam, 1e-3).
        optimizer: an optimizer over the parameters to floss (default: Adam on the
            module's parameters; a hand-written cell without parameters needs one).
        warmup, seed, hidden_size: as :func:`lyapunov_exponents`.

    Returns:
        L_floss before each step (host floats: one sync per step).

    Raises:
        ConfigError: a bad ``lr``, a module without parameters and no optimizer, or see
            :func:`lyapunov_exponents`.
    """
    if optimizer is None:
        rate = _checks.interval(lr, "lr", _OWNER, 0.0, float("inf"), low_open=True)
        params = list(module.parameters()) if isinstance(module, nn.Module) else []
        if isinstance(module, (list, tuple)):
            params = [p for m in module if isinstance(m, nn.Module) for p in m.parameters()]
        if not params:
            raise ConfigError("floss_ needs an optimizer= for a module without parameters (a plain function).")
        optimizer = torch.optim.Adam(params, lr=rate)
    losses = []
    for x in batches:
        optimizer.zero_grad()
        loss = flossing_loss(module, x, k=k, warmup=warmup, seed=seed, hidden_size=hidden_size)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    optimizer.zero_grad()
    return losses


class Flossing:
    """Flossing during training: ``weight · L_floss`` on every ``every``-th call, 0 otherwise.

    Args:
        module: the recurrent module (as :func:`lyapunov_exponents`).
        k: exponents pushed toward 0 (≥ 1).
        weight: the penalty's weight (≥ 0).
        every: floss on calls every, 2·every, … (1: every call).
        warmup, seed, hidden_size: as :func:`lyapunov_exponents`.

    Raises:
        ConfigError: a bad ``k``, ``weight`` or ``every``.

    Example:
        >>> rnn = torch.nn.RNN(1, 8, batch_first=True)
        >>> floss = Flossing(rnn, k=2, weight=0.1, every=5)
        >>> x = torch.randn(4, 20, 1)
        >>> loss = rnn(x)[0].pow(2).mean() + floss(x)   # 0 on this first call: 1 is not a multiple of 5
        >>> loss.backward()
    """

    def __init__(
        self,
        module: Module,
        *,
        k: int = 1,
        weight: float = 0.1,
        every: int = 1,
        warmup: int | None = None,
        seed: int = 0,
        hidden_size: int | Sequence[int] | None = None,
    ) -> None:
        self.module = module
        self.k = _checks.positive_int(k, "k", "Flossing")
        self.weight = _checks.interval(weight, "weight", "Flossing", 0.0, float("inf"), low_open=False)
        self.every = _checks.positive_int(every, "every", "Flossing")
        self.warmup, self.seed, self.hidden_size = warmup, seed, hidden_size
        self.calls = 0

    def __call__(self, inputs: torch.Tensor, hx: Hx = None) -> torch.Tensor:
        """The penalty for this call (a zero scalar off the period)."""
        self.calls += 1
        if self.calls % self.every != 0 or self.weight == 0.0:
            return inputs.new_zeros(())
        loss = flossing_loss(
            self.module,
            inputs,
            k=self.k,
            hx=hx,
            warmup=self.warmup,
            seed=self.seed,
            hidden_size=self.hidden_size,
        )
        return self.weight * loss
