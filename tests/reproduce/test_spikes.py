"""The spike-control claim: its code path at toy size, and the quick tier holding (slow)."""

import math

import pytest

from gradwatch.reproduce import CLAIMS, spikes


def test_code_path_runs_at_toy_size_and_reports_what_each_remedy_did(monkeypatch):
    monkeypatch.setitem(spikes._TIERS, "full", {"steps": 90, "gap": 40, "seeds": (0,)})
    o = CLAIMS["spike-control"].check("full")
    assert isinstance(o.passed, bool) and o.figure is not None
    v = o.values
    assert v["injected"] == [40, 80]
    assert set(v["deviation"]) == {"no control", "clip at clean mean ‖g‖", "skip_step_on_spike", "zclip"}
    assert all(math.isfinite(d) or d == math.inf for ds in v["deviation"].values() for d in ds)
    assert v["skipped"] == [[40, 80]]  # the registered skip-step skips exactly the outlier batches
    assert {40, 80} <= set(v["clipped"][0])
    # the monitor records the gradient before the remedy: the skipped steps are grad_spike events with a layer
    events = v["events"]["skip_step_on_spike"][0]
    assert [s for s, _, _ in events] == [40, 80] and all(layer for _, layer, _ in events)
    assert v["first_layer_hit"] == ["input"]
    assert "skip-step skipped 2 steps" in o.measured


@pytest.mark.slow
def test_the_quick_tier_holds():
    o = CLAIMS["spike-control"].check("quick")
    assert o.passed, o.measured
