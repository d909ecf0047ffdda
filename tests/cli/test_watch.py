"""`gradwatch watch LOG`: the live view of a log that a real training process is writing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import gradwatch as gw
from gradwatch.cli.watch import LogFollower, render, sparkline

LAYERS = ["0", "2", "4", "6", "8", "10", "12"]  # the writer's Linear layers, in depth order

WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    import gradwatch as gw

    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt, log=sys.argv[1], sync_every=1) as mon:
        for _ in range(int(sys.argv[2])):
            x = torch.randn(16, 8)
            nn.functional.cross_entropy(model(x), torch.randint(0, 2, (16,))).backward()
            opt.step()
            mon.step()
            opt.zero_grad()
            time.sleep(float(sys.argv[3]))
    """
)


def _env() -> dict[str, str]:
    # the subprocesses import the gradwatch under test, wherever this process found it
    return {**os.environ, "PYTHONPATH": str(Path(gw.__file__).parents[1]), "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def _start_writer(tmp_path: Path, steps: int, sleep: float) -> tuple[subprocess.Popen[bytes], Path]:
    script, log = tmp_path / "writer.py", tmp_path / "run.jsonl"
    script.write_text(WRITER)
    writer = subprocess.Popen([sys.executable, str(script), str(log), str(steps), str(sleep)], env=_env())
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size > 0):  # the job has started writing
        assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.05)
    return writer, log


def _watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gradwatch", "watch", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def finished_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    writer, log = _start_writer(tmp_path_factory.mktemp("watch"), steps=40, sleep=0.0)
    assert writer.wait(timeout=120) == 0
    return log


def test_watch_follows_a_running_job_and_exits_when_the_log_goes_idle(tmp_path: Path) -> None:
    writer, log = _start_writer(tmp_path, steps=40, sleep=0.05)
    watch = _watch(str(log), "--idle", "2")
    assert writer.wait(timeout=120) == 0
    out, err = watch.communicate(timeout=60)  # exits on its own, 2 s after the last record
    assert watch.returncode == 0, err
    expected = gw.verdict(gw.read_jsonl(log))
    assert "40 records, step 39" in out  # every record the job wrote, none lost at the end
    assert expected.status in out
    for name in LAYERS:
        assert f"\n{name} " in out  # one table row per layer
    assert "Traceback" not in err


def test_watch_once_draws_one_frame_of_a_finished_log(cli, finished_log: Path) -> None:
    r = cli("watch", str(finished_log), "--once")
    assert r.code == 0, r.err
    assert gw.verdict(gw.read_jsonl(finished_log)).status in r.out
    assert "‖Δθ‖/‖θ‖" in r.out  # the writer has an optimizer: update ratios are shown
    assert r.err == ""  # no "watching ..." line: --once does not follow


def test_watch_json_prints_the_same_document_as_show(cli, finished_log: Path) -> None:
    shown = cli("show", str(finished_log), "--json")
    watched = cli("watch", str(finished_log), "--json", "--idle", "0.1")
    assert watched.code == 0, watched.err
    assert json.loads(watched.out) == json.loads(shown.out)
    assert json.loads(cli("watch", str(finished_log), "--json", "--once", "--idle", "600").out) == json.loads(shown.out)


def test_ctrl_c_exits_0_with_the_final_verdict(finished_log: Path) -> None:
    watch = _watch(str(finished_log), "--idle", "600")
    assert watch.stderr is not None
    assert watch.stderr.readline().startswith("watching")  # it is in its loop now
    time.sleep(0.5)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert gw.verdict(gw.read_jsonl(finished_log)).status in out
    assert "Traceback" not in err and "aborted" not in err


def test_a_half_written_line_is_parsed_only_when_complete(finished_log: Path, tmp_path: Path) -> None:
    lines = finished_log.read_text(encoding="utf-8").splitlines(keepends=True)
    log = tmp_path / "growing.jsonl"
    log.write_text(lines[0], encoding="utf-8")
    follower = LogFollower(log)
    assert follower.poll() == 1
    half = len(lines[1]) // 2
    with log.open("a", encoding="utf-8") as f:
        f.write(lines[1][:half])
    assert follower.poll() == 0  # no error on the fragment, and nothing read from it
    with log.open("a", encoding="utf-8") as f:
        f.write(lines[1][half:] + lines[2])
    assert follower.poll() == 2
    assert follower.records == [json.loads(line) for line in lines[:3]]
    np.testing.assert_array_equal(follower.history().steps, [0, 1, 2])


def test_a_bad_line_is_named_with_its_number(tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text('{"step": 0, "layers": {}}\nnot json\n', encoding="utf-8")
    with pytest.raises(gw.ConfigError, match=r"bad.jsonl:2 is not valid JSON"):
        LogFollower(log).poll()


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "no such file"), (b"\xff\xfe binary\n", "not UTF-8 text"), (b"", "holds no records")],
)
def test_watch_bad_logs_exit_2_with_one_line(cli, tmp_path: Path, content: bytes | None, words: str) -> None:
    log = tmp_path / "log.jsonl"
    if content is not None:
        log.write_bytes(content)
    r = cli("watch", str(log), "--once")
    assert r.code == 2
    assert words in r.err and len(r.err.strip().splitlines()) == 1


def test_idle_must_be_positive(cli, finished_log: Path) -> None:
    r = cli("watch", str(finished_log), "--idle", "0")
    assert r.code == 2
    assert "The 'idle' parameter of watch must be" in r.err


def test_sparkline_is_log_scaled_and_marks_nonfinite_values() -> None:
    text = sparkline(np.array([1e-6, 1e-3, 1.0, 0.0, np.nan, np.inf]), width=10)
    assert text.plain == "▁▅█·✕✕"  # 1e-3 is halfway between 1e-6 and 1 on a log scale
    assert sparkline(np.arange(1.0, 101.0), width=20).plain.__len__() == 20  # the latest values


def test_render_puts_the_worst_layers_first(finished_log: Path) -> None:
    history = gw.read_jsonl(finished_log)
    result = gw.verdict(history)
    console = Console(record=True, width=80)
    console.print(render(history, result, 80, max_layers=3))
    text = console.export_text()
    rows = [line.split()[0] for line in text.splitlines() if line.split() and line.split()[0] in LAYERS]
    assert rows == list(result.where[:3])  # the verdict's layers lead the table
    assert "… 4 more" in text
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: the terminal test needs it")
def test_watch_in_a_terminal_shows_the_dashboard(tmp_path: Path) -> None:
    writer, log = _start_writer(tmp_path, steps=400, sleep=0.05)
    socket = f"gradwatch-test-{uuid.uuid4().hex[:8]}"  # a private tmux server, killed below
    tmux = ["tmux", "-L", socket]
    env = " ".join(f"{k}={v}" for k, v in _env().items() if k in ("PYTHONPATH", "OMP_NUM_THREADS"))
    command = f"env {env} {sys.executable} -m gradwatch watch {log} --idle 60; echo exit=$?; sleep 60"
    try:
        subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "40", command], check=True)
        deadline, screen = time.monotonic() + 60, ""
        while time.monotonic() < deadline and not ("‖Δθ‖/‖θ‖" in screen and "records, step" in screen):
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
        assert "‖g‖" in screen and "‖Δθ‖/‖θ‖" in screen, screen
        assert "linear" in screen
        subprocess.run([*tmux, "send-keys", "C-c"], check=True)
        while time.monotonic() < deadline and "exit=" not in screen:
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-"], capture_output=True, text=True).stdout
        assert "exit=0" in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        writer.kill()
        writer.wait()
