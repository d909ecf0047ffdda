"""Remedies for vanishing and exploding gradients, and their registry.

- :mod:`~gradwatch.remedies.clipping` — clip by norm/value, adaptive (AGC), AutoClip.
- :mod:`~gradwatch.remedies.spike` — spike control: skip a step on a ‖g‖/loss z-score
  spike (:class:`~gradwatch.remedies.spike.SkipStepOnSpike`), ZClip.
- :mod:`~gradwatch.remedies.regularizer` — Pascanu et al.'s Ω.
- :mod:`~gradwatch.remedies.flossing` — gradient flossing (Engelken 2023): the recurrent
  Lyapunov exponents along the training trajectory, and Σλ_i² as a loss.
- :mod:`~gradwatch.remedies.init` — Kumar, Yilmaz & Poli, orthogonal, IRNN, Glorot, He.
- :mod:`~gradwatch.remedies.optim` — sign-SGD; Rprop is ``torch.optim.Rprop``.
- :mod:`~gradwatch.remedies.pretrain` — RBMs (CD-k, PCD) and greedy DBN pre-training.
- :mod:`~gradwatch.remedies.hierarchy` — Schmidhuber's history compressor (automatizer + chunker).
- :mod:`~gradwatch.remedies.search` — random search and a genetic algorithm (vmapped populations).
- architecture remedies (batch/layer norm, residual, ReLU family, LSTM/GRU) are knobs of
  :func:`gradwatch.models.mlp` and :func:`gradwatch.models.rnn`.
- :mod:`~gradwatch.remedies.registry` — every remedy by name (the names the monitor's
  verdict advises) with how to apply it: :func:`available`, :func:`get`, and for the runner
  ``registry.build`` (per-step remedies chained into a :class:`StepRemedy`) and
  ``registry.spec_fields`` (architecture/init/optimizer remedies as ``Spec`` fields).
"""

from gradwatch.remedies import (
    clipping,
    flossing,
    hierarchy,
    init,
    optim,
    pretrain,
    registry,
    regularizer,
    search,
    spike,
)
from gradwatch.remedies.registry import KINDS, Remedy, StepRemedy, available, get

__all__ = [
    "KINDS",
    "Remedy",
    "StepRemedy",
    "available",
    "clipping",
    "flossing",
    "get",
    "hierarchy",
    "init",
    "optim",
    "pretrain",
    "registry",
    "regularizer",
    "search",
    "spike",
]
