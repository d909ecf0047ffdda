"""Advice: which remedies fit a status, the model's family and the origin of a NaN (as data).

Remedies are named by their registry names, with the catalog's sentence
(:mod:`gradwatch._remedy_catalog`, a pure-data module: the monitor never imports
``gradwatch.remedies``). Advice follows the layers' roles, not the monitor's periods: a
recurrent model gets recurrent advice with or without a time profile, and the MLP remedies
(Kumar's and Yilmaz–Poli's inits, batch norm, residual connections) go to feed-forward
stacks only. Every list literal of strings in this module is a list of remedy names (a test
collects them).
"""

from __future__ import annotations

from collections.abc import Iterable

from gradwatch import _remedy_catalog
from gradwatch.monitor.verdict.base import Advice, Facts

__all__ = ["advise", "for_exploding", "for_nonfinite", "for_vanishing"]


def advise(names: Iterable[str]) -> tuple[Advice, ...]:
    """Each remedy once, in order, with the catalog's sentence."""
    return tuple(Advice(n, _remedy_catalog.advice(n)) for n in dict.fromkeys(names))


def _feedforward(f: Facts) -> bool:
    # logs without roles ("unknown") and no time profile keep the MLP advice they always had
    return not f.sequence and f.family in ("feedforward", "unknown")


def for_exploding(f: Facts) -> tuple[Advice, ...]:
    """Clip and lower the learning rate first; then what bounds the growth in this family."""
    names = ["clip_grad_norm", "lr:lower"]
    if f.sequence:
        names += ["spectral_radius<1", "init:orthogonal"]
    if f.history.lyapunov:  # the exponents were measured: pushing them toward 0 is the direct fix
        names += ["flossing"]
    elif _feedforward(f) or f.family == "convolutional":
        names += ["batchnorm", "residual"]
    return advise(names)


def for_vanishing(f: Facts, *, saturating: bool, dead: str, zeros: bool) -> tuple[Advice, ...]:
    """What fits a vanishing gradient in this model.

    - dead units (a rectifier's dead fraction above ``saturation_high``): a leaky slope, a lower LR
      (a large step is what usually kills them); above the note level, a leaky slope last;
    - exact zeros, and no layer dead enough to explain them: float16 underflow — a GradScaler;
    - recurrent models: gated cells, orthogonal init, the Pascanu regularizer;
    - transformers: pre-LN layer normalization, a lower LR (Xiong et al. 2020);
    - feed-forward stacks: rectifiers and activation-scaled inits when sigmoid/tanh units are
      measured, batch norm and residual connections (also for conv nets).

    Args:
        saturating: sigmoid/tanh-family activations were measured.
        dead: "high", "note" or "" (see :func:`gradwatch.monitor.verdict.size.saturation`).
        zeros: the first layers' gradients (or all) are exactly zero.
    """
    names: list[str] = []
    if dead == "high":
        names += ["leaky_relu", "lr:lower"]
    elif zeros:
        names += ["amp:grad_scaler"]
    if f.sequence:
        names += ["lstm", "init:orthogonal", "pascanu_regularizer"]
    if f.history.lyapunov:
        names += ["flossing"]
    if f.family == "transformer" and not f.sequence:
        names += ["layernorm", "lr:lower"]
    if saturating or (_feedforward(f) and not f.history.activations):
        names += ["relu"]
    if saturating and _feedforward(f):
        names += ["init:kumar", "init:yilmaz_poli"]
    if _feedforward(f) or f.family == "convolutional":
        names += ["batchnorm", "residual"]
    if dead == "note":
        names += ["leaky_relu"]
    return advise(names)


def for_nonfinite(
    f: Facts, *, origin: str | None, after_explosion: bool, at_input: bool, scaled: bool
) -> tuple[Advice, ...]:
    """Advice that follows where the first NaN/Inf came from.

    - after an explosion (a blow-up, divergence or spike just before): clip, lower the LR;
    - forward origin (a non-finite loss or forward output): guard the numerics, check the data;
      no gradient remedy can fix a value the forward pass made;
    - backward origin (finite loss): clip, guard the numerics (a derivative infinite at a point,
      e.g. sqrt at 0), lower the LR, scale fp16 losses;
    - unknown: clip, lower the LR, scale fp16 losses.

    A forward output of the first layer puts the data check first. ``scaled``: a GradScaler is
    already in use (it is not advised again).
    """
    names: list[str] = []
    if at_input:
        names += ["data:check"]
    if after_explosion:
        names += ["clip_grad_norm", "lr:lower"]
    if origin == "forward":
        names += ["numerics:guard", "data:check"]
    elif origin == "backward":
        names += ["clip_grad_norm", "numerics:guard", "lr:lower"]
    else:
        names += ["clip_grad_norm", "lr:lower"]
    if origin != "forward" and not scaled:
        names += ["amp:grad_scaler"]
    if origin is None:
        names += ["numerics:guard"]
    return advise(names)
