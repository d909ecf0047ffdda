"""`gradwatch show LOG`: the verdict and figure from a saved JSONL log, and the README example."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch as gw


@pytest.fixture(scope="module")
def vanishing_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "run.jsonl"
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 4))
    g = torch.Generator().manual_seed(0)
    with gw.Monitor(model, log=path, sync_every=3) as mon:
        for _ in range(8):
            x = torch.randn(32, 16, generator=g)
            nn.functional.cross_entropy(model(x), torch.randint(0, 4, (32,), generator=g)).backward()
            mon.step()
            model.zero_grad()
        expected = mon.verdict()
    return path, expected


def test_show_json_matches_the_live_verdict(cli, vanishing_log):
    path, expected = vanishing_log
    r = cli("show", str(path), "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["status"] == expected.status == "vanishing"
    assert d["where"] == list(expected.where)
    assert d["steps"] == 8
    assert d["evidence"][0]["value"] == pytest.approx(expected.evidence[0].value)
    assert {a["remedy"] for a in d["advice"]} == {a.remedy for a in expected.advice}


def test_show_human_output_and_plot(cli, vanishing_log, tmp_path):
    path, _ = vanishing_log
    r = cli("show", str(path), "--plot", str(tmp_path / "flow.png"))
    assert r.code == 0, r.err
    assert "vanishing" in r.out and "try:" in r.out
    assert (tmp_path / "flow.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["no such file"]),
        ("not json\n", ["not valid JSON"]),
        ('{"x": 1}\n', ["not a gradwatch record"]),
        ("", ["holds no records"]),
    ],
)
def test_show_bad_logs_exit_2(cli, tmp_path, content, words):
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_text(content)
    r = cli("show", str(path))
    assert r.code == 2
    assert "Traceback" not in r.err
    for w in words:
        assert w in r.err


def test_readme_example_runs_and_finds_vanishing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["watch_digits.py", str(tmp_path)])
    runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "watch_digits.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("vanishing")
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(lines) == 5 * 15  # 5 epochs × ceil(1797 / 128) steps
    assert json.loads(lines[0])["step"] == 0
    assert (tmp_path / "flow.png").exists()
