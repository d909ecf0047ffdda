"""Configurable models to apply remedies to (see :mod:`gradwatch.models.core`)."""

from gradwatch.models.core import ACTIVATIONS, MLP, NORMS, RNN_KINDS, RecurrentNet, SimpleRNNCell, mlp, rnn

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "RNN_KINDS", "RecurrentNet", "SimpleRNNCell", "mlp", "rnn"]
