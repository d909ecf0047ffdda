"""`gradwatch lab ...`: the JSON contracts, figures and bad-input handling."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.special import logit

from gradwatch.theory import doya, rnn


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not blank


def test_doya_json_contract(cli):
    r = cli("lab", "doya", "--w", "5", "--json")
    assert r.code == 0, r.err
    d = r.json()
    folds = d["folds"]
    assert [f["b"] for f in folds] == sorted(f["b"] for f in folds)
    # independent: the fold condition x(1 − x) = 1/w and b = logit(x) − w x
    for f in folds:
        assert f["x"] * (1 - f["x"]) == pytest.approx(0.2, rel=1e-12)
        assert f["b"] == pytest.approx(logit(f["x"]) - 5 * f["x"], rel=1e-12)
    lo, hi = d["bistable_interval"]
    assert (lo, hi) == (folds[0]["b"], folds[1]["b"])
    assert hi <= d["hysteresis"]["jump_up_b"] <= hi + 0.0051
    assert lo - 0.0051 <= d["hysteresis"]["jump_down_b"] <= lo
    near, far = d["sensitivity"]["near"], d["sensitivity"]["far"]
    assert abs(near["dxT_dx0"]) > 1e4 and abs(near["dxT_db"]) > 1e4
    assert abs(far["dxT_dx0"]) < 1e-6
    assert 0.1 < abs(far["dxT_db"]) < 1.0


def test_landscape_json_contract(cli):
    r = cli("lab", "landscape", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["wall_b"] == pytest.approx(-2.5, abs=1e-9)
    assert d["loss_left"] == pytest.approx(0.5, abs=0.02)
    assert d["loss_right"] < 1e-3
    assert d["max_abs_grad_b"] == pytest.approx(-2.5, abs=1e-3)
    assert d["max_abs_grad"] > 1e3
    eqs = doya.equilibria(5.0, d["wall_b"])
    assert d["attractors_at_wall"] == pytest.approx([eqs[0].x, eqs[2].x], abs=1e-9)
    assert d["attractors_at_wall"] == sorted(d["attractors_at_wall"])


def test_rnn_json_contract(cli):
    r = cli("lab", "rnn", "--hidden", "32", "--gamma", "0.9", "--steps", "60", "--seed", "0", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["gamma"] == pytest.approx(0.9, rel=1e-10)
    assert d["k"] == list(range(1, 61))
    for key in ("product_norm", "bound", "tight_bound", "gamma_k", "term_norms"):
        assert len(d[key]) == 60
    net = rnn.random_sigmoid_rnn(32, 0.9, seed=0)
    w_norm = np.linalg.norm(net.w_rec, 2)
    np.testing.assert_allclose(d["bound"], w_norm ** np.arange(1, 61), rtol=1e-12)
    np.testing.assert_allclose(d["tight_bound"], (w_norm / 4) ** np.arange(1, 61), rtol=1e-12)
    assert all(p <= t * (1 + 1e-12) for p, t in zip(d["product_norm"], d["tight_bound"], strict=True))
    assert 1 <= d["horizon_99"] <= 60
    assert d["autograd_rel_err"] < 1e-6


def test_note3_json_contract(cli):
    r = cli("lab", "note3", "--eps", "0.8", "--c", "0.5", "--n", "40", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["spectral_radius"] == pytest.approx(np.sqrt(1.6))
    assert d["critical_c"] == pytest.approx(1 / np.sqrt(1.6))
    assert d["behaviour"] == "vanishing"
    assert len(d["norms"]) == 40
    assert d["norms"][39] == pytest.approx(0.4**20, rel=1e-9)
    assert cli("lab", "note3", "--c", "0.95", "--json").json()["behaviour"] == "exploding"


def test_spectrum_json_contract(cli):
    r = cli("lab", "spectrum", "--cell", "lstm", "--hidden", "16", "--steps", "40", "--seed", "0", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert len(d["lyapunov"]) == 32
    assert d["lyapunov"] == sorted(d["lyapunov"], reverse=True)
    assert d["max_lyapunov"] == d["lyapunov"][0]
    assert len(d["singular_values"]) == 32


def test_spectrum_linear_cell_reports_exact_exponents(cli):
    d = cli("lab", "spectrum", "--cell", "linear", "--hidden", "6", "--steps", "1500", "--json").json()
    np.testing.assert_allclose(d["lyapunov"], d["expected"], atol=1e-2)


@pytest.mark.parametrize("model", ["rnn", "note3", "doya", "landscape", "spectrum"])
def test_plot_writes_a_real_png(cli, tmp_path, model):
    extra = ["--hidden", "8", "--steps", "20"] if model == "spectrum" else []
    path = tmp_path / f"{model}.png"
    r = cli("lab", model, *extra, "--plot", str(path))
    assert r.code == 0, r.err
    _assert_png(path)
    assert "figure written" in r.out


def test_human_output_is_a_table(cli):
    r = cli("lab", "note3")
    assert r.code == 0
    assert "spectral_radius" in r.out and "critical_c" in r.out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["lab", "rnn", "--hidden", "-3"], ["'hidden'", ">= 1", "-3"]),
        (["lab", "rnn", "--steps", "0"], ["'steps'", ">= 1"]),
        (["lab", "rnn", "--gamma", "0"], ["'gamma'", "> 0"]),
        (["lab", "doya", "--eps", "1.5"], ["'eps'", "(0, 1]", "1.5"]),
        (["lab", "doya", "--eps", "0"], ["'eps'", "(0, 1]"]),
        (["lab", "doya", "--steps", "-5"], ["'steps'", ">= 1"]),
        (["lab", "landscape", "--eps", "2"], ["'eps'", "(0, 1]"]),
        (["lab", "landscape", "--steps", "-1"], ["'steps'"]),
        (["lab", "note3", "--c", "0"], ["'c'", "(0, 1]"]),
        (["lab", "note3", "--eps", "-1"], ["'eps'", "> 0"]),
        (["lab", "spectrum", "--cell", "transformer"], ["'cell'", "'lstm'", "'transformer'"]),
        (["lab", "spectrum", "--hidden", "0"], ["'hidden'", ">= 1"]),
        (["lab", "rnn", "--plot", "/nonexistent-dir/x.png"], ["plot file", "/nonexistent-dir"]),
        (["lab", "rnn", "--hidden", "abc"], ["--hidden", "integer"]),
        (["lab", "nope"], ["nope"]),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, words):
    r = cli(*args)
    assert r.code == 2
    assert r.out == ""
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0]


def test_unwritable_plot_fails_before_computing(cli, tmp_path, monkeypatch):
    from gradwatch.report import lab

    def boom(*a, **k):
        raise AssertionError("computed before checking --plot")

    monkeypatch.setattr(lab, "lab_rnn", boom)
    r = cli("lab", "rnn", "--plot", str(tmp_path / "missing" / "x.png"))
    assert r.code == 2


def test_lab_all_writes_every_figure_and_summary(cli, tmp_path):
    out = tmp_path / "lab"
    r = cli("lab", "all", "--out", str(out), "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert set(d["figures"]) == {"doya", "landscape", "note3", "rnn", "spectrum"}
    for path in d["figures"].values():
        _assert_png(path)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == d
    assert on_disk["landscape"]["wall_b"] == pytest.approx(-2.5, abs=1e-9)


def test_lab_all_into_missing_parent_fails_cleanly(cli, tmp_path):
    r = cli("lab", "all", "--out", str(tmp_path / "a" / "b"))
    assert r.code == 2
    assert "Cannot create the output folder" in r.err


def test_json_stdout_is_only_json_in_a_real_process():
    env = dict(os.environ, COLUMNS="80")
    proc = subprocess.run(
        [sys.executable, "-m", "gradwatch", "lab", "note3", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["behaviour"] == "vanishing"
    bad = subprocess.run(
        [sys.executable, "-m", "gradwatch", "lab", "doya", "--eps", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "Traceback" not in bad.stderr
