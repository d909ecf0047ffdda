"""The status rules, non-finite values, sequences, roles and advice, on constructed histories."""

import importlib
import math
import re
import time
from dataclasses import fields

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.errors import ConfigError
from gradwatch.monitor.history import NonFinite

from .records import history, noisy, records

S = 40


def advice(v):
    return [a.remedy for a in v.advice]


def test_the_docstring_states_every_threshold_with_its_default():
    doc = importlib.import_module("gradwatch.monitor.verdict").__doc__  # the package (its attribute is the function)
    stated = dict(re.findall(r"``(\w+)``\s+\(([\d.]+)\)", doc))
    defaults = {f.name: getattr(gw.Thresholds(), f.name) for f in fields(gw.Thresholds)}
    assert set(defaults) <= set(stated), set(defaults) - set(stated)
    for name, text in stated.items():
        if name in defaults:
            assert float(text) == pytest.approx(defaults[name]), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spike_z": 0.0}, r"'spike_z' parameter of Thresholds must be > 0"),
        ({"spike_ratio": 1.0}, r"'spike_ratio' .* must be > 1"),
        ({"spike_window": 1}, r"'spike_window' .* integer >= 2"),
        ({"spike_history": 30}, r"'spike_history' .* <= spike_window \(20\)"),
        ({"clip_saturated_rate": 1.5}, r"'clip_saturated_rate'"),
    ],
)
def test_new_thresholds_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        gw.Thresholds(**kwargs)


# ---- non-finite from the numbers ------------------------------------------------------------------


def test_an_inf_loss_is_never_healthy_and_is_a_forward_problem():
    loss = np.linspace(2.0, 1.0, S)
    loss[30] = np.inf
    v = gw.verdict(history({"a": noisy(1.0, S), "b": noisy(1.0, S, seed=1)}, loss=loss))
    assert v.status == "nonfinite"
    (e,) = [e for e in v.events if e.kind == "nonfinite"]
    assert e.step == 30 and "loss is inf" in e.sentence
    assert advice(v)[:2] == ["numerics:guard", "data:check"]
    assert "clip_grad_norm" not in advice(v)  # no gradient remedy fixes a value the forward pass made


def test_all_nan_gradient_norms_are_not_healthy():
    v = gw.verdict(history({"a": np.full(5, np.nan), "b": np.full(5, np.nan)}))
    assert v.status == "nonfinite" and v.where == ("b",)  # the deepest non-finite layer is nearest a backward source


def test_nan_gradients_with_a_finite_loss_are_a_backward_problem():
    g = noisy(1.0, S)
    g[20:] = np.nan
    v = gw.verdict(history({"a": g, "b": noisy(1.0, S, seed=1)}, loss=np.ones(S)))
    assert v.status == "nonfinite" and v.where == ("a",)
    assert advice(v)[:2] == ["clip_grad_norm", "numerics:guard"]
    assert "amp:grad_scaler" in advice(v)


def test_a_step_skipped_by_the_grad_scaler_is_not_nonfinite():
    recs = records(
        {"a": np.r_[noisy(1.0, 5), np.inf, noisy(1.0, 4)]},
        loss=np.r_[np.ones(5), np.inf, np.ones(4)],
        grad_max={"a": np.full(10, np.nan)},
    )
    recs[5]["skipped"] = True
    for r in recs:
        r["loss_scale"] = 1024.0
    assert gw.verdict(gw.History.from_records(recs)).status == "healthy"


def test_an_overflowing_norm_with_a_finite_max_is_exploding_not_nonfinite():
    g = noisy(1.0, S)
    g[-5:] = np.inf
    v = gw.verdict(history({"a": g}, grad_max={"a": np.full(S, 1e10)}))
    assert v.status == "exploding" and any(e.quantity == "overflow" for e in v.evidence)


def test_origin_from_the_monitor_flag_decides_the_advice():
    h = history({"0": noisy(1.0, 10), "2": noisy(1.0, 10, seed=1)})
    h.nonfinite = NonFinite(step=4, module="0", tensor="forward output", origin="forward")
    v = gw.verdict(h)
    assert v.status == "nonfinite" and v.where == ("0",)
    assert advice(v)[0] == "data:check"  # a forward output of the first layer: the batch itself
    h.nonfinite = NonFinite(step=4, module="2", tensor="gradient w.r.t. output", origin="backward")
    assert advice(gw.verdict(h))[0] == "clip_grad_norm"


def test_a_nan_after_an_explosion_gets_clipping_first():
    g = np.r_[noisy(0.1, 20), 50.0, 500.0, 5000.0, np.full(S - 23, np.nan)]
    loss = np.r_[np.ones(22), np.full(S - 22, np.nan)]
    v = gw.verdict(history({"a": g}, loss=loss))
    assert v.status == "nonfinite"
    assert advice(v)[:2] == ["clip_grad_norm", "lr:lower"]
    assert any(e.quantity == "explosion" for e in v.evidence)


# ---- the sequence: an explosion that precedes saturation is an explosion ---------------------------


def _lm_like():
    """The issue's run, in numbers: ‖g‖ 0.3 → 68 by step 5, ‖θ_rnn‖ 9.4 → ~1e4, then saturated."""
    steps = 40
    g_rnn = np.r_[0.3, 0.35, 0.3, 8.0, 40.0, 68.0, noisy(5.0, steps - 6)]
    g_dec = np.r_[0.2, 0.25, 0.2, 1.0, 5.0, 7.0, noisy(5.0, steps - 6, seed=1)]
    theta = np.full(steps, np.nan)
    theta[::10] = [9.4, 3000.0, 9000.0, 9919.0]
    dec = np.full(steps, np.nan)
    dec[::10] = [15.0, 20.0, 25.0, 30.0]
    loss = np.r_[9.8, 9.8, 9.9, 70.0, 120.0, 215.0, np.full(steps - 6, 150.0)]
    recs = records(
        {"encoder": g_dec / 50, "rnn": g_rnn, "decoder": g_dec},
        loss=loss,
        param={"rnn": theta, "decoder": dec},
        numel={"encoder": 10_000, "rnn": 8_000, "decoder": 10_000},
        roles={"encoder": "embedding", "rnn": "recurrent", "decoder": "linear"},
    )
    for r, frac in zip(recs[::10], (0.0, 0.99, 0.99, 0.99), strict=True):
        r["activations"] = {"rnn": {"kind": "saturation", "fraction": frac, "std": 0.9}}
    return gw.History.from_records(recs)


def test_explosion_then_saturation_is_exploding_with_clipping_first():
    v = gw.verdict(_lm_like())
    assert v.status == "exploding", str(v)
    assert v.where[0] == "rnn"
    story = v.evidence[0]
    assert story.quantity == "explosion"
    assert story.sentence.startswith("exploding at step 3 in “rnn”")
    assert "then saturated" in story.sentence
    assert advice(v)[:2] == ["clip_grad_norm", "lr:lower"]
    assert "init:kumar" not in advice(v) and "batchnorm" not in advice(v)  # a recurrent model: no MLP advice
    kinds = [e.kind for e in v.events]
    assert "param_blowup" in kinds and "saturation" in kinds and "divergence" in kinds
    assert [e.step for e in v.events] == sorted(e.step for e in v.events)
    assert "events" in str(v) and v.to_json()["events"][0]["step"] == v.events[0].step


def test_without_the_sequence_rules_the_same_run_reads_vanishing():
    """The old verdict's failure: saturation alone says vanishing."""
    h = _lm_like()
    v = gw.verdict(h, gw.Thresholds(blowup_ratio=1e9, divergence_ratio=1e9, divergence_loss_ratio=1e9))
    assert v.status == "vanishing"


# ---- roles ----------------------------------------------------------------------------------------


def test_depth_rules_skip_an_embedding_whose_rows_are_mostly_idle():
    grad = {"emb": noisy(1e-5, S), "fc1": noisy(1.0, S, seed=1), "fc2": noisy(1.0, S, seed=2)}
    numel = {"emb": 18_000 * 200, "fc1": 200 * 200, "fc2": 200 * 200}
    assert gw.verdict(history(grad, numel=numel)).status == "vanishing"  # roles unknown: emb is "the first layer"
    roles = {"emb": "embedding", "fc1": "linear", "fc2": "linear"}
    assert gw.verdict(history(grad, numel=numel, roles=roles)).status == "healthy"


def test_embedding_rms_runs_over_the_rows_that_received_gradient():
    frac = np.full(S, np.nan)
    frac[::10] = 0.02
    h = history({"emb": np.full(S, 2.0)}, numel={"emb": 1000 * 10}, row_fraction={"emb": frac})
    rms = h.layers["emb"].grad_rms
    assert rms[0] == pytest.approx(2.0 / math.sqrt(1000 * 10 * 0.02))  # 20 rows of 10, not 1000 rows
    assert h.layers["emb"].row_fraction[10] == 0.02 and np.isnan(h.layers["emb"].row_fraction[1])


def test_recurrent_roles_get_recurrent_advice_without_any_time_profile():
    sat = [{"kind": "saturation", "fraction": 0.99, "std": 0.9}]
    recs = records({"rnn": noisy(1.0, 20), "out": noisy(1.0, 20, seed=1)}, roles={"rnn": "recurrent", "out": "linear"})
    for r in recs[::5]:
        r["activations"] = {"rnn": sat[0]}
    v = gw.verdict(gw.History.from_records(recs))
    assert v.status == "vanishing"
    assert advice(v)[0] == "lstm"
    assert not {"init:kumar", "init:yilmaz_poli", "batchnorm", "residual"} & set(advice(v))
    for r in recs:
        r.pop("roles", None)
    ff = gw.verdict(gw.History.from_records(recs))  # the same numbers, roles unknown: MLP advice as before
    assert {"init:kumar", "batchnorm"} <= set(advice(ff))


def test_old_logs_without_roles_still_load():
    h = history({"a": noisy(1.0, 5)})
    assert h.roles == {"a": ""} and h.layers["a"].row_fraction is not None


def test_all_zero_gradients_advise_loss_scaling_first():
    v = gw.verdict(history({"a": np.zeros(10), "b": np.zeros(10)}, loss=np.full(10, 2.3)))
    assert v.status == "vanishing" and advice(v)[0] == "amp:grad_scaler"


def test_the_verdict_is_fast_on_long_runs():
    L, steps = 30, 20_000
    rng = np.random.default_rng(0)
    G = np.exp(0.3 * rng.standard_normal((L, steps)))
    G[5, 15_000] = 1e3
    h = gw.History(
        steps=np.arange(steps),
        global_grad_norm=np.sqrt((G**2).sum(0)),
        loss=np.linspace(3, 1, steps),
        layers={
            f"l{i}": gw.monitor.history.LayerHistory(
                G[i], G[i] / 10, np.full(steps, np.nan), np.full(steps, np.nan), 100
            )
            for i in range(L)
        },
    )
    t0 = time.perf_counter()
    v = gw.verdict(h)
    assert time.perf_counter() - t0 < 3.0
    assert [(e.step, e.layer) for e in v.events if e.kind == "grad_spike"] == [(15_000, "l5")]
