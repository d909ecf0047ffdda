"""Generated text: the class-bigram source's formulas against dense computations and samples."""

import doctest

import numpy as np
import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.tasks import text as text_module
from gradwatch.tasks.text import batchify, markov_text


def dense_transition(t):
    return np.stack([t.next_word_probs(i) for i in range(t.vocab_size)])


def test_formulas_match_a_dense_transition_matrix():
    t = markov_text(60, n_classes=6, branching=2, smoothing=0.1, seed=3)
    P = dense_transition(t)
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert np.allclose(t.class_next.sum(axis=0), 1.0) and np.allclose(t.class_next.sum(axis=1), 1.0)
    pi = t.stationary
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(pi @ P, pi, atol=1e-14)  # stationary
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(P), 0.0)
    assert t.entropy_rate == pytest.approx(float(-(pi @ plogp.sum(axis=1))), rel=1e-12)
    assert t.unigram_entropy == pytest.approx(float(-(pi * np.log(pi)).sum()), rel=1e-12)


def test_samples_follow_the_source():
    t = markov_text(200, n_classes=8, seed=0)
    ids = t.sample(200_000, seed=1).numpy()
    assert ids.dtype == np.int64 and ids.shape == (200_000,) and ids.min() >= 0 and ids.max() < 200
    unigram = np.bincount(ids, minlength=200) / ids.size
    assert 0.5 * np.abs(unigram - t.stationary).sum() < 0.02
    # bigrams within each stream (streams are concatenated: skip the seams)
    length = -(-ids.size // 64)
    pairs = np.stack([ids[:-1], ids[1:]], axis=1)[(np.arange(1, ids.size) % length) != 0]
    for w in (0, 1, 7):
        nxt = pairs[pairs[:, 0] == w, 1]
        emp = np.bincount(nxt, minlength=200) / nxt.size
        assert 0.5 * np.abs(emp - t.next_word_probs(w)).sum() < 0.08, w
    # the true model's cross-entropy on the sample (an unbiased estimate) ≈ the exact entropy rate
    P = dense_transition(t)
    assert float(-np.log(P[pairs[:, 0], pairs[:, 1]]).mean()) == pytest.approx(t.entropy_rate, abs=0.01)


def test_statistics_look_like_words():
    t = markov_text(2000, seed=0)
    # learnable: context is worth more than a nat, and frequencies beat uniform
    assert t.entropy_rate < t.unigram_entropy - 1.0 < np.log(2000) - 1.0
    ranks = np.arange(1, 2001)
    slope = np.polyfit(np.log(ranks), np.log(np.sort(t.stationary)[::-1]), 1)[0]
    assert -1.3 < slope < -0.8  # Zipf's law, s = 1
    assert len(set(t.words)) == 2000
    assert len(t.words[0]) == 2 and len(t.words[-1]) == 4  # frequent words are short
    assert t.decode([0, 1]) == f"{t.words[0]} {t.words[1]}"


def test_determinism():
    a, b = markov_text(300, seed=5), markov_text(300, seed=5)
    assert a.words == b.words and np.array_equal(a.class_next, b.class_next)
    assert torch.equal(a.sample(500, seed=2), b.sample(500, seed=2))
    assert not torch.equal(a.sample(500, seed=2), a.sample(500, seed=3))
    assert not np.array_equal(a.class_next, markov_text(300, seed=6).class_next)


def test_batchify_is_the_word_language_model_layout():
    tokens = torch.arange(23)
    data = batchify(tokens, 4)
    assert data.shape == (5, 4)
    for j in range(4):  # column j is the j-th contiguous fifth of the stream
        assert torch.equal(data[:, j], tokens[5 * j : 5 * j + 5])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: markov_text(1), "'vocab_size' parameter of markov_text"),
        (lambda: markov_text(10, n_classes=11), "'n_classes' parameter of markov_text"),
        (lambda: markov_text(10, branching=0), "'branching' parameter of markov_text"),
        (lambda: markov_text(10, zipf_exponent=0.0), "'zipf_exponent' parameter of markov_text"),
        (lambda: markov_text(10, smoothing=1.5), "'smoothing' parameter of markov_text"),
        (lambda: markov_text(10).sample(0), "'n_tokens' parameter of MarkovText.sample"),
        (lambda: batchify(torch.zeros(2, 3, dtype=torch.long), 2), "'tokens' parameter of batchify"),
        (lambda: batchify(torch.arange(3), 4), "'batch_size' parameter of batchify must be in \\[1, 3\\]"),
    ],
)
def test_bad_parameters(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_docstring_example_runs():
    assert doctest.testmod(text_module).failed == 0
