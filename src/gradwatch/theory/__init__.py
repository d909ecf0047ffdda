"""The article's models, computed exactly: no training loops here.

- :mod:`~gradwatch.theory.rnn` — Jacobian products and gradient terms of RNNs, note 3.
- :mod:`~gradwatch.theory.doya` — Doya's one-neuron network.
- :mod:`~gradwatch.theory.landscape` — the wall in the loss landscape.
- :mod:`~gradwatch.theory.spectrum` — Jacobian spectra and Lyapunov exponents of any cell.
"""

from gradwatch.theory import doya, landscape, rnn, spectrum

__all__ = ["doya", "landscape", "rnn", "spectrum"]
