"""`gradwatch run` under hostile options (issue 15), property-based.

Every combination ends in exit 0 with a result whose numbers are honest (a diverged or
non-finite run is never a success and has no error rate), or in exit 2 with one line that
names the parameter and what is valid; never a traceback, and a refused size is refused
at once, before any training.
"""

from __future__ import annotations

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests._robustness import PROPERTY, assert_usage_error


def _sizes(small: int) -> st.SearchStrategy[int]:
    # small and valid, not positive, or astronomically large (over any limit): never a size
    # that is valid and slow, which would test the machine rather than the program
    return st.one_of(st.integers(1, small), st.integers(-3, 0), st.integers(10**10, 10**40))


HOSTILE = st.fixed_dictionaries(
    {
        "--task": st.sampled_from(["adding", "temporal_order", "latching", "digits_mlp", "copying", ""]),
        "--length": st.one_of(st.integers(10, 14), st.integers(-2, 0), st.integers(10**10, 10**40)),
        "--model": st.sampled_from(["rnn", "lstm", "gru", "mlp", "transformer"]),
        "--hidden": _sizes(8),
        "--layers": _sizes(2),
        "--lr": st.one_of(st.floats(1e-4, 1.0), st.sampled_from([1e30, -1.0, 0.0, math.nan, math.inf, -math.inf])),
        "--steps": _sizes(3),
        "--eval-every": _sizes(2),
        "--batch-size": _sizes(8),
        "--seed": st.one_of(st.integers(0, 3), st.sampled_from([-1, 2**32, 2**64, -(2**70)])),
        "--device": st.sampled_from(["cpu", "banana", "cuda", "cuda:7", "meta", "mps", ""]),
        "--activation": st.sampled_from(["tanh", "relu", "sigmoid", "swish"]),
        "--remedy": st.sampled_from(
            [
                None,
                "clip_grad_norm:max_norm=0.5",
                "clip_grad_norm:max_norm=nan",
                "clip_grad_norm:max_norm=-1",
                "clip_grad_norm:max_norm=x",
                "clip",
                "init:kumar",
                "random_search",
            ]
        ),
    }
)
# valid options (small sizes; any learning rate, 1e30 included): the exit-0 branch, and NaN
# scoring in it, gets examples of its own
VALID = st.sampled_from(
    [("adding", "rnn"), ("adding", "lstm"), ("temporal_order", "gru"), ("latching", "rnn"), ("digits_mlp", "mlp")]
).flatmap(
    lambda task_model: st.fixed_dictionaries(
        {
            "--task": st.just(task_model[0]),
            "--model": st.just(task_model[1]),
            "--length": st.integers(10, 12),
            "--hidden": st.integers(1, 8),
            "--layers": st.integers(1, 2),
            "--lr": st.one_of(st.floats(1e-4, 10.0), st.just(1e30)),
            "--steps": st.integers(1, 3),
            "--eval-every": st.integers(1, 2),
            "--batch-size": st.integers(1, 8),
            "--seed": st.integers(0, 2**32 - 1),
            "--activation": st.sampled_from(["tanh", "relu", "sigmoid"]),
            "--remedy": st.sampled_from([None, "clip_grad_norm:max_norm=0.5", "clip_grad_value:clip_value=0.1"]),
        }
    )
)
# words one of which a usage error must contain: the option or the Spec field it sets
NAMES = {
    "task",
    "length",
    "model",
    "hidden",
    "layers",
    "lr",
    "steps",
    "eval_every",
    "eval-every",
    "batch_size",
    "batch-size",
    "seed",
    "device",
    "activation",
    "remedy",
    "remedies",
    "Remedy",
    "max_norm",
    "init",
}


def _args(options: dict[str, object]) -> list[str]:
    args = []
    for key, value in options.items():
        if value is not None:
            args += [key, str(value)]
    return args


def _check_honest(d: dict, steps: int) -> None:
    """A result's numbers: a diverged run has no error rate and no success; a success has a real error."""
    assert d["spec"]["steps"] == steps
    final = d["final_error"]
    if d["diverged"]:
        assert final == "nan" and d["success"] is False  # unknown, never a number
    else:
        assert d["steps"][-1] == steps
    if d["success"]:
        assert isinstance(final, float) and 0.0 <= final < 1.0 and not d["diverged"]
    assert all(e == "nan" or 0.0 <= e <= 1.0 for e in d["error"])
    assert (final == "nan") == (d["diverged"] or d["error"][-1] == "nan")


@settings(PROPERTY, max_examples=15)
@given(options=VALID)
def test_valid_options_exit_0_with_an_honest_result(cli, options):
    r = cli("run", *_args(options), "--json")
    assert r.code == 0, r.err
    _check_honest(r.json(), options["--steps"])


@settings(PROPERTY, max_examples=40)
@given(options=HOSTILE)
def test_hostile_options_exit_0_or_2_with_one_line_naming_the_parameter(cli, options):
    t0 = time.perf_counter()
    r = cli("run", *_args(options), "--json")
    elapsed = time.perf_counter() - t0
    if r.code == 0:
        _check_honest(r.json(), int(options["--steps"]))
    else:
        assert_usage_error(r, names=NAMES)
        assert elapsed < 15, f"refused only after {elapsed:.0f} s"


def test_the_issue_examples_exit_2_with_one_line(cli):
    cases = [
        (["--seed", "-1"], ["'seed'", "[0, 4294967295]", "-1"]),
        (["--device", "banana"], ["'device'", "'cpu'", "'banana'"]),
        (["--device", "cuda:99"], ["'device'", "'cuda:99'"]),
        (["--hidden", "100000"], ["'hidden'", "<=", "GiB", "--no-limits"]),
        (["--steps", "100000000000"], ["'steps'", "<=", "--no-limits"]),
        (["--length", "100000000"], ["'length'", "<=", "--no-limits"]),
    ]
    for args, words in cases:
        assert_usage_error(cli("run", *args), *words)


def test_a_diverged_run_is_a_failure_with_no_error_rate(cli, tmp_path):
    """--lr 1e30: the loss goes to inf; the held-out error is unknown (NaN), never 0 % (issue 15)."""
    args = ["--length", "10", "--hidden", "8", "--steps", "20", "--eval-every", "1", "--lr", "1e30"]
    r = cli("run", *args, "--json", "--out", str(tmp_path / "store"))
    assert r.code == 0, r.err
    d = r.json()
    assert d["diverged"] is True and d["success"] is False and d["final_error"] == "nan"
    assert "nan" in d["error"] or d["error"] == []
    r = cli("run", *args)
    assert r.code == 0 and "final error unknown (NaN) (diverged)" in r.out
    r = cli("report", str(tmp_path / "store"))
    assert r.code == 0, r.err
    page = (tmp_path / "store" / "index.html").read_text(encoding="utf-8")
    assert (
        '<td class="num">0/1</td><td class="num">—</td><td class="num">1</td>' in page
    )  # not solved, no mean error, one diverged
    assert "0.000" not in page


def test_no_limits_lifts_the_limit(cli, monkeypatch):
    from gradwatch._limits import NO_LIMITS_ENV

    big = ["--steps", "100000", "--length", "500", "--json"]
    assert_usage_error(cli("run", *big), "'steps'")
    calls = []
    monkeypatch.setattr("gradwatch.cli.experiments.run", lambda spec, *a, **k: calls.append(k) or _stop())
    for extra, env in ((["--no-limits"], None), ([], "1")):
        if env is not None:
            monkeypatch.setenv(NO_LIMITS_ENV, env)
        r = cli("run", *big, *extra)
        assert r.code == 2 and "stopped before training" in r.err  # got past every check
    assert calls == [{"limits": False}, {"limits": True}]  # the flag is passed; the variable is read by run()


def _stop():
    from gradwatch.errors import ConfigError

    raise ConfigError("stopped before training")
