"""Weight initializations that keep gradients alive, ``torch.nn.init``-style (in place, ``_``).

Every function applies to the weights of every ``nn.Linear`` and every ``nn.RNN``/
``nn.LSTM``/``nn.GRU`` (``weight_ih_l*``, ``weight_hh_l*``) inside a module, sets their
biases to zero (except where the rule says otherwise), and returns the module. N is
the fan-in of each weight (its number of columns).

- :func:`kumar_` — Kumar 2017, "On weight initialization in deep neural networks"
  (arXiv:1704.08863): for an activation g differentiable at 0, weights ~ N(0, v²) with
  v² = 1 / (N g′(0)² (1 + g(0)²)). For the logistic function g(0) = ½, g′(0) = ¼, so
  v² = 12.8/N, std ≈ 3.58/√N — the paper's "3.6/√N". The author's published code uses
  *variance* 3.6/N instead (std ≈ 1.9/√N); ``convention="code"`` gives that. For ReLU
  (not differentiable at 0) the paper recovers He et al.'s v² = 2/N.
- :func:`yilmaz_poli_` — Yilmaz & Poli 2022, "Successfully and efficiently training deep
  multi-layer perceptrons with logistic activation function simply requires initializing
  the weights with an appropriate negative mean" (Neural Networks 153): weights of
  logistic layers drawn with mean max(−1, −8/N). The spread is a parameter here
  (default: Kumar's logistic std 3.6/√N); the paper's own choice of spread is not
  restated in the article, so set ``std=`` to match it where that matters.
- :func:`orthogonal_` — orthogonal weights (Saxe et al. 2014), via ``nn.init.orthogonal_``.
- :func:`identity_recurrent_` — IRNN (Le, Jaitly & Hinton 2015): recurrent weights = I
  (times ``scale``), input weights N(0, 0.001²), biases 0, for ReLU RNNs.
- :func:`glorot_` and :func:`he_` — ``nn.init.xavier_normal_`` / ``nn.init.kaiming_normal_``.
- :func:`glorot_standard_` and :func:`glorot_normalized_` — the two inits Glorot & Bengio
  2010 compare: the "standard" heuristic U[−1/√N, 1/√N] (eq. 1) and their "normalized"
  U[±√6/√(N_in + N_out)] (eq. 16), which is ``nn.init.xavier_uniform_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from gradwatch import _checks
from gradwatch.errors import ConfigError

__all__ = [
    "INITS",
    "KUMAR_ACTIVATIONS",
    "forget_bias_",
    "glorot_",
    "glorot_normalized_",
    "glorot_standard_",
    "he_",
    "identity_recurrent_",
    "init_",
    "kumar_",
    "kumar_std",
    "orthogonal_",
    "yilmaz_poli_",
]

# g(0), g'(0) for activations differentiable at 0 (Kumar 2017, eq. for the general rule)
_G0 = {"sigmoid": (0.5, 0.25), "tanh": (0.0, 1.0), "linear": (0.0, 1.0), "softsign": (0.0, 1.0)}
KUMAR_ACTIVATIONS = (*sorted(_G0), "relu")


def _weights(module: nn.Module) -> Iterator[tuple[nn.Module, str, torch.Tensor]]:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            yield m, "weight", m.weight
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters(recurse=False):
                if name.startswith("weight_"):
                    yield m, name, p


def _zero_biases(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters(recurse=False):
                if name.startswith("bias_"):
                    nn.init.zeros_(p)


def _require_weights(module: nn.Module, owner: str) -> None:
    if not any(True for _ in _weights(module)):
        raise ConfigError(f"{owner}: the module has no nn.Linear or nn.RNN/LSTM/GRU weight to initialize.")


def _fill_weights(module: nn.Module, owner: str, fill: Callable[[nn.Module, str, torch.Tensor], object]) -> nn.Module:
    """Check that ``module`` has weights, ``fill(m, name, w)`` each in place, zero the biases."""
    _require_weights(module, owner)
    with torch.no_grad():
        for m, name, w in _weights(module):
            fill(m, name, w)
    _zero_biases(module)
    return module


def kumar_std(fan_in: int, activation: str = "sigmoid", convention: str = "paper") -> float:
    """Return Kumar's (2017) standard deviation for a weight with ``fan_in`` inputs.

    Raises:
        ConfigError: an activation the rule does not cover, or ``convention="code"``
            for anything but the logistic function (the code covers only that case).
    """
    act = _checks.choice(activation, "activation", "kumar_", KUMAR_ACTIVATIONS)
    conv = _checks.choice(convention, "convention", "kumar_", ("code", "paper"))
    n = _checks.positive_int(fan_in, "fan_in", "kumar_")
    if conv == "code":
        if act != "sigmoid":
            raise ConfigError(f"convention='code' (variance 3.6/N) exists only for activation='sigmoid'. Got {act!r}.")
        return math.sqrt(3.6 / n)
    if act == "relu":
        return math.sqrt(2.0 / n)
    g0, d0 = _G0[act]
    return math.sqrt(1.0 / (n * d0 * d0 * (1.0 + g0 * g0)))


def kumar_(
    module: nn.Module,
    activation: str = "sigmoid",
    convention: str = "paper",
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize every Linear/RNN weight by Kumar's (2017) rule, biases to zero, in place.

    Args:
        module: the model (or a single layer).
        activation: one of ``KUMAR_ACTIVATIONS`` ("linear", "relu", "sigmoid", "softsign", "tanh").
        convention: "paper" (std 3.6/√N for the logistic function) or "code" (variance 3.6/N).
        generator: a torch.Generator for reproducible draws.

    Returns:
        ``module``.

    Raises:
        ConfigError: an activation the rule does not cover, or no weight to initialize.
    """
    _require_weights(module, "kumar_")
    kumar_std(1, activation, convention)  # validate once, before touching anything
    return _fill_weights(
        module,
        "kumar_",
        lambda m, n, w: w.normal_(0.0, kumar_std(w.shape[1], activation, convention), generator=generator),
    )


def yilmaz_poli_(module: nn.Module, std: float | None = None, *, generator: torch.Generator | None = None) -> nn.Module:
    """Initialize every Linear/RNN weight with mean max(−1, −8/N) (Yilmaz & Poli 2022), in place.

    Args:
        module: a model with logistic (sigmoid) layers.
        std: the spread of the Gaussian; default Kumar's logistic std √(12.8/N).
        generator: a torch.Generator for reproducible draws.

    Returns:
        ``module``.
    """
    if std is not None:
        _checks.interval(std, "std", "yilmaz_poli_", 0)

    def fill(m: nn.Module, name: str, w: torch.Tensor) -> None:
        n = w.shape[1]
        w.normal_(max(-1.0, -8.0 / n), kumar_std(n, "sigmoid") if std is None else std, generator=generator)

    return _fill_weights(module, "yilmaz_poli_", fill)


def orthogonal_(module: nn.Module, gain: float = 1.0, *, generator: torch.Generator | None = None) -> nn.Module:
    """Orthogonal weights (``nn.init.orthogonal_``), biases zero, in place."""
    return _fill_weights(module, "orthogonal_", lambda m, n, w: nn.init.orthogonal_(w, gain=gain, generator=generator))


def identity_recurrent_(
    module: nn.Module, scale: float = 1.0, input_std: float = 1e-3, *, generator: torch.Generator | None = None
) -> nn.Module:
    """IRNN (Le et al. 2015): recurrent weights = scale · I, input weights N(0, input_std²), biases 0.

    Recurrent weights are ``weight_hh_*`` of nn.RNN/LSTM/GRU (each square block set to
    identity) and the ``w_rec`` Linear of gradwatch's own RNN cell; every other weight is
    treated as an input weight.
    """

    def fill(m: nn.Module, name: str, w: torch.Tensor) -> None:
        if name.startswith("weight_hh") or getattr(m, "_gradwatch_recurrent", False):
            h = w.shape[1]
            w.copy_(torch.eye(h, dtype=w.dtype, device=w.device).repeat(w.shape[0] // h, 1) * scale)
        else:
            w.normal_(0.0, input_std, generator=generator)

    return _fill_weights(module, "identity_recurrent_", fill)


def forget_bias_(module: nn.Module, bias: float = 5.0, *, generator: torch.Generator | None = None) -> nn.Module:
    """Set the forget-gate bias of every ``nn.LSTM`` in ``module`` to ``bias``; other weights keep theirs.

    A large forget bias keeps the gate near 1, so the cell state (the constant error
    carousel) carries gradients over long lags from the first step of training. Gers,
    Schmidhuber & Cummins (2000) introduced the forget gate and recommend a positive
    initial bias; with bias → ∞ the cell behaves like the original LSTM of Hochreiter &
    Schmidhuber (1997), which had no forget gate. Our default 5 gives σ(5) ≈ 0.993 per step.
    torch keeps two bias vectors per layer (input and hidden): the forget part of
    ``bias_ih`` is set to ``bias`` and that of ``bias_hh`` to 0, so their sum is ``bias``.

    Raises:
        ConfigError: the module contains no ``nn.LSTM``.
    """
    lstms = [m for m in module.modules() if isinstance(m, nn.LSTM)]
    if not lstms:
        raise ConfigError("forget_bias_ needs a module containing an nn.LSTM (the forget gate is an LSTM's).")
    with torch.no_grad():
        for m in lstms:
            for name, p in m.named_parameters():
                if name.startswith(("bias_ih", "bias_hh")):
                    h = p.shape[0] // 4  # gate order in torch: input, forget, cell, output
                    p[h : 2 * h].fill_(bias if name.startswith("bias_ih") else 0.0)
    return module


def glorot_(module: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot/Xavier normal weights (``nn.init.xavier_normal_``), biases zero, in place."""
    return _fill_weights(module, "glorot_", lambda m, n, w: nn.init.xavier_normal_(w, generator=generator))


def glorot_standard_(module: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot & Bengio's (2010, eq. 1) "standard" init: W ~ U[−1/√N, 1/√N], biases zero, in place.

    The heuristic they show to shrink back-propagated gradients layer by layer.
    """
    return _fill_weights(
        module,
        "glorot_standard_",
        lambda m, n, w: nn.init.uniform_(
            w, -1.0 / math.sqrt(w.shape[1]), 1.0 / math.sqrt(w.shape[1]), generator=generator
        ),
    )


def glorot_normalized_(module: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot & Bengio's (2010, eq. 16) "normalized" init, ``nn.init.xavier_uniform_``, biases zero, in place.

    W ~ U[−√6/√(N_in + N_out), √6/√(N_in + N_out)].
    """
    return _fill_weights(module, "glorot_normalized_", lambda m, n, w: nn.init.xavier_uniform_(w, generator=generator))


def he_(module: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """He/Kaiming normal weights for ReLU (``nn.init.kaiming_normal_``, fan-in), biases zero, in place."""
    return _fill_weights(
        module, "he_", lambda m, n, w: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=generator)
    )


INITS: dict[str, Callable[..., nn.Module]] = {
    "forget_bias": forget_bias_,
    "glorot": glorot_,
    "he": he_,
    "identity_recurrent": identity_recurrent_,
    "kumar": kumar_,
    "orthogonal": orthogonal_,
    "yilmaz_poli": yilmaz_poli_,
}


def init_(module: nn.Module, name: str | None, activation: str = "sigmoid") -> nn.Module:
    """Apply an initialization by registry name ("default" or None keeps torch's own).

    Raises:
        ConfigError: an unknown name.
    """
    if name in (None, "default"):
        return module
    _checks.choice(name, "init", "init_", (*INITS, "default"))
    if name == "kumar":
        return kumar_(module, activation)
    return INITS[name](module)
