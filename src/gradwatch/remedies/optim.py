"""Optimizers that use only the sign of the gradient: Rprop (full batch) and sign-SGD (mini-batch).

The article: Behnke relied only on the sign of the gradient (Rprop, Riedmiller & Braun
1993) to train his Neural Abstraction Pyramid. A sign does not shrink with depth or time,
so a vanishing gradient still moves the weights — as long as its sign is right.

- **Rprop** is ``torch.optim.Rprop``: per-weight step sizes grow (×1.2) while the gradient
  keeps its sign and shrink (×0.5) when it flips. It is a *full-batch* method: with
  mini-batches the sign flips from batch to batch because of sampling noise, and the step
  sizes collapse. Use it with the whole training set per step.
- **sign-SGD** (:class:`SignSGD`, Bernstein et al. 2018, "signSGD: Compressed Optimisation
  for Non-Convex Problems"): θ ← θ − lr · sign(m), with m the gradient (β = 0) or its
  exponential moving average (β > 0: "Signum"). Works with mini-batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gradwatch import _checks

__all__ = ["SignSGD"]


class SignSGD(torch.optim.Optimizer):
    """θ ← θ − lr · sign(m), m = β m + (1 − β) g (m = g when β = 0).

    Args:
        params: parameters or parameter groups.
        lr: step size (> 0): every weight moves by exactly lr per step (or 0 where m = 0).
        momentum: β in [0, 1).
        weight_decay: decoupled decay, θ ← θ (1 − lr · wd), applied before the sign step.

    Raises:
        ConfigError: a hyper-parameter out of range.
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        _checks.interval(lr, "lr", "SignSGD", 0, low_open=True)
        _checks.interval(momentum, "momentum", "SignSGD", 0, 1, high_open=True)
        _checks.interval(weight_decay, "weight_decay", "SignSGD", 0)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Take one sign step; returns the closure's loss if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad
                if beta > 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = p.grad.detach().clone()
                    else:
                        buf.mul_(beta).add_(p.grad, alpha=1 - beta)
                    direction = buf
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(torch.sign(direction), alpha=-lr)
        return loss
