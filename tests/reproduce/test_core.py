"""Claims as data: every criterion's sentence is generated from the thresholds its check reads."""

import math
import string

import pytest

from gradwatch.reproduce import CLAIMS, Criterion
from gradwatch.reproduce.core import Context, format_threshold


def _other(value: float) -> float:
    return value * 1.7 + 0.9  # a different number whatever the format (%, g, int); no threshold is −9/7


@pytest.mark.parametrize("claim_id", list(CLAIMS))
def test_criterion_sentence_states_every_threshold_and_follows_it(claim_id):
    crit = CLAIMS[claim_id].criterion
    fields = {name for _, name, _, _ in string.Formatter().parse(crit.template) if name}
    assert fields == set(crit.thresholds), "every threshold is stated, every stated number is a threshold"
    sentence = crit.sentence
    assert "{" not in sentence and sentence.strip()
    for name, value in crit.thresholds.items():
        changed = crit.replace(**{name: _other(value)}).sentence
        assert changed != sentence, f"changing {name} must change the sentence"
        spec = next(s for _, n, s, _ in string.Formatter().parse(crit.template) if n == name)
        shown = format(value, spec) if spec else format_threshold(value)
        assert shown in sentence, (name, shown, sentence)


def _run(claim_id, **thresholds):
    claim = CLAIMS[claim_id]
    return claim.experiment(Context("quick", claim.criterion.replace(**thresholds)))


@pytest.mark.parametrize(
    ("claim_id", "impossible"),
    [
        ("doya-bistability", {"n_inside": 2}),
        ("loss-wall", {"spike": 1e12}),
        ("loss-wall", {"jump": 0.6}),
        ("product-spectra", {"relative_tolerance": 1e-6}),
        ("amp-loss-scaling", {"max_relative_error": 1e-9}),
    ],
)
def test_the_check_reads_the_thresholds_the_sentence_states(claim_id, impossible):
    assert _run(claim_id).passed
    assert not _run(claim_id, **impossible).passed


def test_a_criterion_rejects_unstated_or_missing_thresholds():
    with pytest.raises(ValueError, match="thresholds the sentence does not state"):
        Criterion("error below 5 %", {"max_error": 0.05})
    with pytest.raises(ValueError, match="fields without a threshold"):
        Criterion("error below {max_error}")
    with pytest.raises(KeyError, match="unknown threshold"):
        Criterion("error below {max_error}", {"max_error": 0.05}).replace(min_error=0.1)


def test_thresholds_print_plainly():
    assert [format_threshold(v) for v in (0.1, 1000, 1e-9, -2.5, 3.0)] == ["0.1", "1000", "1e-9", "-2.5", "3"]
    assert Criterion("{a:.0%} and {b}", {"a": 0.05, "b": math.pi}).sentence == "5% and 3.14159"
