"""The run store trusts nothing it did not verify (issue 15): checksums, schema, locks, workers.

Property-based over corrupted ``result.json`` files: a store never raises on one and never
counts it; ``sweep --resume`` runs an invalid run again with a warning; the report lists it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwatch.errors import ConfigError, GradwatchWarning, OutputError
from gradwatch.experiments import Result, RunStore, Spec, run, sweep
from gradwatch.experiments.store import InvalidRun, checksum
from tests._robustness import PROPERTY, assert_usage_error

TINY = {"task": "adding", "length": 10, "hidden": 4, "steps": 2, "eval_every": 1, "eval_batch": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[RunStore, Result, str]:
    """A store holding one finished run, its result and the text of its result.json."""
    store = RunStore(tmp_path_factory.mktemp("store") / "runs")
    spec = Spec(**TINY)
    result = run(spec, store.start(spec))
    store.finish(result)
    return store, result, (store.run_dir(spec) / "result.json").read_text(encoding="utf-8")


def _with_result(store: RunStore, spec: Spec, text: str | bytes) -> None:
    path = store.run_dir(spec) / "result.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["spec", "steps", "loss", "error", "final_error", "success", "diverged", "verdict", "layer_grad_norm", "wall_time"]
)


def test_a_finished_run_verifies_and_round_trips(finished):
    store, result, text = finished
    doc = json.loads(text)
    assert doc["checksum"] == checksum(doc) and doc["checksum"].startswith("sha256:")
    (back,) = store.results()
    assert back.to_json() == result.to_json() and store.invalid() == []
    assert store.is_done(result.spec)
    assert sorted(p.name for p in store.root.iterdir()) == [result.spec.run_id]  # no .partial-* debris


@settings(PROPERTY, max_examples=60)
@given(
    corruption=st.one_of(
        st.tuples(st.just("truncate"), st.integers(0, 10**6)),
        st.tuples(st.just("replace"), st.tuples(FIELDS, JSON)),
        st.tuples(st.just("resign"), st.tuples(FIELDS, JSON)),  # a bad value with a matching checksum
        st.tuples(st.just("document"), JSON),
        st.tuples(st.just("bytes"), st.binary(max_size=40)),
    )
)
def test_a_corrupted_result_is_invalid_never_an_exception(finished, corruption):
    store, result, text = finished
    kind, arg = corruption
    doc = json.loads(text)
    if kind == "truncate":
        bad = text[: arg % len(text.rstrip())]
    elif kind in ("replace", "resign"):
        field, value = arg
        doc[field] = value
        if kind == "resign":
            doc["checksum"] = checksum(doc)
        bad = json.dumps(doc)
    elif kind == "document":
        bad = json.dumps(arg)
    else:
        bad = arg
    try:
        _with_result(store, result.spec, bad)
        found = store.load(result.spec)
        if kind == "resign" and isinstance(found, Result):  # a value that is valid after all (wall_time 0.5)
            assert found.spec == result.spec
        else:
            assert isinstance(found, InvalidRun) and found.reason, found
            assert store.results() == [] and [r.run_id for r in store.invalid()] == [result.spec.run_id]
            assert not store.is_done(result.spec)
    finally:
        _with_result(store, result.spec, text)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty"),
        ("{}", "no checksum"),
        ('{"steps": [1, 2', "not valid JSON"),
        (b"\x80\x00", "cannot be read"),
    ],
)
def test_the_issue_examples_are_invalid_with_a_reason(finished, content, reason):
    store, result, text = finished
    try:
        _with_result(store, result.spec, content)
        found = store.load(result.spec)
        assert isinstance(found, InvalidRun) and reason in found.reason
    finally:
        _with_result(store, result.spec, text)


def test_success_for_a_run_with_nan_error_fails_the_schema(finished):
    text = finished[2]
    doc = json.loads(text)
    doc.pop("checksum")
    for change in ({"final_error": "nan"}, {"diverged": True}):
        with pytest.raises(ConfigError, match="success for a run that diverged"):
            Result.from_json({**doc, **change, "success": True})


def test_resume_redoes_invalid_runs_with_a_warning_and_the_report_lists_them(tmp_path, cli):
    specs = [Spec(**{**TINY, "seed": s}) for s in range(3)]
    out = tmp_path / "runs"
    sweep(specs, out, workers=1, progress=False)
    store = RunStore(out)
    _with_result(store, specs[0], "")
    _with_result(store, specs[1], "{}")
    with pytest.warns(GradwatchWarning) as warned:
        results = sweep(specs, out, workers=1, progress=False, resume=True)
    messages = sorted(str(w.message) for w in warned)
    assert [m.split()[1] for m in messages] == [specs[0].run_id, specs[1].run_id]
    assert messages[0].endswith("is invalid (result.json is empty); running it again.")
    assert messages[1].endswith("is invalid (result.json has no checksum); running it again.")
    assert len(results) == 3 and store.invalid() == []
    _with_result(store, specs[2], '{"truncated": ')
    r = cli("report", str(out))
    assert r.code == 0, r.err
    assert r.err.startswith("warning: 1 invalid run(s)") and len(r.err.strip().splitlines()) == 1
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Invalid runs (1)" in page and specs[2].run_id in page and "not valid JSON" in page
    assert "2 runs from" in page  # the invalid run is counted nowhere else
    # the CLI prints each warning as one line, no Python source location
    r = cli("sweep", str(_toml(tmp_path, seeds=(2,))), "--out", str(out), "--resume", "--json", "--workers", "1")
    assert r.code == 0, r.err
    assert r.err.strip().splitlines() == [
        f"warning: Run {specs[2].run_id} in {str(out)!r} is invalid "
        "(result.json is not valid JSON (Expecting value at line 1: truncated?)); running it again."
    ]


def _toml(tmp_path, seeds):
    path = tmp_path / "s.toml"
    fields = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items())
    path.write_text(f"[base]\n{fields}\n[grid]\nseed = {list(seeds)}\n", encoding="utf-8")
    return path


_HOLD = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, f"{os.getpid()} sweep\\n".encode(), 0)
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_store_is_locked_by_one_sweep_at_a_time(tmp_path, cli):
    pytest.importorskip("fcntl")
    out = tmp_path / "runs"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(OutputError, match=rf"in use by sweep PID {holder.pid} \(lock file"):
            sweep([Spec(**TINY)], out, workers=1, progress=False)
        assert time.perf_counter() - t0 < 5  # a live owner is refused at once
        r = cli("sweep", str(_toml(tmp_path, seeds=(0,))), "--out", str(out))
        assert_usage_error(r, f"PID {holder.pid}", says_valid=False)
        r = cli(
            "run", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "eval_batch"], "--out", str(out)
        )
        assert_usage_error(r, f"PID {holder.pid}", says_valid=False)
    finally:
        holder.kill()
        holder.wait()
    assert list(out.iterdir()) == [out / ".lock"]  # nothing was trained or written


def test_a_stale_lock_is_taken_over_with_a_warning_and_debris_cleared(tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".lock").write_text(f"{int(dead.stdout)} sweep\n")
    (out / ".partial-crashed-run-abc").mkdir()
    with pytest.warns(GradwatchWarning, match=rf"stale lock of sweep PID {int(dead.stdout)}, which has exited"):
        results = sweep([Spec(**TINY)], out, workers=1, progress=False)
    assert len(results) == 1
    assert sorted(p.name for p in out.iterdir()) == [results[0].spec.run_id]  # lock released, debris gone


_POOL = textwrap.dedent(
    """
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from gradwatch.experiments.sweep import _init_worker

    with ProcessPoolExecutor(1, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 60)
        time.sleep(60)
    """
)


def test_pool_workers_die_with_their_parent(tmp_path):
    """kill -9 of the sweep process alone: its worker (idle or busy) dies within a second."""
    parent = subprocess.Popen([sys.executable, "-c", _POOL], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        t0 = time.time()
        while time.time() - t0 < 3 and _alive(worker):
            time.sleep(0.05)
        assert not _alive(worker), "the pool worker outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent (init) has not reaped it yet
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
