"""`gradwatch lab ...` under hostile options (issue 15), property-based.

Every combination ends in exit 0 with a summary that satisfies the model's own invariants,
or in exit 2 with one line naming the parameter and what is valid; sizes over the memory or
time limits are refused at once, naming the parameter, the estimate and the limit.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwatch import _limits
from tests._robustness import PROPERTY, assert_usage_error

HUGE = st.integers(10**9, 10**40)  # over every limit, whatever the other sizes
NOT_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def _size(small: int, minimum: int = 1) -> tuple[st.SearchStrategy[int], st.SearchStrategy[int]]:
    """(valid and small, hostile: below the minimum or astronomically large)."""
    return st.integers(minimum, small), st.one_of(st.integers(minimum - 3, minimum - 1), HUGE)


def _real(low: float, high: float, *bad: float) -> tuple[st.SearchStrategy[float], st.SearchStrategy[float]]:
    return st.floats(low, high), st.one_of(NOT_FINITE, st.sampled_from(bad) if bad else NOT_FINITE)


SEED = st.integers(0, 2**32 - 1), st.sampled_from([-1, 2**32, 2**70])
# option → (valid values, hostile values); valid sizes stay small, so an accepted example is quick
OPTIONS = {
    "rnn": {
        "--hidden": _size(8),
        "--gamma": _real(0.1, 3.0, 0.0, -1.0),
        "--scale": (st.floats(1.0, 1e6), st.just(None)),  # multiplies gamma: bounds that overflow to inf
        "--steps": _size(20),
        "--seed": SEED,
        "--n-input": _size(3),
    },
    "note3": {"--eps": _real(0.05, 2.0, 0.0, -1.0), "--c": _real(0.05, 1.0, 0.0, 1.5), "--n": _size(60)},
    "doya": {
        "--w": _real(3.0, 7.0),
        "--b": _real(-4.0, -1.0),
        "--b-min": _real(-3.2, -3.0),
        "--b-max": _real(-2.0, -1.8, -3.5),
        # a valid but tiny ε is slow by design (12 ms/ε): 1e-12 must be refused by the time limit
        "--eps": _real(0.05, 1.0, 0.0, -0.1, 1.5, 1e-12),
        "--steps": _size(200),
        "--far-x0": _real(0.0, 1.0, 1.5),
        "--delta": _real(1e-8, 1e-4, 0.0, -1.0),
    },
    "landscape": {
        "--w": _real(4.5, 6.0),
        "--x0": _real(0.3, 0.7, 2.0),
        "--target": _real(0.0, 1.0),
        "--b-min": _real(-3.2, -3.0),
        "--b-max": _real(-2.0, -1.8, -4.0),
        "--eps": _real(0.05, 1.0, 0.0),
        "--steps": _size(100),
    },
    "spectrum": {
        "--cell": (st.sampled_from(["rnn", "gru", "lstm", "linear"]), st.just("transformer")),
        "--hidden": _size(6),
        "--steps": _size(8),
        "--seed": SEED,
        "--input-size": _size(3),
        "--input-scale": _real(0.0, 2.0, -1.0),
        "--burn-in": _size(3, minimum=0),
    },
}


def _options(model: str, hostile: bool) -> st.SearchStrategy[dict]:
    """All valid, or each option valid or hostile (a hostile example mixes both)."""
    return st.fixed_dictionaries(
        {k: st.one_of(good, bad) if hostile else good for k, (good, bad) in OPTIONS[model].items()}
    )


def _args(options: dict) -> list[str]:
    options = dict(options)
    scale = options.pop("--scale", None)
    if scale is not None:
        options["--gamma"] *= scale
    return [str(v) for kv in options.items() for v in kv]


def _names(options: dict[str, object]) -> set[str]:
    """The ways a message may name an option: --b-min, b_min, b-min."""
    out = set()
    for key in options:
        bare = key.lstrip("-")
        out |= {key, bare, bare.replace("-", "_")}
    return out | {"n_max", "sizes"}


def _check_summary(model: str, d: dict, options: dict) -> None:
    """Each model's invariants, checked on what the command printed."""
    if model == "rnn":
        assert d["hidden"] == options["--hidden"] and len(d["term_norms"]) == d["steps"] == options["--steps"]
        err = d["autograd_rel_err"]
        gamma = options["--gamma"] * (options.get("--scale") or 1.0)
        assert err in ("nan", "inf") or err < 1e-6 or gamma > 3  # sums of huge terms round off
    elif model == "note3":
        assert len(d["norms"]) == options["--n"] and d["behaviour"] in ("vanishing", "exploding", "neutral")
    elif model == "doya":
        assert [f["b"] for f in d["folds"]] == sorted(f["b"] for f in d["folds"])
    elif model == "landscape":
        assert options["--b-min"] <= d["wall_b"] <= options["--b-max"]
    else:
        n = 2 * options["--hidden"] if options["--cell"] == "lstm" else options["--hidden"]
        assert d["state_size"] == n and len(d["lyapunov"]) == n


@pytest.mark.parametrize("model", sorted(OPTIONS))
def test_valid_options_exit_0_with_a_summary_that_holds(cli, model):
    @settings(PROPERTY, max_examples=8)
    @given(options=_options(model, hostile=False))
    def check(options):
        r = cli("lab", model, *_args(options), "--json")
        if model in ("doya", "landscape") and r.code == 2:  # a b range may hold no fold or no wall: said so
            assert_usage_error(r, names=_names(options))
            return
        assert r.code == 0, r.err
        _check_summary(model, r.json(), options)

    check()


@pytest.mark.parametrize("model", sorted(OPTIONS))
def test_hostile_options_exit_0_or_2_with_one_line(cli, model):
    @settings(PROPERTY, max_examples=25)
    @given(options=_options(model, hostile=True))
    def check(options):
        t0 = time.perf_counter()
        r = cli("lab", model, *_args(options), "--json")
        elapsed = time.perf_counter() - t0
        if r.code == 0:
            _check_summary(model, r.json(), options)
        else:
            assert_usage_error(r, names=_names(options))
            assert elapsed < 10, f"refused only after {elapsed:.0f} s"

    check()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["spectrum", "--hidden", "50000"], ["'hidden'", "lab spectrum", "TiB", "8 GiB", "--no-limits"]),
        (["rnn", "--steps", "100000000"], ["'steps'", "lab rnn", "<=", "--no-limits"]),
        (["note3", "--n", "100000000"], ["'n'", "lab note3", "GiB", "--no-limits"]),
        (["doya", "--steps", "100000000"], ["'steps'", "lab doya"]),
        (["doya", "--eps", "1e-9"], ["'eps'", "lab doya", ">="]),
        (["landscape", "--steps", "10000000"], ["'steps'", "lab landscape"]),
        (["landscape", "--target", "nan"], ["'target'", "finite", "nan"]),
        (["rnn", "--seed", "-1"], ["'seed'", "[0, 4294967295]"]),
        (["rnn", "--plot", "a.xyz"], ["'a.xyz'", ".png", ".xyz"]),
        (["spectrum", "--plot", "noextension"], ["'noextension'", ".png", "no extension"]),
    ],
)
def test_the_issue_examples_are_refused_at_once(cli, args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    assert_usage_error(cli("lab", *args), *words)
    assert time.perf_counter() - t0 < 5
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_plot_extension_picks_the_format(cli, tmp_path):
    r = cli("lab", "note3", "--n", "5", "--plot", str(tmp_path / "note3.svg"), "--json")
    assert r.code == 0, r.err
    assert (tmp_path / "note3.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_limits_name_the_easiest_parameter_and_lift(monkeypatch):
    """The refusal names the size whose cut is smallest, and the largest value that fits; the limits lift."""
    from gradwatch.errors import ConfigError
    from gradwatch.report import lab

    with pytest.raises(ConfigError, match=r"'hidden' parameter of lab spectrum must be <= (\d+) with") as info:
        lab.lab_spectrum(hidden=3000, steps=10)
    fit = int(info.value.args[0].split("<= ")[1].split(" ")[0])
    estimate = _limits.ESTIMATORS["lab spectrum"].estimate
    sizes = {"steps": 10, "input_size": 8, "burn_in": 0}
    ok, over = estimate(hidden=fit, **sizes), estimate(hidden=fit + 1, **sizes)
    limit = _limits.memory_limit()
    assert ok.memory <= limit and ok.seconds <= _limits.TIME_LIMIT
    assert over.memory > limit or over.seconds > _limits.TIME_LIMIT
    assert _limits.enforce("lab note3", {"n": 10**12}, limits=False).memory > limit
    monkeypatch.setenv(_limits.NO_LIMITS_ENV, "1")
    assert _limits.enforce("lab note3", {"n": 10**12}).memory > limit


def test_docs_list_every_limit():
    """docs/cli.md shows the table gradwatch._limits generates from the registered estimators."""
    from pathlib import Path

    import gradwatch.experiments.spec
    import gradwatch.report.lab  # noqa: F401  (registers the lab's estimators)

    assert set(_limits.ESTIMATORS) == {"Spec", "lab doya", "lab landscape", "lab note3", "lab rnn", "lab spectrum"}
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    start = page.index("<!-- limits-table:")
    table = page[page.index("\n", start) + 1 : page.index("<!-- end limits-table -->")].strip()
    assert table == _limits.markdown_table()
    assert f"{_limits.format_bytes(_limits.MEMORY_CAP)} of memory" in page
    assert f"{_limits.format_seconds(_limits.TIME_LIMIT)} of estimated time" in page
    assert _limits.NO_LIMITS_ENV in page and "--no-limits" in page
