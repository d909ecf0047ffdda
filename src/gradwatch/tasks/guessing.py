"""The latch and parity problems of Hochreiter & Schmidhuber's weight-guessing experiments (1996).

Fixed training sets (not per-step generators): a guessed weight vector solves a problem
when it classifies every sequence of the set, as in the report.
"""

from __future__ import annotations

import math

import torch

from gradwatch import _checks

__all__ = ["latch_sequences", "parity_sequences"]


def latch_sequences(n: int, length: int, *, seed: int = 0, noise_var: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Latch, variant II: the class (±1) is the first input; the other inputs are Gaussian noise.

    Args:
        n: number of sequences; length: T.
        seed: seeds the draw.
        noise_var: the variance of the noise inputs (the report's 0.2).

    Returns:
        (inputs (n, T), targets (n,) in {−1, +1}).
    """
    N = _checks.positive_int(n, "n", "latch_sequences")
    T = _checks.positive_int(length, "length", "latch_sequences")
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 2, (N,), generator=g).float() * 2 - 1
    x = torch.randn(N, T, generator=g) * math.sqrt(noise_var)
    x[:, 0] = cls
    return x, cls


def parity_sequences(n: int, min_length: int, max_length: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free parity: n ±1 sequences of one length drawn from min_length..max_length.

    Returns:
        (inputs (n, T), targets (n,): 1 when the number of +1s is odd, else 0).
    """
    N = _checks.positive_int(n, "n", "parity_sequences")
    lo = _checks.positive_int(min_length, "min_length", "parity_sequences")
    hi = _checks.positive_int(max_length, "max_length", "parity_sequences", minimum=lo)
    g = torch.Generator().manual_seed(seed)
    T = int(torch.randint(lo, hi + 1, (1,), generator=g))
    x = torch.randint(0, 2, (N, T), generator=g).float() * 2 - 1
    return x, ((x > 0).sum(dim=1) % 2).float()
