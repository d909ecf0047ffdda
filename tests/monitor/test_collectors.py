"""The columnar store, each collector against an independent reference, clipping with measured norms,
and the no-host-sync contract of Monitor.step()."""

import json
import math
from dataclasses import fields

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradwatch as gw
from gradwatch.errors import ConfigError
from gradwatch.monitor import MonitorConfig, Store
from gradwatch.monitor.config import MonitorOptions


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Sigmoid(), nn.Linear(12, 3))


def _batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


# ---------------------------------------------------------------- store


def test_store_keeps_nan_as_nan_and_tells_unmeasured_from_nan() -> None:
    store = Store(["a", "b"], [3, 4])
    for s in range(70):  # past the initial capacity: the arrays grow
        store.add_row(2 * s)
    rows = store.rows_of([0, 2, 138])
    assert rows.tolist() == [0, 1, 69]
    store.set("loss", rows[:1], [math.nan])
    store.set_layers("grad_norm", rows, [[1.0, math.inf], [2.0, 3.0], [math.nan, 0.5]])
    assert np.isnan(store.column("loss")[0]) and store.column("has_loss")[0]
    assert np.isnan(store.column("loss")[1]) and not store.column("has_loss")[1]
    recs = store.records(0, 2)
    assert recs[0]["loss"] == "nan" and recs[1]["loss"] is None
    assert recs[0]["layers"]["b"]["grad_norm"] == "inf"
    assert recs[0]["layers"]["a"]["param_norm"] is None
    with pytest.raises(ValueError, match="read-only"):
        store.column("loss")[0] = 1.0  # History's arrays are views: read-only


def test_store_round_trips_records_exactly(tmp_path) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt, weights_every=2, activations_every=3, clip=True, sync_every=2) as mon:
        for i in range(7):
            x, y = _batch(i)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3)
            opt.step()
            opt.zero_grad()
        records = mon.records()
    assert Store.from_records(records).records() == records
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    assert "".join(json.dumps(r, allow_nan=False) + "\n" for r in Store.from_records(records).records()) == text


def test_history_is_a_cached_view_until_the_store_changes() -> None:
    model = _net()
    mon = gw.Monitor(model)
    for i in range(3):
        x, y = _batch(i)
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    h1, h2 = mon.history, mon.history
    assert h1 is h2
    assert not h1.global_grad_norm.flags.writeable
    x, y = _batch(3)
    nn.functional.cross_entropy(model(x), y).backward()
    mon.step()
    assert mon.history.n_steps == 4
    mon.close()


# ---------------------------------------------------------------- collectors against manual loops


def _manual_layers(model: nn.Module) -> dict[str, dict[str, float]]:
    out = {}
    for name, m in model.named_modules():
        ps = list(m.parameters(recurse=False))
        if ps:
            out[name] = {
                "grad_norm": math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in ps)),
                "grad_max": max(float(p.grad.double().abs().max()) for p in ps),
                "param_norm": math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in ps)),
            }
    return out


def test_grad_weights_and_activation_collectors_match_manual_loops() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    acts: dict[str, torch.Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Tanh, nn.Sigmoid)):
            m.register_forward_hook(lambda mod, a, out, name=name: acts.__setitem__(name, out.detach().double()))
    mon = gw.Monitor(model, opt, grad_max=True, weights_every=1, activations_every=1, sync_every=3)
    expected = []
    for i in range(5):
        x, y = _batch(i)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        ref = _manual_layers(model)
        before = {
            n: [p.detach().double().clone() for p in m.parameters(recurse=False)] for n, m in model.named_modules()
        }
        mon.step(loss)
        opt.step()
        for n in ref:
            after = list(model.get_submodule(n).parameters(recurse=False)) if n else []
            delta = math.sqrt(
                sum(float((p.detach().double() - b).pow(2).sum()) for p, b in zip(after, before[n], strict=True))
            )
            ref[n]["update_ratio"] = delta / ref[n]["param_norm"]
        sat = {}
        for n, a in acts.items():
            edge = math.sqrt(0.99) if isinstance(model.get_submodule(n), nn.Tanh) else 0.5 - (1 - math.sqrt(0.99)) / 2
            center = 0.0 if isinstance(model.get_submodule(n), nn.Tanh) else 0.5
            sat[n] = (float(((a - center).abs() > edge).double().mean()), float(a.std()))
        expected.append((ref, sat))
        opt.zero_grad()
    h = mon.history
    for s, (ref, sat) in enumerate(expected):
        for name, lh in h.layers.items():
            for q in ("grad_norm", "grad_max", "param_norm", "update_ratio"):
                assert getattr(lh, q)[s] == pytest.approx(ref[name][q], rel=1e-4), (s, name, q)
        for n, (frac, std) in sat.items():
            assert h.activations[n].fraction[s] == pytest.approx(frac, abs=1e-12)
            assert h.activations[n].std[s] == pytest.approx(std, rel=1e-4)
    mon.close()


# ---------------------------------------------------------------- clip_grad_norm_ with measured norms


def _clip_run(
    use_monitor_clip: bool, norm_type: float, amp: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
    model = _net(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if amp else None
    totals = []
    with gw.Monitor(model, opt, scaler=scaler, clip=True) as mon:
        for i in range(4):
            x, y = _batch(i)
            loss = nn.functional.cross_entropy(model(x), y)
            (scaler.scale(loss) if scaler else loss).backward()
            mon.step(loss)
            if scaler:
                scaler.unscale_(opt)
            clip = (
                mon.clip_grad_norm_
                if use_monitor_clip
                else lambda *a: torch.nn.utils.clip_grad_norm_(model.parameters(), *a)
            )
            totals.append(clip(0.2, norm_type))
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad()
        h = mon.history
    return totals, [p.detach().clone() for p in model.parameters()], {"pre": h.clip_pre, "post": h.clip_post}


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_monitor_clip_grad_norm_equals_torch_and_reads_the_measured_norms(norm_type: float, amp: bool) -> None:
    ref_totals, ref_params, _ = _clip_run(False, norm_type, amp)
    totals, params, clip = _clip_run(True, norm_type, amp)
    for a, b in zip(ref_totals, totals, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ref_params, params, strict=True):
        assert torch.equal(a, b)  # same gradients after clipping: bitwise the same training
    if norm_type == 2.0:
        np.testing.assert_allclose(clip["pre"], [float(t) for t in totals], rtol=1e-6)
        np.testing.assert_allclose(clip["post"], np.minimum(clip["pre"], 0.2), rtol=1e-4)


def test_monitor_clip_grad_norm_does_not_read_the_gradients_again(monkeypatch) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, weights_every=None)  # weights are read by their own collector
    x, y = _batch(0)
    nn.functional.cross_entropy(model(x), y).backward()
    mon.step()
    calls = []
    real = torch._foreach_norm
    monkeypatch.setattr(torch, "_foreach_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(torch.nn.utils, "get_total_norm", lambda *a, **k: pytest.fail("norm measured again"))
    mon.clip_grad_norm_(0.01)
    opt.step()  # the post-clip norm comes from the clip: no pass in the optimizer's pre-hook either
    assert calls == []
    assert mon.history.clip_post[0] == pytest.approx(0.01, rel=1e-4)
    mon.close()


# ---------------------------------------------------------------- no host sync


class _CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default):
            self.syncs += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kwargs", [{}, {"activations_every": 1, "weights_every": 1, "time_profile_every": 1}])
def test_step_makes_no_host_sync_outside_sync_steps(kwargs: dict) -> None:
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, sync_every=1000, profile_module="0", time_dim=0, batch_dim=1, **kwargs)
    for i in range(6):
        x, y = _batch(i)
        with _CountSyncs() as mode:
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            mon.clip_grad_norm_(0.5)
            opt.step()
            opt.zero_grad()
        assert mode.syncs == 0, f"step {i}: {mode.syncs} host syncs"
    assert mon.history.n_steps == 6  # the one sync
    mon.close()


@pytest.mark.parametrize("clip", ["reported", "mon"])
def test_manual_loops_and_armed_nan_tracing_make_no_host_sync(clip: str) -> None:
    """The defaults of a loop without an optimizer (clip reported, update ratios from snapshots,
    misuse lints) and, after a NaN was seen, the auto-armed tracing hooks: no sync either."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    mon = gw.Monitor(model, sync_every=1000, weights_every=1, activations_every=1, clip=True)
    for i in range(8):
        x, y = _batch(i)
        if i == 3:  # a NaN input: found at the sync below, which arms the tracing hooks
            x = x * float("nan")
        with _CountSyncs() as mode:
            loss = nn.functional.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            x.nan_to_num_()  # the input is finite again when the monitor replays this forward: not located
            if clip == "reported":
                total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
                torch.nn.utils.clip_grads_with_norm_(model.parameters(), 0.5, total)
                mon.step(loss, clip=total)
            else:
                mon.step(loss)
                mon.clip_grad_norm_(0.5)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-0.01)
        assert mode.syncs == 0, f"step {i}: {mode.syncs} host syncs"
        if i == 3:
            assert mon.first_nonfinite.origin == "forward"  # a sync, outside the counted steps
            assert mon._chain.nonfinite.tracer is not None and mon._chain.nonfinite.tracer.attached
    h = mon.history
    assert h.n_steps == 8 and np.isfinite(h.layers["0"].update_ratio[:2]).all()
    assert np.isfinite(h.clip_rate()).all()
    mon.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_step_makes_no_host_sync_on_cuda() -> None:
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, sync_every=1000, activations_every=1, weights_every=1)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(4):
            x, y = (t.cuda() for t in _batch(i))
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert mon.history.n_steps == 4
    mon.close()


# ---------------------------------------------------------------- configuration


def test_config_object_and_keywords_are_the_same_and_validated() -> None:
    assert set(MonitorOptions.__annotations__) == {f.name for f in fields(MonitorConfig)}
    a = gw.Monitor(_net(), config=MonitorConfig(every=2, weights_every=None))
    b = gw.Monitor(_net(), every=2, weights_every=None)
    c = gw.Monitor(_net(), config=MonitorConfig(every=3), every=2, weights_every=None)
    assert a.config == b.config == c.config
    with pytest.raises(ConfigError, match=r"The 'time_dim' parameter of Monitor must be a dimension other than"):
        gw.Monitor(_net(), time_dim=0, batch_dim=0)
    with pytest.raises(ConfigError, match=r"The 'time_dim' parameter of Monitor must be an integer"):
        gw.Monitor(_net(), time_dim=1.5)
    with pytest.raises(ConfigError, match=r"The 'sync_every' parameter of Monitor must be an integer >= 1"):
        MonitorConfig(sync_every=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        gw.Monitor(_net(), evrey=2)


def test_grad_norm_is_torchs_total_norm_from_the_reading() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt) as mon:
        assert mon.grad_norm() is None  # nothing read yet
        x, y = _batch(0)
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        grads = [p.grad for p in model.parameters()]
        assert torch.equal(mon.grad_norm(), torch.nn.utils.get_total_norm(grads))
        assert torch.equal(mon.grad_norm(math.inf), torch.nn.utils.get_total_norm(grads, math.inf))
        assert mon.grad_norm(1.0) is None  # another norm: not measured
        model[0].weight.grad.mul_(2)  # the gradient changed since the reading
        assert mon.grad_norm() is None


def test_max_grad_has_its_own_period() -> None:
    """Default: max |g| every 10th recorded step (exact there), NaN between; the norms every step."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = []
    with gw.Monitor(model, opt, grad_max=4, sync_every=5) as mon:
        for i in range(9):
            x, y = _batch(i)
            nn.functional.cross_entropy(model(x), y).backward()
            expected.append(_manual_layers(model))
            mon.step()
            opt.step()
            opt.zero_grad()
        records = mon.records()
    h = mon.history
    for s, ref in enumerate(expected):
        for name, lh in h.layers.items():
            assert lh.grad_norm[s] == pytest.approx(ref[name]["grad_norm"], rel=1e-5)
            if s % 4 == 0:
                assert lh.grad_max[s] == pytest.approx(ref[name]["grad_max"], rel=1e-6)
                assert records[s]["layers"][name]["grad_max"] == pytest.approx(ref[name]["grad_max"], rel=1e-6)
            else:
                assert math.isnan(lh.grad_max[s]) and records[s]["layers"][name]["grad_max"] is None
    assert gw.MonitorConfig().grad_max == 10
    with pytest.raises(ConfigError, match="grad_max"):
        gw.Monitor(model, grad_max=0)


def test_half_precision_norms_do_not_overflow() -> None:
    """fp16 gradients whose elements are finite but whose norm exceeds 65504: recorded exactly, not as Inf."""
    model = nn.Linear(64, 64).half()
    with gw.Monitor(model, grad_max=True) as mon, pytest.warns(gw.GradwatchWarning, match="exceeds float16"):
        for p in model.parameters():
            p.grad = torch.full_like(p, 30000.0)  # ‖g‖ = 30000·√numel ≫ 65504, max |g| = 30000 < 65504
        mon.step()
        h = mon.history
    ref = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
    assert h.global_grad_norm[0] == pytest.approx(ref, rel=1e-3)
    assert [lh.grad_max[0] for lh in h.layers.values()] == [30000.0]
    assert mon.first_nonfinite is None
