"""Remedies applied to a script from outside, through the session's hooks (no edit of the script).

Each tweak names the registry remedy it applies (:mod:`gradwatch.remedies.registry`) and acts
at one or two of the session's points (:class:`gradwatch.diagnose.session.Tweak`):

=====================  =========================================================================
tweak                  what changes
=====================  =========================================================================
``clip_grad_norm``     the registry's norm clipping, after the gradient was recorded, before the
                       update; the threshold comes from the diagnosed run's norms
                       (:func:`gradwatch.diagnose.core.clip_threshold`)
``agc``                the registry's adaptive (unit-wise) clipping, λ = 0.01 (Brock et al. 2021)
``lr×0.3``, ``lr×0.1`` every param group's ``lr`` times the factor during the optimizer step
                       (restored after it, so the script's schedulers keep working); without an
                       optimizer object the gradient is scaled instead (the same step for SGD)
``init:…``             an initialization of the registry (:data:`gradwatch.remedies.init.INITS`)
                       before the first forward: orthogonal / identity on the recurrent modules
                       only (fused ``nn.RNN/GRU/LSTM`` and the hand-written cells the diagnosed run
                       found), the forget-gate bias on ``nn.LSTM``, Kumar / Yilmaz–Poli on the
                       whole model; drawn from a private generator (the script's RNG stream is
                       not shifted)
``relu``               ``nn.Sigmoid``/``nn.Tanh`` modules replaced by ``nn.ReLU`` (``nn.RNN``'s
                       tanh by its ReLU mode) before the first forward; functional calls
                       (``torch.tanh(x)`` in a ``forward``) cannot be swapped from outside
``sign_sgd``           each gradient entry replaced by its sign times the global RMS of the
                       gradient, so every weight moves by the same amount (signSGD, Bernstein et
                       al. 2018; Rprop's idea of the article); offered with plain SGD or no optimizer
=====================  =========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from gradwatch.remedies import registry
from gradwatch.remedies.init import INITS

__all__ = [
    "ActivationSwap",
    "Init",
    "LearningRate",
    "RegistryClip",
    "SignSteps",
    "TweakBase",
]

SATURATING = (nn.Sigmoid, nn.Tanh)


@dataclass
class TweakBase:
    """A remedy applied through the session's hooks; subclasses override the points they use.

    Attributes:
        label: how tables name it (``"lr×0.3"``, ``"clip_grad_norm (max_norm=0.42)"``).
        remedy: the registry name it applies.
    """

    label: str
    remedy: str

    def attach(self, model: nn.Module) -> None:
        """Change the model before its first forward (default: nothing)."""

    def before_update(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        """Act after the gradient was recorded, before the update (default: nothing)."""

    def after_update(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Undo optimizer changes after the update (default: nothing)."""

    def params(self) -> dict[str, float]:
        """The numbers this tweak was made with (for the JSON document)."""
        return {}


@dataclass
class RegistryClip(TweakBase):
    """A per-step remedy of the registry (norm, value, adaptive clipping …) with its parameters."""

    values: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        registry.validate({self.remedy: self.values}, owner="diagnose")
        self._step = registry.build({self.remedy: self.values})

    def before_update(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        if self._step.after_backward is not None:
            self._step.after_backward([p for p in params if p.grad is not None], None)

    def params(self) -> dict[str, float]:
        return dict(self.values)


@dataclass
class LearningRate(TweakBase):
    """The learning rate times ``factor`` during each optimizer step (the gradient times it without one)."""

    factor: float = 0.3
    _saved: list[object] = field(default_factory=list, repr=False)

    def before_update(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        if optimizer is None:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, self.factor)
            return
        if self._saved:
            return  # already scaled for this step
        self._saved = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = g["lr"] * self.factor

    def after_update(self, optimizer: torch.optim.Optimizer | None) -> None:
        if optimizer is not None and self._saved:
            for g, lr in zip(optimizer.param_groups, self._saved, strict=False):
                g["lr"] = lr
            self._saved = []

    def params(self) -> dict[str, float]:
        return {"factor": self.factor}


def recurrent_modules(model: nn.Module, cells: Sequence[str] = ()) -> list[nn.Module]:
    """The fused recurrent modules of ``model`` and its hand-written cells (qualified names in ``cells``)."""
    named = dict(model.named_modules())
    found: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    found += [named[n] for n in cells if n in named and not isinstance(named[n], nn.RNNBase)]
    return found


@dataclass
class Init(TweakBase):
    """An initialization of the registry, on the recurrent modules (``recurrent_only``) or the whole model."""

    name: str = "orthogonal"
    cells: tuple[str, ...] = ()
    recurrent_only: bool = True

    def attach(self, model: nn.Module) -> None:
        fill = INITS[self.name]
        targets = recurrent_modules(model, self.cells) if self.recurrent_only else [model]
        for m in targets:
            if self.name == "forget_bias":
                if any(isinstance(x, nn.LSTM) for x in m.modules()):
                    fill(m)
                continue
            first = next(m.parameters(), None)
            device = first.device if first is not None else torch.device("cpu")
            fill(m, generator=torch.Generator(device=device).manual_seed(0))  # a generator on the weights' device


@dataclass
class ActivationSwap(TweakBase):
    """Saturating activation modules replaced by ReLU before the first forward."""

    def attach(self, model: nn.Module) -> None:
        for parent in model.modules():
            for child_name, child in list(parent.named_children()):
                if isinstance(child, SATURATING):
                    setattr(parent, child_name, nn.ReLU())
            if isinstance(parent, nn.RNN) and parent.nonlinearity == "tanh":
                parent.nonlinearity, parent.mode = "relu", "RNN_RELU"


def swappable(model: nn.Module) -> bool:
    """Whether :class:`ActivationSwap` would change anything in ``model``."""
    return any(
        isinstance(m, SATURATING) or (isinstance(m, nn.RNN) and m.nonlinearity == "tanh") for m in model.modules()
    )


@dataclass
class SignSteps(TweakBase):
    """Each gradient entry → sign × the gradient's global RMS (the same total norm, every weight moves alike)."""

    def before_update(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        n = sum(g.numel() for g in grads)
        rms = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) / math.sqrt(n)
        signs = torch._foreach_sign(grads)
        torch._foreach_mul_(signs, rms)
        for g, s in zip(grads, signs, strict=True):
            g.copy_(s)
