"""Sweep files and specs under hostile TOML (issue 15), property-based.

Any TOML document either loads into valid specs whose sizes pass the limits check, or is
refused with one ConfigError line naming the key and what is valid: never another
exception, never a default run nobody asked for, never a value of the wrong type kept.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwatch.errors import ConfigError
from gradwatch.experiments import Spec, load_sweep
from gradwatch.experiments.spec import check_size
from tests._robustness import PROPERTY, VALID_WORDS, assert_usage_error

FIELDS = [f for f in Spec.__dataclass_fields__]
VALID = {
    "task": st.sampled_from(["adding", "temporal_order", "latching"]),
    "length": st.integers(10, 20),
    "jitter": st.booleans(),
    "model": st.sampled_from(["rnn", "lstm", "gru"]),
    "activation": st.sampled_from(["tanh", "sigmoid", "relu"]),
    "hidden": st.integers(1, 64),
    "layers": st.integers(1, 3),
    "lr": st.floats(1e-5, 1.0),
    "momentum": st.floats(0.0, 0.99),
    "steps": st.integers(1, 1000),
    "batch_size": st.integers(1, 64),
    "eval_every": st.integers(1, 100),
    "seed": st.integers(0, 2**32 - 1),
    "device": st.just("cpu"),
    "optimizer": st.sampled_from(["sgd", "adam"]),
    "remedies": st.sampled_from([{}, {"clip_grad_norm": {"max_norm": 1.0}}, {"clip_grad_value": {}}]),
}
HOSTILE = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["yes", "clip_grad_norm", "1e20", "cuda", "banana"]),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["clip", "clip_grad_norm", "max_norm"]), st.floats(-1, 2) | st.text(max_size=2)),
)


def _toml(value: object) -> str:
    """A TOML literal for ``value`` (tomllib has no writer)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes and backslashes escaped, control characters (DEL too) as \\uXXXX."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@st.composite
def sweep_documents(draw: st.DrawFn) -> str:
    """A sweep file: [base] mostly valid with some hostile values or typos, maybe a [grid] and variants."""
    base = {k: draw(s) for k, s in VALID.items() if draw(st.booleans())}
    for key in draw(st.lists(st.sampled_from([*FIELDS, "lenght", "name"]), max_size=2)):
        base[key] = draw(HOSTILE)
    lines = ["[base]", *(f"{k} = {_toml(v)}" for k, v in base.items())] if base or draw(st.booleans()) else []
    if draw(st.booleans()):
        key = draw(st.sampled_from(["seed", "hidden", "lr", "jitter"]))
        values = draw(st.one_of(st.lists(VALID.get(key, HOSTILE), min_size=1, max_size=2), HOSTILE))
        lines += ["[grid]", f"{key} = {_toml(values)}"]
    for _ in range(draw(st.integers(0, 2))):
        lines += ["[[variant]]", f"name = {_toml(draw(st.text(max_size=3)))}"]
        if draw(st.booleans()):
            lines.append(f"{draw(st.sampled_from(FIELDS))} = {_toml(draw(HOSTILE))}")
    return "\n".join(lines) + "\n"


@settings(PROPERTY, max_examples=150)
@given(document=sweep_documents())
def test_a_sweep_file_loads_into_valid_specs_or_fails_with_one_line(tmp_path, document):
    path = tmp_path / "sweep.toml"
    path.write_text(document, encoding="utf-8")
    try:
        specs = load_sweep(path)
        for spec in specs:
            check_size(spec)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.endswith((".", ")")), message
        assert any(v in message for v in (*VALID_WORDS, "invalid TOML", "no task", "is empty", "unknown")), message
        return
    assert specs, "a sweep that loads has at least one run"
    for spec in specs:  # what loaded has the types a run needs: no "yes", no strings for numbers
        assert Spec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
        assert isinstance(spec.jitter, bool) and isinstance(spec.lr, (int, float)) and not isinstance(spec.lr, bool)
        assert isinstance(spec.seed, int) and 0 <= spec.seed < 2**32 and isinstance(spec.remedies, dict)
        assert "task" in document  # a task was asked for: never a default run nobody chose


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("", ["is empty", "task"]),
        ("# only a comment\n", ["is empty"]),
        ("[base]\nsteps = 10\n", ["no task", "[base]"]),
        ('[base]\ntask = "adding"\njitter = "yes"\n', ["'jitter'", "true or false", "'yes'"]),
        ('[base]\ntask = "adding"\nremedies = "clip_grad_norm"\n', ["'remedies'", "a table", "'clip_grad_norm'"]),
        ('[base]\ntask = "adding"\nremedies = {clip = 1.0}\n', ["'remedies'", "'clip_grad_norm'", "'clip'"]),
        ('[base]\ntask = "adding"\nremedies = {clip_grad_norm = 1.0}\n', ["'clip_grad_norm'", "mapping", "1.0"]),
        ('[base]\ntask = "adding"\nsteps = 1e20\n', ["'steps'", "integer", "1e+20"]),
        ('[base]\ntask = "adding"\nsteps = 9000000000000000000\n', ["'steps'", "<=", "--no-limits"]),
        ('[base]\ntask = "adding"\nlr = "0.1"\n', ["'lr'", "finite real number", "'0.1'"]),
        ('[base]\ntask = "adding"\nseed = -1\n', ["'seed'", "[0, 4294967295]"]),
        ('[base]\ntask = "adding"\ndevice = "banana"\n', ["'device'", "'cpu'"]),
        ("base = 3\n[grid]\nseed = [0]\n", ["[base]", "table", "3"]),
        ('variant = 3\n[base]\ntask = "adding"\n', ["variant", "array of tables"]),
    ],
)
def test_the_issue_examples_exit_2_with_one_line(cli, tmp_path, document, words):
    path = tmp_path / "sweep.toml"
    path.write_text(document, encoding="utf-8")
    r = cli("sweep", str(path), "--out", str(tmp_path / "runs"))
    assert_usage_error(r, *words, says_valid=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing trained


@pytest.mark.parametrize("content", [b"\x80\x81\x82 = 1\n", b"[base]\ntask = \xff\n"])
def test_a_binary_sweep_file_exits_2(cli, tmp_path, content):
    path = tmp_path / "sweep.toml"
    path.write_bytes(content)
    assert_usage_error(cli("sweep", str(path), "--out", str(tmp_path / "runs")), "not UTF-8 text", says_valid=False)


def test_a_device_this_machine_lacks_is_refused_before_training(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "sweep.toml"
    path.write_text('[base]\ntask = "adding"\ndevice = "cuda"\n', encoding="utf-8")
    assert_usage_error(cli("sweep", str(path), "--out", str(tmp_path / "runs")), "'device'", "'cpu'", "no CUDA")
