"""Spike control: the EMA z-score against a hand computation, skipped steps that leave parameters and
optimizer state bitwise unchanged, ZClip's clipped norm, no host sync, and the monitor's attribution."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.errors import ConfigError
from gradwatch.remedies import registry
from gradwatch.remedies.spike import EmaZScore, SkipStepOnSpike, ZClip, skip_step_
from tests.monitor.test_collectors import _CountSyncs


def _reference_stats(xs: list[float], alpha: float, warmup: int) -> list[tuple[float, float]]:
    """(μ, σ²) after each value, by hand: warm-up mean/population variance, then ZClip's EMA rule."""
    out: list[tuple[float, float]] = []
    mean = var = math.nan
    for i, x in enumerate(xs):
        if i + 1 < warmup:
            out.append((math.nan, math.nan))
            continue
        if i + 1 == warmup:
            head = xs[:warmup]
            mean = sum(head) / warmup
            var = sum((v - mean) ** 2 for v in head) / warmup
        else:
            mean = alpha * mean + (1 - alpha) * x
            var = alpha * var + (1 - alpha) * (x - mean) ** 2
        out.append((mean, var))
    return out


def test_ema_zscore_matches_a_hand_computation() -> None:
    s = EmaZScore(alpha=0.9, warmup=3, eps=1e-6)
    for x in (1.0, 2.0, 3.0):
        assert float(s.score(torch.tensor(x))) == 0.0  # warm-up: no judgement
        s.update_(torch.tensor(x))
    assert float(s.mean_) == pytest.approx(2.0) and float(s.var_) == pytest.approx(2 / 3)
    z = float(s.score(torch.tensor(4.0)))
    assert z == pytest.approx((4 - 2) / (math.sqrt(2 / 3) + 1e-6), rel=1e-6)
    s.update_(torch.tensor(4.0))
    # μ = 0.9·2 + 0.1·4 = 2.2; σ² = 0.9·(2/3) + 0.1·(4 − 2.2)² = 0.924
    assert float(s.mean_) == pytest.approx(2.2, rel=1e-6)
    assert float(s.var_) == pytest.approx(0.924, rel=1e-6)
    s.update_(torch.tensor(100.0), torch.tensor(False))  # not accepted: unchanged
    s.update_(torch.tensor(math.inf))  # non-finite: never folded in
    assert float(s.mean_) == pytest.approx(2.2, rel=1e-6) and float(s.var_) == pytest.approx(0.924, rel=1e-6)


def test_ema_zscore_follows_the_reference_over_a_series() -> None:
    xs = [float(v) for v in torch.rand(40, generator=torch.Generator().manual_seed(0)) * 3 + 1]
    s = EmaZScore(alpha=0.97, warmup=25)
    for x, (mean, var) in zip(xs, _reference_stats(xs, 0.97, 25), strict=True):
        s.update_(torch.tensor(x))
        if s.warm:
            assert float(s.mean_) == pytest.approx(mean, rel=1e-5)
            assert float(s.var_) == pytest.approx(var, rel=1e-4)


def test_repeated_updates_in_closed_form_equal_the_loop() -> None:
    once, looped = EmaZScore(alpha=0.9, warmup=2), EmaZScore(alpha=0.9, warmup=2)
    for s in (once, looped):
        s.update_(torch.tensor(1.0))
        s.update_(torch.tensor(3.0))
    once.update_(torch.tensor(7.0), times=torch.tensor(4))
    for _ in range(4):
        looped.update_(torch.tensor(7.0))
    assert float(once.mean_) == pytest.approx(float(looped.mean_), rel=1e-6)
    assert float(once.var_) == pytest.approx(float(looped.var_), rel=1e-5)


def test_a_warmup_of_non_finite_values_flags_nothing_later() -> None:
    s = EmaZScore(warmup=2)
    s.update_(torch.tensor(math.nan))
    s.update_(torch.tensor(math.inf))
    assert s.warm and math.isnan(float(s.mean_))
    assert not bool(s.score(torch.tensor(1.0)) > 6)


def _param(norm: float) -> nn.Parameter:
    """One parameter whose gradient has the given 2-norm (4 equal entries)."""
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), norm / 2)
    return p


def test_skip_decisions_match_the_hand_computed_z_scores_and_spikes_leave_the_stats() -> None:
    norms = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 5.0, 1.05, 50.0, 0.95]
    guard = SkipStepOnSpike(z_thresh=3.0, alpha=0.9, warmup=5, mode="zero")
    mean = var = math.nan
    expected = []
    for i, g in enumerate(norms):
        p = _param(g)
        skip = bool(guard.decide([p]))
        if i < 5:
            want = False
            if i == 4:
                mean = sum(norms[:5]) / 5
                var = sum((v - mean) ** 2 for v in norms[:5]) / 5
        else:
            z = (g - mean) / (math.sqrt(var) + 1e-6)
            want = z > 3.0
            if not want:  # only accepted values update the statistics
                mean = 0.9 * mean + 0.1 * g
                var = 0.9 * var + 0.1 * (g - mean) ** 2
        assert skip == want, f"step {i + 1}"
        expected.append(want)
        assert float(p.grad.norm()) == pytest.approx(0.0 if want else g)  # mode="zero" zeroed it
    assert float(guard.norm_stats_.mean_) == pytest.approx(mean, rel=1e-6)
    assert float(guard.norm_stats_.var_) == pytest.approx(var, rel=1e-5)
    assert guard.skipped_steps() == [i for i, w in enumerate(expected) if w] == [6, 8]
    assert int(guard.n_skipped) == 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))  # ReLU: a ×100 batch is a ×100 output


def _batch(i: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return torch.randn(16, 5, generator=g) * scale, torch.randn(16, 1, generator=g)


def _state(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v.clone() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]


OPTIMIZERS = {
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamw_foreach_off": lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=False),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("how", ["attach", "step", "function"])
def test_a_skipped_step_leaves_parameters_and_optimizer_state_bitwise_unchanged(name: str, how: str) -> None:
    """A run that skips the outlier batch equals, bitwise, a plain run that never saw it."""
    spike_at = 8
    guarded, plain = _model(), _model()
    opt_g, opt_p = OPTIMIZERS[name](guarded.parameters()), OPTIMIZERS[name](plain.parameters())
    guard = SkipStepOnSpike(on="both", warmup=5)
    handle = guard.attach(opt_g) if how == "attach" else None
    for i in range(12):
        x, y = _batch(i, 100.0 if i == spike_at else 1.0)
        loss = nn.functional.mse_loss(guarded(x), y)
        opt_g.zero_grad()
        loss.backward()
        before = ([p.detach().clone() for p in guarded.parameters()], _state(opt_g))
        if how == "attach":
            guard.observe(loss)
            opt_g.step()
        elif how == "step":
            guard.step(opt_g, loss)
        else:
            skip_step_(opt_g, guard.decide(guarded.parameters(), loss=loss))
        if i == spike_at:
            assert all(torch.equal(a, b) for a, b in zip(before[0], guarded.parameters(), strict=True))
            assert all(torch.equal(a, b) for a, b in zip(before[1], _state(opt_g), strict=True))
            continue
        opt_p.zero_grad()
        nn.functional.mse_loss(plain(x), y).backward()
        opt_p.step()
        assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), guarded.parameters(), strict=True)), i
        assert all(torch.equal(a, b) for a, b in zip(_state(opt_p), _state(opt_g), strict=True)), i
    assert guard.skipped_steps() == [spike_at]
    if handle is not None:
        handle.remove()


def test_a_non_finite_gradient_is_skipped_even_in_warm_up_and_leaves_no_nan() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    guard = SkipStepOnSpike(warmup=25)
    with guard.attach(opt):
        x, y = _batch(0)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()  # creates Adam's state
        before = [p.detach().clone() for p in model.parameters()]
        for p in model.parameters():
            p.grad.fill_(math.inf)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(v).all() for s in opt.state.values() for v in s.values())
    assert guard.skipped_steps() == [1]


def test_state_created_by_a_skipped_step_is_zero() -> None:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    skip_step_(opt, torch.tensor(True))
    assert torch.equal(p.detach(), torch.ones(3))
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.zeros(3))


def test_zero_mode_zeroes_the_gradient_but_momentum_still_moves_the_weights() -> None:
    """The documented caveat of mode='zero': exact for plain SGD only."""
    p = nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    guard = SkipStepOnSpike(mode="zero", warmup=2)
    for g in (1.0, 1.1, 1.0):
        p.grad = torch.full((4,), g)
        guard.step(opt)
    before = p.detach().clone()
    p.grad = torch.full((4,), 1e4)
    assert bool(guard.step(opt))
    assert torch.equal(p.grad, torch.zeros(4))
    assert not torch.equal(p.detach(), before)  # moved by the momentum buffer


def test_loss_scoring_without_a_loss_is_a_clear_error() -> None:
    guard = SkipStepOnSpike(on="loss")
    with pytest.raises(ConfigError, match="scores the loss"):
        guard.decide([_param(1.0)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on": "grad"}, "'on' parameter of SkipStepOnSpike"),
        ({"z_thresh": 0}, "'z_thresh' parameter of SkipStepOnSpike must be"),
        ({"alpha": 1.0}, "'alpha' parameter of SkipStepOnSpike must be"),
        ({"warmup": 1}, "'warmup' parameter of SkipStepOnSpike must be an integer >= 2"),
        ({"mode": "drop"}, "'mode' parameter of SkipStepOnSpike"),
    ],
)
def test_skip_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SkipStepOnSpike(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"z_thresh": -1}, "'z_thresh' parameter of ZClip must be"),
        ({"rule": "percentile"}, "'rule' parameter of ZClip"),
        ({"max_norm": 0}, "'max_norm' parameter of ZClip must be"),
        ({"warmup": 2.5}, "'warmup' parameter of ZClip must be an integer"),
    ],
)
def test_zclip_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ZClip(**kwargs)


def test_skip_step_needs_a_bool_decision() -> None:
    opt = torch.optim.SGD([_param(1.0)], lr=0.1)
    with pytest.raises(ConfigError, match="'skip' parameter of skip_step_ must be a 0-d bool tensor"):
        skip_step_(opt, torch.tensor(1.0))


# ---------------------------------------------------------------- ZClip


@pytest.mark.parametrize("rule", ["reciprocal", "threshold", "mean"])
def test_zclip_clips_to_the_expected_norm(rule: str) -> None:
    warm = [1.0, 1.2, 0.8, 1.0]  # μ = 1, σ² = 0.02
    zclip = ZClip(alpha=0.9, z_thresh=2.5, warmup=4, rule=rule)
    for g in warm:
        p = _param(g)
        res = zclip([p])
        assert not bool(res.clipped) and float(p.grad.norm()) == pytest.approx(g)
    mean, sigma = 1.0, math.sqrt(0.02)
    g = 3.0
    z = (g - mean) / (sigma + 1e-6)
    target = {"reciprocal": mean + 2.5**2 / z * sigma, "threshold": mean + 2.5 * sigma, "mean": mean}[rule]
    p = _param(g)
    res = zclip([p])
    assert bool(res.clipped) and float(res.total_norm) == pytest.approx(g)
    assert float(p.grad.norm()) == pytest.approx(target * g / (g + 1e-6), rel=1e-6)
    # the EMA takes the clipped norm, not the spike
    assert float(zclip.stats_.mean_) == pytest.approx(0.9 * mean + 0.1 * target, rel=1e-6)
    new_mean = 0.9 * mean + 0.1 * target
    assert float(zclip.stats_.var_) == pytest.approx(0.9 * 0.02 + 0.1 * (target - new_mean) ** 2, rel=1e-5)
    # a norm below the threshold is left bitwise alone
    p = _param(1.05)
    before = p.grad.clone()
    assert not bool(zclip([p]).clipped) and torch.equal(p.grad, before)
    assert zclip.clipped_steps() == [4] and int(zclip.n_clipped) == 1


def test_zclip_follows_the_papers_algorithm_over_a_series() -> None:
    """Our ZClip against a plain-Python transcription of Algorithm 1 (reciprocal rule), spikes included."""
    gen = torch.Generator().manual_seed(1)
    norms = [float(v) for v in torch.rand(80, generator=gen) + 1]
    for t in (30, 31, 55):
        norms[t] *= 20
    zclip = ZClip(alpha=0.97, z_thresh=2.5, warmup=25)
    buf: list[float] = []
    mean = var = math.nan
    for g in norms:
        p = _param(g)
        zclip([p])
        if len(buf) < 25:
            buf.append(g)
            want = g
            if len(buf) == 25:
                mean = sum(buf) / 25
                var = sum((v - mean) ** 2 for v in buf) / 25
        else:
            z = (g - mean) / (math.sqrt(var) + 1e-6)
            want = mean + 2.5**2 / z * math.sqrt(var) if z > 2.5 else g
            mean = 0.97 * mean + 0.03 * want
            var = 0.97 * var + 0.03 * (want - mean) ** 2
        assert float(p.grad.norm()) == pytest.approx(want, rel=1e-5)
    assert {30, 31, 55} <= set(zclip.clipped_steps())


def test_zclip_max_norm_caps_also_during_warm_up() -> None:
    zclip = ZClip(max_norm=0.5)
    p = _param(2.0)
    assert bool(zclip([p]).clipped)
    assert float(p.grad.norm()) == pytest.approx(0.5, rel=1e-5)


# ---------------------------------------------------------------- no host sync


def test_spike_control_makes_no_host_sync() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    guard = SkipStepOnSpike(on="both", warmup=3)
    zclip = ZClip(warmup=3)
    handle = guard.attach(opt)
    for i in range(8):
        x, y = _batch(i, 100.0 if i == 6 else 1.0)
        with _CountSyncs() as mode:
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            guard.observe(loss)
            zclip(model.parameters())
            opt.step()
        assert mode.syncs == 0, f"step {i}: {mode.syncs} host syncs"
    handle.remove()
    manual = SkipStepOnSpike(on="loss", warmup=3)
    for i in range(6):
        x, y = _batch(i)
        with _CountSyncs() as mode:
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            manual.step(opt, loss)
        assert mode.syncs == 0, f"manual step {i}: {mode.syncs} host syncs"
    assert 6 in guard.skipped_steps()  # the outlier batch; reading the log is the one sync


# ---------------------------------------------------------------- the runner and the monitor


def test_registry_builds_both_with_hooks_for_the_runner() -> None:
    assert registry.get("zclip").kind == registry.get("skip_step_on_spike").kind == "clipping"
    step = registry.build({"skip_step_on_spike": {"z_thresh": 4.0, "loss": 1.0}, "zclip": {}})
    assert step.after_backward is not None and step.attach is not None and step.observe is not None
    assert registry.build({"skip_step_on_spike": {}}).observe is None  # ‖g‖ only by default
    with pytest.raises(ConfigError, match="'loss' parameter of remedy 'skip_step_on_spike' must be 0 or 1"):
        registry.build({"skip_step_on_spike": {"loss": 0.5}})
    with pytest.raises(ConfigError, match="'warmup' parameter of remedy 'zclip' must be an integer"):
        registry.build({"zclip": {"warmup": 2.5}})
    with pytest.raises(ConfigError, match="'alpha' parameter of remedy 'skip_step_on_spike'"):
        registry.build({"skip_step_on_spike": {"alpha": 1.0}})


def test_the_monitor_attributes_a_skipped_spike_to_the_layer_hit_first() -> None:
    """The monitor records the pre-skip gradient: the skipped outlier step is a grad_spike event that names
    the input layer (the one the ×100 batch hits), and the skip left the weights where they were."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = SkipStepOnSpike(on="both", warmup=20, z_thresh=8.0)
    handle = guard.attach(opt)
    with gw.Monitor(model, opt, sync_every=50, weights_every=1) as mon:
        for i in range(40):
            x, y = _batch(i, 100.0 if i == 29 else 1.0)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            mon.step(loss)
            guard.observe(loss)
            opt.step()
        verdict = mon.verdict()
        ratio = mon.history.layers["0"].update_ratio[29]
    handle.remove()
    assert guard.skipped_steps() == [29]  # 0-based, as the monitor counts
    spikes = [e for e in verdict.events if e.kind == "grad_spike"]
    assert [e.step for e in spikes] == [29]
    assert spikes[0].layer == "0"
    assert ratio == 0.0  # the monitor's post-step hook saw the restored weights


def test_a_lasting_rise_is_skipped_at_most_max_consecutive_times() -> None:
    """Unchanged statistics would skip every step after a level shift; the cap lets the new level in."""
    for cap, want in ((3, [5, 6, 7]), (None, list(range(5, 12)))):  # 3 skipped, then the new level is taken
        guard = SkipStepOnSpike(z_thresh=3.0, warmup=5, mode="zero", max_consecutive=cap)
        for g in (1.0, 1.1, 0.9, 1.0, 1.05) + (10.0,) * 7:
            guard.decide([_param(g)])
        assert guard.skipped_steps() == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64])
def test_the_bitwise_restore_is_exact_and_nan_safe(dtype: torch.dtype) -> None:
    from gradwatch.remedies.spike import _Masks, _select_, _zero_where_

    before = torch.tensor([1.5, -2.0, 0.25, 3.0]).to(dtype)
    for skip in (True, False):
        after = torch.tensor([4.0, 5.0, -6.0, 7.0]).to(dtype)
        if dtype.is_floating_point:
            after[1], after[2] = math.nan, -math.inf
        want = before.clone() if skip else after.clone()
        _select_(after, before.clone(), _Masks(torch.tensor(skip)))
        assert torch.equal(after.view(torch.uint8), want.view(torch.uint8))  # bit for bit, NaN included
        zeroed = after.clone()
        _zero_where_([zeroed], _Masks(torch.tensor(skip)))
        assert torch.equal(zeroed.view(torch.uint8), (torch.zeros_like(after) if skip else after).view(torch.uint8))


class _Outlier(nn.Module):
    """A model whose input is scaled ×100 at one training step (counted in forward calls in train mode)."""

    def __init__(self, net: nn.Module, at: int) -> None:
        super().__init__()
        self.net, self.at, self.calls = net, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = x * (100.0 if self.calls == self.at else 1.0)
            self.calls += 1
        out: torch.Tensor = self.net(x)
        return out


@pytest.mark.parametrize("remedy", ["skip_step_on_spike", "zclip"])
def test_the_runner_applies_them_and_leaves_ordinary_steps_alone(remedy: str) -> None:
    from gradwatch.experiments import Spec, build_model, run

    base = {"task": "digits_heldout", "length": 1, "model": "mlp", "hidden": 32, "layers": 3, "activation": "relu"}
    base |= {"init": "he", "steps": 40, "eval_every": 1, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    plain = run(Spec(**base))
    same = run(Spec(**base, remedies={remedy: {"warmup": 10.0}}))
    assert same.loss[:10] == plain.loss[:10]  # warm-up: nothing happens
    if remedy == "skip_step_on_spike":
        assert same.loss == plain.loss  # no spike: every step taken, bitwise
    spec = Spec(**base, remedies={remedy: {"warmup": 10.0}})
    spiked = run(spec, model=_Outlier(build_model(spec), at=30))
    events = [e for e in spiked.verdict["events"] if e["kind"] == "grad_spike"]
    assert [e["step"] for e in events] == [30] and events[0]["layer"].startswith("net.")
    assert not spiked.diverged
