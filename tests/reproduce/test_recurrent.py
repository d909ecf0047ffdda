"""The recurrent claims' --full code paths, at toy sizes (--full is for a GPU or a long afternoon)."""

from gradwatch.reproduce import CLAIMS, recurrent


def test_full_tier_code_paths_run_at_toy_size(monkeypatch, tmp_path):
    monkeypatch.setitem(recurrent._ADDING, "full", {"length": 12, "seeds": (0, 1), "lstm_steps": 20, "rnn_steps": 20})
    monkeypatch.setitem(recurrent._ORDER, "full", {"length": 12, "seeds": (0,), "steps": 20})
    monkeypatch.setitem(recurrent._PASCANU, "full", {"lengths": (10,), "seeds": (0,), "steps": 20})
    monkeypatch.setattr(recurrent, "_PIXELS", {"steps": 20, "seeds": (0, 1)})
    cache: dict = {}  # one reproduce call: irnn reuses hs97-adding's tanh runs
    ids = ("hs97-adding", "hs97-temporal-order", "pascanu-clipping", "irnn")
    outcomes = [CLAIMS[i].check("full", tmp_path, cache) for i in ids]
    for o in outcomes:
        assert o.measured and o.figure is not None and isinstance(o.passed, bool)
    assert "pixel-by-pixel digits" in outcomes[-1].measured
    assert len(list((tmp_path / "irnn").glob("*/result.json"))) == 2 + 2 * 2  # adding IRNN + pixels (IRNN, tanh)
    assert len(list((tmp_path / "hs97-adding").glob("*/result.json"))) == 3 * 2  # tanh runs stored once


def test_without_a_run_store_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(recurrent._ORDER, "quick", {"length": 12, "seeds": (0,), "steps": 5})
    monkeypatch.chdir(tmp_path)
    o = CLAIMS["hs97-temporal-order"].check("quick")
    assert isinstance(o.passed, bool) and not any(tmp_path.iterdir())
