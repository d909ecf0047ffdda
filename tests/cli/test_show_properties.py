"""`gradwatch show` on hostile logs and paths (issue 15), property-based over JSONL records.

A log whose records hold a field of the wrong type, a negative norm or count, or a number too
large for a float is refused with exit 2 and one line naming the file, the line and the
field; a folder, a device or a binary file is named as such; never a traceback or a hang.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradwatch as gw
from tests._robustness import PROPERTY, assert_usage_error


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    """The records of a real monitor log: 4 steps of a 2-layer MLP with an optimizer and activations."""
    path = tmp_path_factory.mktemp("log") / "run.jsonl"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt, log=path, sync_every=2, activations_every=2) as mon:
        for _ in range(4):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
    return [json.loads(line) for line in path.read_text().splitlines()]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["three", "nan", "inf", "-inf", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
# where a hostile value goes: a top-level field, or a statistic of the first layer
PLACES = st.sampled_from(
    [
        ("step",),
        ("layers",),
        ("loss",),
        ("global_grad_norm",),
        ("clip",),
        ("skipped",),
        ("activations",),
        ("time_profile",),
        ("nonfinite",),
        ("layers", 0),
        ("layers", 0, "grad_norm"),
        ("layers", 0, "grad_max"),
        ("layers", 0, "param_norm"),
        ("layers", 0, "update_ratio"),
        ("layers", 0, "numel"),
    ]
)


def _put(rec: dict, place: tuple, value: object) -> dict:
    rec = copy.deepcopy(rec)
    target = rec
    for key in place[:-1]:
        target = target[list(target)[key]] if isinstance(key, int) else target[key]
    last = place[-1]
    target[list(target)[last] if isinstance(last, int) else last] = value
    return rec


def _write(tmp: Path, records: list[dict], n: int) -> Path:
    path = tmp / f"log{n}.jsonl"
    # allow_nan: a bare NaN/Infinity is what Python's json writes; the reader must cope with it too
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records), encoding="utf-8")
    return path


@settings(PROPERTY, max_examples=60)
@given(place=PLACES, value=JSON_VALUES, which=st.integers(0, 3), data=st.data())
def test_a_hostile_field_is_refused_with_its_line_or_read(cli, records, tmp_path, place, value, which, data):
    n = data.draw(st.integers(0, 10**9), label="file")
    bad = [_put(r, place, value) if i == which else r for i, r in enumerate(records)]
    path = _write(tmp_path, bad, n)
    r = cli("show", str(path), "--json")
    if r.code == 0:
        d = r.json()
        assert d["steps"] == len(records) and d["status"] in ("healthy", "vanishing", "exploding", "nonfinite")
    else:
        line = assert_usage_error(r, str(path), says_valid="not a valid gradwatch log" not in r.err)
        assert f":{which + 1}" in line or "not a valid gradwatch log" in line, line


@pytest.mark.parametrize(
    ("place", "value", "words"),
    [
        (("step",), "three", ["'step'", "integer", "'three'"]),
        (("layers",), [], ["'layers'", "object", "[]"]),
        (("layers", 0, "grad_norm"), -1.0, ["'grad_norm'", ">= 0", "-1.0"]),
        (("layers", 0, "numel"), -5, ["'numel'", "integer", "-5"]),
        (("layers", 0, "numel"), 10**30, ["'numel'", "integer"]),
        (("global_grad_norm",), "three", ["'global_grad_norm'", "number"]),
        (("skipped",), "yes", ["'skipped'", "true or false"]),
    ],
)
def test_the_issue_examples_name_the_field(cli, records, tmp_path, place, value, words):
    path = _write(tmp_path, [_put(records[0], place, value), *records[1:]], 0)
    assert_usage_error(cli("show", str(path)), f"{path}:1", *words)


def test_a_number_too_large_for_a_float_is_refused(cli, records, tmp_path):
    text = json.dumps(records[0]).replace('"grad_norm": ', '"grad_norm": 1e999, "was": ', 1)
    path = tmp_path / "big.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    assert_usage_error(cli("show", str(path)), f"{path}:1", "1e999", "too large for a float")


def test_non_finite_strings_and_bare_nan_are_read(cli, records, tmp_path):
    """ "nan", "inf" and bare NaN are measurements (a non-finite gradient), not errors."""
    recs = [
        _put(r, ("layers", 0, "grad_norm"), v) for r, v in zip(records, ["nan", "inf", float("nan"), 1.0], strict=True)
    ]
    r = cli("show", str(_write(tmp_path, recs, 0)), "--json")
    assert r.code == 0, r.err


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d, ["it is a folder, not a file"]),
        (lambda d: Path("/dev/zero"), ["'/dev/zero'", "not a regular file"]),
        (lambda d: (d / "bin.jsonl", (d / "bin.jsonl").write_bytes(b"\x80\x81{}\n"))[0], ["not UTF-8 text"]),
        (lambda d: (d / "fifo.jsonl", os.mkfifo(d / "fifo.jsonl"))[0], ["not a regular file"]),
        (lambda d: d / "missing.jsonl", ["no such file"]),
    ],
    ids=["folder", "dev-zero", "binary", "fifo", "missing"],
)
def test_paths_that_exist_but_are_no_log_are_named_as_such(cli, tmp_path, make, words):
    """A path that exists is never "no such file"; a device or a pipe is refused before reading (no hang)."""
    assert_usage_error(cli("show", str(make(tmp_path))), *words, says_valid=False)
