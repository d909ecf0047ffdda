"""Generated word-level text: a Zipfian vocabulary with Markov (class-bigram) structure.

Language-model experiments need text whose statistics look like words — a long-tailed
vocabulary, frequent words that are short, and a next word that depends on the current
one — but nothing here may be downloaded. :func:`markov_text` builds such a source from a
seed, as a class-based bigram model (Brown et al. 1992):

- word ``i`` (rank ``i``; rank 0 is the most frequent) has the Zipf weight
  ``z_i ∝ (i + 1)^(−s)`` (Zipf 1935) and belongs to class ``c(i) = i mod C`` (so every
  class has a few frequent words and a long tail);
- the next class follows a doubly stochastic C × C matrix — a mixture of ``branching``
  random permutations with weights ∝ 1, 1/2, 1/3, ..., and with probability ``smoothing``
  a uniformly drawn class — so the classes' stationary distribution is uniform;
- within its class, the next word is drawn with probability ∝ z.

Hence ``P(j | i) = Q[c(i), c(j)] · w_j`` with ``w_j = z_j / Σ_{c(k)=c(j)} z_k``, and the
stationary distribution of words is ``π_j = w_j / C``. An LM can learn the structure:
the source's entropy rate (:attr:`MarkovText.entropy_rate`, exact, nats per token) is well
below the entropy of π (:attr:`MarkovText.unigram_entropy`), so a model's cross-entropy
falls from ≈ ln V toward the entropy rate as it learns.

Example:
    >>> from gradwatch.tasks.text import batchify, markov_text
    >>> text = markov_text(2000, seed=0)
    >>> ids = text.sample(10_000, seed=1)
    >>> batchify(ids, 20).shape
    torch.Size([500, 20])
    >>> bool(text.entropy_rate < text.unigram_entropy < np.log(2000))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradwatch import _checks
from gradwatch.errors import out_of_range

__all__ = ["MarkovText", "batchify", "markov_text"]

_CONSONANTS = "bdfghklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class MarkovText:
    """A seeded word-level class-bigram source (see the module docstring for the formula).

    Attributes:
        words: the vocabulary, most frequent first (pseudo-words; frequent words are short).
        word_class: int64 (V,): c(i), the class of each word.
        class_next: float64 (C, C): Q, the next-class probabilities (doubly stochastic).
        within: float64 (V,): w, each word's probability within its class.
        stationary: float64 (V,): π, the words' stationary distribution (= w / C).
        entropy_rate: Σ_i π_i H(P(· | i)), nats per token (exact).
        unigram_entropy: H(π), nats: the best cross-entropy without context.
    """

    words: tuple[str, ...]
    word_class: np.ndarray
    class_next: np.ndarray
    within: np.ndarray
    stationary: np.ndarray
    entropy_rate: float
    unigram_entropy: float

    @property
    def vocab_size(self) -> int:
        """V, the number of words."""
        return len(self.words)

    def next_word_probs(self, word: int) -> np.ndarray:
        """P(· | word) as a dense float64 vector of length V."""
        return self.class_next[self.word_class[word]][self.word_class] * self.within

    def sample(self, n_tokens: int, *, seed: int = 0, n_streams: int = 64) -> torch.Tensor:
        """Draw ``n_tokens`` token ids: ``n_streams`` independent chains, concatenated.

        Each chain starts from π and runs ⌈n_tokens / n_streams⌉ steps (the chains are
        advanced together, so sampling costs that many vectorized steps, not n_tokens).

        Returns:
            int64 tensor of shape (n_tokens,).

        Raises:
            ConfigError: ``n_tokens`` or ``n_streams`` < 1.
        """
        n = _checks.positive_int(n_tokens, "n_tokens", "MarkovText.sample")
        k = _checks.positive_int(n_streams, "n_streams", "MarkovText.sample")
        rng = np.random.default_rng(seed)
        length = -(-n // k)
        C = self.class_next.shape[0]
        members = [np.flatnonzero(self.word_class == c) for c in range(C)]
        width = max(m.size for m in members)
        # per class: its words and their cumulative within-class probabilities, padded to one width
        table = np.zeros((C, width), dtype=np.int64)
        cum = np.full((C, width), 2.0)
        for k_class, m in enumerate(members):
            table[k_class, : m.size] = m
            cum[k_class, : m.size] = np.cumsum(self.within[m])
        cum_next = np.cumsum(self.class_next, axis=1)
        out = np.empty((k, length), dtype=np.int64)
        c = rng.integers(0, C, size=k)
        for t in range(length):
            j = (rng.random(k)[:, None] > cum[c]).sum(axis=1).clip(max=width - 1)
            w = table[c, j]
            out[:, t] = w
            c = (rng.random(k)[:, None] > cum_next[c]).sum(axis=1).clip(max=C - 1)
        return torch.from_numpy(out.reshape(-1)[:n].copy())

    def decode(self, ids: torch.Tensor | np.ndarray | list[int]) -> str:
        """The words of ``ids``, joined by spaces."""
        return " ".join(self.words[int(i)] for i in np.asarray(ids).reshape(-1))


def _words(n: int, rng: np.random.Generator) -> tuple[str, ...]:
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    syllables = [syllables[i] for i in rng.permutation(len(syllables))]
    base = len(syllables)
    words = []
    for i in range(n):
        # bijective base-`base` numbering: ranks 0..base-1 get one syllable, the next base² two, ...
        parts, m = [], i + 1
        while m > 0:
            m, r = divmod(m - 1, base)
            parts.append(syllables[r])
        words.append("".join(parts))
    return tuple(words)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def markov_text(
    vocab_size: int = 2000,
    *,
    n_classes: int | None = None,
    branching: int = 3,
    zipf_exponent: float = 1.0,
    smoothing: float = 0.05,
    seed: int = 0,
) -> MarkovText:
    """Build a seeded Zipfian class-bigram word source (see the module docstring).

    Args:
        vocab_size: V, number of words (≥ 2).
        n_classes: C, number of word classes (1 ≤ C ≤ V); default min(32, V).
        branching: random permutations mixed into the class transitions (≥ 1): each class
            is followed mostly by ``branching`` others.
        zipf_exponent: s > 0 in z_i ∝ (i + 1)^(−s) (natural text: s ≈ 1).
        smoothing: α ∈ [0, 1]: probability that the next class is drawn uniformly.
        seed: the source's seed (transitions and spelling).

    Returns:
        A :class:`MarkovText`.

    Raises:
        ConfigError: a parameter outside its range.
    """
    owner = "markov_text"
    V = _checks.positive_int(vocab_size, "vocab_size", owner, minimum=2)
    C = min(32, V) if n_classes is None else _checks.positive_int(n_classes, "n_classes", owner)
    C = int(_checks.interval(C, "n_classes", owner, 1, V))
    k = _checks.positive_int(branching, "branching", owner)
    s = _checks.interval(zipf_exponent, "zipf_exponent", owner, 0, low_open=True)
    alpha = _checks.interval(smoothing, "smoothing", owner, 0, 1)
    rng = np.random.default_rng(seed)
    zipf = np.arange(1, V + 1, dtype=np.float64) ** (-s)
    word_class = np.arange(V, dtype=np.int64) % C
    within = zipf / np.bincount(word_class, weights=zipf, minlength=C)[word_class]
    weights = 1.0 / np.arange(1, k + 1)
    weights /= weights.sum()
    # a mixture of permutation matrices is doubly stochastic (Birkhoff): uniform class stationary
    Q = np.full((C, C), alpha / C)
    for w in weights:
        Q[np.arange(C), rng.permutation(C)] += (1 - alpha) * w
    pi = within / C
    h_within = np.array([_entropy(within[word_class == c]) for c in range(C)])
    entropy_rate = float(np.mean([_entropy(Q[c]) + Q[c] @ h_within for c in range(C)]))
    return MarkovText(
        words=_words(V, rng),
        word_class=word_class,
        class_next=Q,
        within=within,
        stationary=pi,
        entropy_rate=entropy_rate,
        unigram_entropy=_entropy(pi),
    )


def batchify(tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` columns, time-major (as PyTorch's word LM example).

    Returns:
        (n_tokens // batch_size, batch_size); the tail that does not fill a row is dropped.

    Raises:
        ConfigError: ``batch_size`` < 1 or larger than the stream.
    """
    if tokens.dim() != 1:
        raise out_of_range("tokens", "batchify", "a 1-D tensor of token ids", f"shape {tuple(tokens.shape)}")
    B = _checks.positive_int(batch_size, "batch_size", "batchify")
    _checks.interval(B, "batch_size", "batchify", 1, tokens.numel())
    rows = tokens.numel() // B
    return tokens[: rows * B].view(B, rows).t().contiguous()
