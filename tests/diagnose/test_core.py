"""Scoring runs, choosing the clip threshold and the recommendation, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradwatch.diagnose import Trial, clip_threshold, recommend, score
from gradwatch.errors import ConfigError


def _trial(label: str, losses: list[float], status: str = "healthy", remedy: str | None = "x") -> Trial:
    final, se, start, diverged = score(losses)
    return Trial(label, remedy, {}, len(losses), losses, status, final, se, start, diverged, None, 0.0)


def test_score_is_the_mean_of_the_last_fifth_with_its_standard_error() -> None:
    losses = [5.0, 4.0, 3.0, 2.0, 1.0, 1.2, 0.8, 1.1, 0.9, 1.0]  # a fifth = 2 steps
    final, se, start, diverged = score(losses)
    assert final == pytest.approx(0.95) and start == pytest.approx(4.5)
    assert se == pytest.approx(np.std([0.9, 1.0], ddof=1) / math.sqrt(2))
    assert diverged is None


def test_a_nan_anywhere_is_divergence_never_a_final_loss() -> None:
    final, se, start, diverged = score([2.0, 1.0, float("inf"), 0.5, 0.4])
    assert math.isnan(final) and math.isnan(se) and diverged == 2 and start == 2.0
    assert score([])[0] != score([])[0]  # NaN: nothing measured


def test_recommendation_needs_twice_the_uncertainty() -> None:
    plain = _trial("as written", [3.0] * 8 + [2.0, 2.2], status="exploding", remedy=None)
    repeat = _trial("as written (repeat)", [3.0] * 8 + [2.0, 2.2], status="exploding", remedy=None)
    good = _trial("lr×0.3", [3.0] * 8 + [1.0, 1.2])
    small = _trial("agc", [3.0] * 8 + [2.05, 2.1])
    rec = recommend(plain, repeat, [small, good])
    assert rec["label"] == "lr×0.3" and rec["improvement"] == pytest.approx(1.0)
    se = np.std([2.0, 2.2], ddof=1) / math.sqrt(2)
    assert rec["uncertainty"] == pytest.approx(math.sqrt(2) * se)
    assert rec["relative"] == pytest.approx(1.0 / 2.1)
    rec = recommend(plain, repeat, [small])
    assert rec["label"] is None and "beat the noise" in rec["sentence"]


def test_run_to_run_noise_counts_in_the_uncertainty() -> None:
    plain = _trial("as written", [3.0, 3.0, 3.0, 3.0, 2.0], status="exploding", remedy=None)
    repeat = _trial("as written (repeat)", [3.0, 3.0, 3.0, 3.0, 1.5], status="exploding", remedy=None)
    cand = _trial("lr×0.1", [3.0, 3.0, 3.0, 3.0, 1.2])
    rec = recommend(plain, repeat, [cand])
    assert rec["uncertainty"] == pytest.approx(0.5) and rec["label"] is None  # 0.8 < 2 × 0.5


def test_diverged_or_worse_runs_never_win() -> None:
    plain = _trial("as written", [3.0, 2.0, float("nan"), 1.0, 1.0], status="nonfinite", remedy=None)
    diverged = _trial("lr×0.3", [3.0, float("nan"), 1.0, 0.1, 0.1], status="nonfinite")
    fine = _trial("clip", [3.0, 2.5, 2.4, 2.3, 2.2])
    rec = recommend(plain, None, [diverged, fine])
    assert rec["label"] == "clip" and "diverged at step 2" in rec["sentence"]
    healthy_plain = _trial("as written", [3.0, 2.0, 1.0, 1.0, 1.0], remedy=None)
    worse = _trial("relu", [3.0, 0.5, 0.1, 0.1, 0.1], status="vanishing")
    assert recommend(healthy_plain, None, [worse])["label"] is None


def test_clip_threshold_is_the_norm_before_the_first_jump() -> None:
    norms = np.array([0.2, 0.25, 0.22, 19.0, 30.0, 25.0])
    assert clip_threshold(norms) == pytest.approx(np.median([0.2, 0.25, 0.22]))
    steady = np.linspace(1.0, 2.0, 11)  # no jump: AutoClip's 10th percentile
    assert clip_threshold(steady) == pytest.approx(np.percentile(steady, 10))
    assert math.isnan(clip_threshold(np.array([np.nan, np.inf])))
    assert clip_threshold(np.array([0.3, 0.3, np.nan, 1.0])) == pytest.approx(0.3)  # a NaN is a jump


def test_bad_arguments_name_the_value(tmp_path) -> None:
    from gradwatch.diagnose import diagnose

    with pytest.raises(ConfigError, match=r"no such script 'nope\.py'"):
        diagnose("nope.py")
    script = tmp_path / "t.py"
    script.write_text("")
    with pytest.raises(ConfigError, match="steps must be a positive integer, got 0"):
        diagnose(script, steps=0)
    with pytest.raises(ConfigError, match="seconds must be a positive number, got nan"):
        diagnose(script, seconds=float("nan"))
