"""The one progress bar (gradwatch._progress): drawn on a terminal only, never with --json; sweep and lab use it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from gradwatch._progress import progress_bar
from gradwatch.experiments import Spec, sweep
from gradwatch.report import lab as lab_report

TINY = {"task": "adding", "length": 10, "hidden": 4, "steps": 2, "eval_every": 1, "eval_batch": 16, "batch_size": 4}
SWEEP_TOML = """
[base]
task = "adding"
hidden = 4
steps = 2
eval_every = 1
eval_batch = 16
batch_size = 4

[grid]
length = [10]
seed = [0, 1]
"""


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120), buf


def test_a_terminal_gets_done_total_current_item_and_elapsed_time() -> None:
    console, buf = _terminal()
    with progress_bar("work", console) as on_progress:
        on_progress(0, 3, "first [0.1, 1]")
        on_progress(2, 3, "third")
        on_progress(3, 3, None)
    shown = buf.getvalue()
    assert "work" in shown and "0/3" in shown and "2/3" in shown and "3/3" in shown
    assert "first [0.1, 1]" in shown and "third" in shown  # a name is text, never rich markup
    assert "0:00:0" in shown  # elapsed time


def test_a_narrow_terminal_cuts_the_name_never_the_counts_or_the_time() -> None:
    buf = io.StringIO()
    with progress_bar("sweep", Console(file=buf, force_terminal=True, width=60)) as on_progress:
        on_progress(3, 12, "0 solved, 3 not · adding-T100-rnn-sigmoid-s12-0123456789 +3 running")
    last = buf.getvalue().split("\r")[-2]  # the last frame drawn before the bar was removed
    assert "3/12" in last and "0:00:0" in last and "…" in last and "0 solved, 3 not" in last


@pytest.mark.parametrize("terminal", [False, True])
def test_quiet_when_disabled_or_not_a_terminal(terminal: bool) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal)
    with progress_bar("work", console, enabled=not terminal) as on_progress:
        on_progress(0, 1, "item")
        on_progress(1, 1, None)
    assert buf.getvalue() == ""


def test_sweep_reports_each_run_and_the_oldest_in_flight(tmp_path: Path) -> None:
    specs = [Spec(**TINY, seed=s) for s in (0, 1)]
    calls: list[tuple[int, int, str | None]] = []
    results = sweep(specs, tmp_path / "out", workers=1, on_progress=lambda *a: calls.append(a))
    assert [(done, total) for done, total, _ in calls] == [(0, 2), (1, 2), (2, 2)]
    first, second, last = (c for _, _, c in calls)
    assert first == f"0 solved, 0 not · {specs[0].run_id}"  # one worker: one run in flight
    counts = re.fullmatch(rf"(\d) solved, (\d) not · {specs[1].run_id}", second or "")
    assert counts is not None and int(counts[1]) + int(counts[2]) == 1
    assert last is None and len(results) == 2
    calls.clear()
    sweep(specs, tmp_path / "out", workers=1, resume=True, on_progress=lambda *a: calls.append(a))
    assert calls == []  # nothing left to run, nothing to report


def test_sweep_progress_names_the_oldest_run_in_flight() -> None:
    from types import SimpleNamespace

    from gradwatch.experiments.sweep import _consume

    specs = [Spec(**TINY, seed=s) for s in range(3)]
    ids = [s.run_id for s in specs]
    finished = [SimpleNamespace(spec=specs[i], success=ok) for i, ok in ((1, True), (0, False), (2, True))]
    calls: list[tuple[int, int, str | None]] = []
    _consume(iter(finished), specs, 2, lambda *a: calls.append(a), None)  # type: ignore[arg-type]
    assert calls == [
        (0, 3, f"0 solved, 0 not · {ids[0]} +1 running"),
        (1, 3, f"1 solved, 0 not · {ids[0]} +1 running"),
        (2, 3, f"1 solved, 1 not · {ids[2]}"),
        (3, 3, None),
    ]


@pytest.mark.parametrize("as_json", [False, True])
def test_sweep_command_shows_progress_on_a_terminal_only(cli, tmp_path, monkeypatch, as_json: bool) -> None:
    import gradwatch.cli.experiments as commands

    (tmp_path / "s.toml").write_text(SWEEP_TOML, encoding="utf-8")
    args = ["sweep", str(tmp_path / "s.toml"), "--workers", "1", *(["--json"] if as_json else [])]
    piped = cli(*args, "--out", str(tmp_path / "a"))  # capsys: stderr is not a terminal
    assert piped.code == 0, piped.err
    assert piped.err == ""
    console, buf = _terminal()
    monkeypatch.setattr(commands, "stderr", console)
    r = cli(*args, "--out", str(tmp_path / "b"))
    assert r.code == 0, r.err
    if as_json:
        assert buf.getvalue() == "" and r.json()["runs"] == 2
    else:
        shown = buf.getvalue()
        assert "sweep" in shown and "0/2" in shown and "adding-T10-rnn-tanh-s0-" in shown and "0:00:0" in shown
        assert "2 runs in" in r.out


def _fake_lab(name: str):
    def compute() -> lab_report.LabRun:
        return lab_report.LabRun(name, {"x": 1.0}, lambda path: path.write_bytes(b"\x89PNG fake"))

    return compute


@pytest.mark.parametrize("as_json", [False, True])
def test_lab_all_shows_each_model_on_a_terminal_only(cli, tmp_path, monkeypatch, as_json: bool) -> None:
    import gradwatch.cli.lab as commands

    for name in lab_report.LAB_MODELS:  # the models themselves are tested in test_lab.py; here only the bar
        monkeypatch.setattr(lab_report, f"lab_{name}", _fake_lab(name))
    args = ["lab", "all", "--out", str(tmp_path / "lab"), *(["--json"] if as_json else [])]
    piped = cli(*args)
    assert piped.code == 0 and piped.err == ""
    console, buf = _terminal()
    monkeypatch.setattr(commands, "stderr", console)
    r = cli(*args)
    assert r.code == 0, r.err
    shown = buf.getvalue()
    if as_json:
        assert shown == "" and set(r.json()["figures"]) == set(lab_report.LAB_MODELS)
    else:
        assert "lab" in shown and "0/5" in shown and "4/5" in shown
        assert all(name in shown for name in lab_report.LAB_MODELS)


def test_one_lab_model_shows_its_name_on_a_terminal(cli, monkeypatch) -> None:
    import gradwatch.cli.lab as commands

    monkeypatch.setattr(lab_report, "lab_note3", lambda *a, **k: _fake_lab("note3")())
    assert cli("lab", "note3").err == ""
    console, buf = _terminal()
    monkeypatch.setattr(commands, "stderr", console)
    r = cli("lab", "note3", "--json")
    assert r.code == 0 and r.json() == {"x": 1.0} and buf.getvalue() == ""
    r = cli("lab", "note3")
    assert r.code == 0 and "note3" in buf.getvalue() and "0/1" in buf.getvalue()
