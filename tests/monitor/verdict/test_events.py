"""Each event rule alone, on constructed histories whose numbers are known."""

import math

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.monitor.verdict import ALARM_KINDS, EVENT_KINDS, Event
from gradwatch.monitor.verdict.core import events, facts
from gradwatch.monitor.verdict.stats import robust_jumps, trailing_min

from .records import history, noisy


def found(h, kind=None, **kw):
    ev = events(facts(h, gw.Thresholds(**kw)))
    return [e for e in ev if kind is None or e.kind == kind]


def test_event_contract():
    assert EVENT_KINDS == (
        "grad_spike",
        "loss_spike",
        "param_blowup",
        "update_ratio_high",
        "loss_rising",
        "loss_above_chance",
        "divergence",
        "nonfinite",
        "saturation",
        "clip_saturated",
    )
    assert {"divergence", "nonfinite", "param_blowup"} == ALARM_KINDS
    e = Event(3, "grad_spike", "rnn", 68.0, float("nan"), "s")
    assert e.to_json() == {
        "step": 3,
        "kind": "grad_spike",
        "layer": "rnn",
        "value": 68.0,
        "baseline": "nan",
        "sentence": "s",
    }
    assert e == Event(3, "grad_spike", "rnn", 68.0, float("nan"), "s")  # NaN baselines compare equal
    assert gw.Event is Event


def test_trailing_min_equals_a_direct_loop():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 57))
    X[1, 10:14] = np.nan
    for W in (1, 2, 5, 20):
        got = trailing_min(X, W)
        for i in range(3):
            for t in range(57):
                w = X[i, max(0, t - W) : t]
                w = w[np.isfinite(w)]
                assert got[i, t] == (w.min() if w.size else np.inf)


def test_robust_jumps_match_median_and_mad_computed_by_hand():
    x = np.log(noisy(1.0, 40, sigma=0.1, seed=1))
    x[30] = np.log(50.0)
    J = robust_jumps(x[None], window=20, history=3, z_min=6, jump=math.log(10), floor=0.1)
    assert J.index.tolist() == [30]
    w = x[10:30]
    med = np.median(w)
    mad = np.median(np.abs(w - med))
    assert J.median[0] == pytest.approx(med)
    assert J.z[0] == pytest.approx((x[30] - med) / max(1.4826 * mad, 0.1))


def test_a_layer_spike_is_one_event_attributed_to_that_layer():
    S = 60
    grad = {"a": noisy(1.0, S, seed=0), "b": noisy(0.01, S, seed=1)}
    grad["b"][40] = 2.0  # ×200 in the small layer: the global norm barely moves
    (e,) = found(history(grad), "grad_spike")
    assert (e.step, e.layer) == (40, "b")
    assert e.value == pytest.approx(2.0)
    assert e.baseline == pytest.approx(np.exp(np.median(np.log(grad["b"][20:40]))))  # the median of log ‖g‖
    assert "×" in e.sentence and "“b”" in e.sentence


def test_no_spike_for_small_jumps_noisy_series_or_too_little_history():
    S = 60
    calm = noisy(1.0, S, sigma=0.1)
    calm[30] *= 5  # ×5: below spike_ratio
    assert found(history({"a": calm}), "grad_spike") == []
    for seed in range(10):  # log-normal noise of σ = 0.5 (a factor 1.6): ×10 is a 4.6 σ event, z < 6
        wild = noisy(1.0, 200, sigma=0.5, seed=seed)
        assert found(history({"a": wild}), "grad_spike") == []
    early = noisy(1.0, S, sigma=0.1)
    early[9] = 100.0  # only 9 records before it: their MAD is too uncertain
    assert found(history({"a": early}), "grad_spike") == []


def test_a_level_shift_is_one_event_not_many():
    g = np.concatenate([noisy(1.0, 30, sigma=0.05), noisy(300.0, 30, sigma=0.05, seed=1)])
    (e,) = found(history({"a": g}), "grad_spike")
    assert e.step == 30


def test_loss_spike_needs_the_loss_above_its_start():
    S = 60
    loss = np.linspace(2.3, 0.1, S) * np.exp(0.05 * np.random.default_rng(0).standard_normal(S))
    loss_high, loss_low = loss.copy(), loss.copy()
    loss_high[45] = 5.0  # above the start 2.3
    loss_low[45] = 0.8  # ×5 its running median, but a harder batch, not a spike of the run
    grad = {"a": noisy(1.0, S)}
    (e,) = found(history(grad, loss=loss_high), "loss_spike")
    assert (e.step, e.value) == (45, pytest.approx(5.0))
    assert found(history(grad, loss=loss_low), "loss_spike") == []


def _every(values, k=10):
    out = np.full(len(values), np.nan)
    out[::k] = np.asarray(values)[::k]
    return out


def test_param_blowup_against_the_start_with_a_floor():
    S = 50
    theta = np.full(S, 5.0)
    theta[20:] = 5.0 * 12  # ×12
    zero_init = np.linspace(0, 3.0, S)  # RMS 0.3 at the end (numel 100): learning, not blowing up
    grad = {"a": noisy(1.0, S), "z": noisy(1.0, S, seed=1)}
    h = history(grad, param={"a": _every(theta), "z": _every(zero_init)}, numel={"a": 100, "z": 100})
    (e,) = found(h, "param_blowup")
    assert (e.step, e.layer, e.value, e.baseline) == (20, "a", 60.0, 5.0)
    assert "×12" in e.sentence
    h2 = history(grad, param={"z": _every(np.linspace(0, 30.0, S))}, numel={"z": 100})
    (e2,) = found(h2, "param_blowup")
    # from 0, the floor 0.1·√100 = 1 is the reference: ‖θ‖ 12.2 at step 20 is the first ≥ 10
    assert (e2.layer, e2.step, e2.baseline) == ("z", 20, 1.0)


def test_update_ratio_high_uses_the_floored_norm():
    S = 30
    theta = _every(np.full(S, 10.0))
    upd = _every(np.r_[np.full(20, 1e-3), np.full(10, 0.3)])
    (e,) = found(history({"a": noisy(1.0, S)}, param={"a": theta}, update={"a": upd}), "update_ratio_high")
    assert (e.step, e.layer) == (20, "a")
    assert e.value == pytest.approx(0.3) and e.baseline == pytest.approx(1e-3)


def test_divergence_by_gradient_or_by_a_sustained_loss():
    S = 40
    g = noisy(0.1, S, sigma=0.05)
    g[25:] = 200.0  # ×2000 the start
    (e,) = found(history({"a": g}), "divergence")
    assert e.step == 25 and e.baseline == pytest.approx(np.median(g[:3]))  # the start: 3 records
    loss = np.full(S, 1.0)
    loss[10] = 50.0  # one bad batch: no divergence
    assert found(history({"a": noisy(1.0, S)}, loss=loss), "divergence") == []
    loss[20:] = 15.0
    (e,) = found(history({"a": noisy(1.0, S)}, loss=loss), "divergence")
    assert e.step == 21  # the median of records 19–21 is the first ≥ 10 × 1


def test_loss_rising_and_above_chance():
    S = 100
    loss = np.r_[np.linspace(2.3, 0.5, 50), np.linspace(0.5, 2.0, 50)]
    (e,) = found(history({"a": noisy(1.0, S)}, loss=loss), "loss_rising")
    assert e.baseline < 0.7 and e.value > 1.6  # running medians of 20 records
    decreasing = np.linspace(2.3, 0.1, S) * np.exp(0.3 * np.random.default_rng(0).standard_normal(S))
    assert found(history({"a": noisy(1.0, S)}, loss=decreasing), "loss_rising") == []
    h = history({"a": noisy(1.0, S)}, loss=np.r_[np.full(50, 1.4), np.full(50, 4.0)])
    f = facts(h, gw.Thresholds(), chance_loss=math.log(4))
    (e,) = [e for e in events(f) if e.kind == "loss_above_chance"]
    assert e.step == 51 and e.baseline == pytest.approx(math.log(4))  # median of records 49–51
    assert [e for e in events(facts(h, gw.Thresholds())) if e.kind == "loss_above_chance"] == []


def test_clip_saturated():
    from .records import records

    recs = records({"a": noisy(1.0, 40)})
    for r in recs:
        r["clip"] = {"pre": 3.0, "post": 0.25 if r["step"] >= 10 else 3.0}
    (e,) = found(gw.History.from_records(recs), "clip_saturated")
    assert e.step == 28 and e.value == pytest.approx(0.95)  # records 9–28: 19 of 20 clipped


def test_saturation_onset():
    from .records import records

    recs = records({"a": noisy(1.0, 40)})
    for r, frac in zip(recs[::10], (0.1, 0.5, 0.95, 0.97), strict=True):
        r["activations"] = {"act": {"kind": "saturation", "fraction": frac, "std": 0.5}}
    (e,) = found(gw.History.from_records(recs), "saturation")
    assert (e.step, e.layer, e.value, e.baseline) == (20, "act", 0.95, 0.1)
