"""`gradwatch reproduce`: every claim holds and is reported; results.json, the page, the run store, bad input."""

import json

import pytest
import torch

from gradwatch.reproduce import CLAIMS, Claim, Criterion, Outcome, reproduce


@pytest.mark.slow
def test_every_implemented_claim_holds_and_is_reported(cli, tmp_path):
    out = tmp_path / "rep"
    r = cli("reproduce", "--quick", "--out", str(out), "--json")
    assert r.code == 0, r.out[-2000:] + r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc == r.json()
    assert [c["id"] for c in doc["claims"]] == list(CLAIMS)
    for c in doc["claims"]:
        assert set(c) >= {"id", "source", "claim", "published", "criterion", "measured", "pass", "seconds"}
        assert c["criterion"] == CLAIMS[c["id"]].criterion.sentence
        if c["id"] == "faster-hardware" and not torch.cuda.is_available():
            assert c["skipped"] and c["pass"] is None  # reported as skipped, not failed
        else:
            assert c["pass"], c
    assert doc["passed"] + doc["skipped"] == len(CLAIMS) and doc["failed"] == 0
    page = (out / "index.html").read_text()
    without_figure = {"faster-hardware"} if not torch.cuda.is_available() else set()
    assert page.count('src="data:image/png;base64,') == sum(1 for c in doc["claims"] if c["id"] not in without_figure)
    assert "http://" not in page and "https://" not in page
    # claims trained through the experiments runner leave their runs in the run store
    for claim_id, n_runs in (("hs97-adding", 9), ("hs97-temporal-order", 3), ("irnn", 3), ("relu-family", 4)):
        runs = sorted((out / "runs" / claim_id).glob("*/result.json"))
        assert len(runs) == n_runs, (claim_id, runs)
    assert len(list((out / "runs" / "dbn-pretraining" / "pretrained").glob("*/result.json"))) == 3
    assert (next((out / "runs" / "hs97-temporal-order").glob("*/monitor.jsonl"))).stat().st_size > 0


def test_only_and_a_failing_claim_exits_1(cli, tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(CLAIMS, "loss-wall", Claim("loss-wall", "s", "c", "p", Criterion("k"), broken))
    r = cli("reproduce", "--only", "doya-bistability", "--only", "loss-wall", "--out", str(tmp_path / "o"), "--json")
    assert r.code == 1
    doc = r.json()
    assert [c["pass"] for c in doc["claims"]] == [True, False]
    assert "RuntimeError: boom" in doc["claims"][1]["measured"]


def test_bad_input_fails_before_any_experiment(cli, tmp_path):
    r = cli("reproduce", "--only", "nope", "--out", str(tmp_path / "o"))
    assert r.code == 2 and "'doya-bistability'" in r.err and not (tmp_path / "o").exists()
    r = cli("reproduce", "--out", str(tmp_path / "missing" / "o"))
    assert r.code == 2 and "Cannot create the output folder" in r.err


def test_a_registry_can_be_passed_and_its_criterion_sentence_is_reported(tmp_path):
    crit = Criterion("x above {low}", {"low": 2})

    def exp(ctx):
        return Outcome(measured=f"x = 3 (criterion {ctx.criterion.sentence})", passed=ctx.criterion["low"] < 3)

    doc = reproduce("quick", out=tmp_path / "o", claims={"toy": Claim("toy", "s", "c", "p", crit, exp)})
    assert doc["passed"] == 1 and doc["claims"][0]["criterion"] == "x above 2"
    assert "x above 2" in (tmp_path / "o" / "index.html").read_text()


def test_every_remedy_appears_in_a_claim():
    from gradwatch import remedies

    # practices with no published result to reproduce; their advice is tested in tests/monitor/verdict/
    not_a_claim = {"numerics:guard": "guard log/sqrt/division against 0: a coding practice (IEEE 754)"}
    used = {r for c in CLAIMS.values() for r in c.remedies}
    assert used | set(not_a_claim) == {r.name for r in remedies.available()}
    assert not used & set(not_a_claim)


def _toy_claim(cid: str) -> Claim:
    return Claim(cid, "s", "c", "p", Criterion("k"), lambda ctx: Outcome(measured="x = 3", passed=True))


def test_on_progress_is_called_before_each_claim_and_at_the_end(tmp_path):
    calls = []
    claims = {"a": _toy_claim("a"), "b": _toy_claim("b")}
    reproduce("quick", out=tmp_path / "o", claims=claims, on_progress=lambda *a: calls.append(a))
    assert calls == [(0, 2, "a"), (1, 2, "b"), (2, 2, None)]


@pytest.mark.parametrize("as_json", [False, True])
def test_progress_on_a_terminal_only_and_never_with_json(cli, tmp_path, monkeypatch, as_json):
    import io

    from rich.console import Console

    import gradwatch.cli.experiments as commands

    monkeypatch.setitem(CLAIMS, "loss-wall", _toy_claim("loss-wall"))
    args = ["reproduce", "--only", "loss-wall", "--out", str(tmp_path / "o"), *(["--json"] if as_json else [])]
    piped = cli(*args)  # capsys: stderr is not a terminal
    assert piped.code == 0 and piped.err == ""
    terminal = io.StringIO()
    monkeypatch.setattr(commands, "stderr", Console(file=terminal, force_terminal=True, width=100))
    r = cli(*args)
    assert r.code == 0
    shown = terminal.getvalue()
    if as_json:
        assert shown == "" and r.json()["passed"] == 1
    else:
        assert "reproduce" in shown and "0/1" in shown and "loss-wall" in shown and "0:00:0" in shown
        assert "pass" in r.out and "loss-wall" in r.out
