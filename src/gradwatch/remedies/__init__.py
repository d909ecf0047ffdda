"""Remedies for vanishing and exploding gradients, and their registry.

- :mod:`~gradwatch.remedies.clipping` — clip by norm/value, adaptive (AGC), AutoClip.
- :mod:`~gradwatch.remedies.regularizer` — Pascanu et al.'s Ω.
- :mod:`~gradwatch.remedies.init` — Kumar, Yilmaz & Poli, orthogonal, IRNN, Glorot, He.
- :mod:`~gradwatch.remedies.optim` — sign-SGD; Rprop is ``torch.optim.Rprop``.
- :mod:`~gradwatch.remedies.pretrain` — RBMs (CD-k, PCD) and greedy DBN pre-training.
- :mod:`~gradwatch.remedies.hierarchy` — Schmidhuber's history compressor (automatizer + chunker).
- :mod:`~gradwatch.remedies.search` — random search and a genetic algorithm (vmapped populations).
- architecture remedies (batch/layer norm, residual, ReLU family, LSTM/GRU) are knobs of
  :func:`gradwatch.models.mlp` and :func:`gradwatch.models.rnn`.

:func:`available` lists them by the names the monitor's verdict uses in its advice.
"""

from gradwatch.remedies import clipping, hierarchy, init, optim, pretrain, regularizer, search
from gradwatch.remedies.registry import KINDS, Remedy, available, get

__all__ = [
    "KINDS",
    "Remedy",
    "available",
    "clipping",
    "get",
    "hierarchy",
    "init",
    "optim",
    "pretrain",
    "regularizer",
    "search",
]
