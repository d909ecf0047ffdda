"""`gradwatch reproduce`: the claims implemented so far, results.json, the page, bad input."""

import json

from gradwatch.report.claims import CLAIMS


def test_every_implemented_claim_holds_and_is_reported(cli, tmp_path):
    out = tmp_path / "rep"
    r = cli("reproduce", "--quick", "--out", str(out), "--json")
    assert r.code == 0, r.out[-2000:] + r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc == r.json()
    assert [c["id"] for c in doc["claims"]] == list(CLAIMS)
    import torch

    for c in doc["claims"]:
        assert set(c) >= {"id", "source", "claim", "published", "measured", "pass", "seconds"}
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
    for claim_id, n_runs in (("hs97-adding", 9), ("hs97-temporal-order", 3), ("irnn", 3)):
        runs = sorted((out / "runs" / claim_id).glob("*/result.json"))
        assert len(runs) == n_runs, (claim_id, runs)
    assert (next((out / "runs" / "hs97-temporal-order").glob("*/monitor.jsonl"))).stat().st_size > 0


def test_only_and_a_failing_claim_exits_1(cli, tmp_path, monkeypatch):
    from gradwatch.report import claims

    def broken(tier):
        raise RuntimeError("boom")

    monkeypatch.setitem(claims.CLAIMS, "loss-wall", claims.Claim("loss-wall", "s", "c", "p", "k", broken))
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


def test_full_tier_code_paths_run_at_toy_size(monkeypatch, tmp_path):
    """--full is for a GPU or a long afternoon; its code paths are exercised here at toy sizes."""
    from gradwatch.report import claims_remedies as cr
    from gradwatch.report._claim import use_run_store

    monkeypatch.setitem(cr._ADDING, "full", {"length": 12, "seeds": (0, 1), "lstm_steps": 20, "rnn_steps": 20})
    monkeypatch.setitem(cr._ORDER, "full", {"length": 12, "seeds": (0,), "steps": 20})
    monkeypatch.setitem(cr._PASCANU, "full", {"lengths": (10,), "seeds": (0,), "steps": 20})
    monkeypatch.setattr(cr, "_PIXELS", {"steps": 20, "seeds": (0, 1)})
    monkeypatch.setattr(cr, "_CACHE", {})
    with use_run_store(tmp_path):
        outcomes = [f("full") for f in (cr.hs97_adding, cr.hs97_temporal_order, cr.pascanu_clipping, cr.irnn)]
    for o in outcomes:
        assert o.measured and o.figure is not None and isinstance(o.passed, bool)
    assert "pixel-by-pixel digits" in outcomes[-1].measured
    assert len(list((tmp_path / "irnn").glob("*/result.json"))) == 2 + 2 * 2  # adding IRNN + pixels (IRNN, tanh)


def test_every_remedy_appears_in_a_claim():
    from gradwatch import remedies

    used = {r for c in CLAIMS.values() for r in c.remedies}
    assert used == {r.name for r in remedies.available()}
