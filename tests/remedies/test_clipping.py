"""Clipping against manual formulas and numpy's percentile."""

import numpy as np
import pytest
import torch
from torch import nn

from gradwatch.errors import ConfigError
from gradwatch.remedies import clipping


def params_with_grads(seed=0, scale=10.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * scale
    return model


def test_clip_grad_norm_scales_to_the_threshold_and_reports():
    model = params_with_grads()
    before = [p.grad.clone() for p in model.parameters()]
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in before)))
    res = clipping.clip_grad_norm_(model.parameters(), 1.0)
    assert float(res.total_norm) == pytest.approx(norm, rel=1e-6)
    assert bool(res.clipped)
    for p, b in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad, b * (1.0 / (norm + 1e-6)), rtol=1e-5, atol=0)
    after = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))
    assert after == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_acts_on_a_norm_measured_elsewhere():
    model = params_with_grads()
    before = [p.grad.clone() for p in model.parameters()]
    res = clipping.clip_grad_norm_(model.parameters(), 1.0, total_norm=torch.tensor(4.0))
    assert float(res.total_norm) == 4.0
    for p, b in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad, b * (1.0 / (4.0 + 1e-6)))


def test_no_clipping_below_the_threshold():
    model = params_with_grads(scale=1e-3)
    before = [p.grad.clone() for p in model.parameters()]
    res = clipping.clip_grad_norm_(model.parameters(), 10.0)
    assert not bool(res.clipped)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.grad, b)


def test_clip_grad_value_matches_clamp_and_counts():
    model = params_with_grads()
    before = [p.grad.clone() for p in model.parameters()]
    res = clipping.clip_grad_value_(model.parameters(), 5.0)
    changed = sum(int((b.abs() > 5.0).sum()) for b in before)
    total = sum(b.numel() for b in before)
    assert float(res.fraction) == pytest.approx(changed / total)
    assert float(res.total_norm) == pytest.approx(max(float(b.abs().max()) for b in before))
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.grad, b.clamp(-5.0, 5.0))


def test_adaptive_clipping_matches_the_unitwise_formula():
    model = params_with_grads(scale=1.0)
    lam, eps = 0.05, 1e-3
    expected = []
    for p in model.parameters():
        g, w = p.grad.clone(), p.detach().clone()
        if p.dim() == 1:
            wn, gn = max(float(w.norm()), eps), float(g.norm())
            expected.append(g * (lam * wn / gn) if gn / wn > lam else g)
        else:
            rows = []
            for i in range(g.shape[0]):
                wn, gn = max(float(w[i].norm()), eps), float(g[i].norm())
                rows.append(g[i] * (lam * wn / gn) if gn / wn > lam else g[i])
            expected.append(torch.stack(rows))
    res = clipping.adaptive_clip_grad_(model.parameters(), clipping=lam, eps=eps)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    assert 0 < float(res.fraction) <= 1


def test_adaptive_clipping_floors_zero_weights_at_eps():
    lin = nn.Linear(3, 2)
    nn.init.zeros_(lin.weight)
    lin.weight.grad = torch.ones(2, 3)
    clipping.adaptive_clip_grad_([lin.weight], clipping=0.1, eps=1e-3)
    # each row: ‖G_i‖ = √3 → scaled to 0.1 · 1e-3
    torch.testing.assert_close(lin.weight.grad.norm(dim=1), torch.full((2,), 1e-4))


def test_autoclip_thresholds_are_numpy_percentiles_of_the_history():
    torch.manual_seed(0)
    clip = clipping.AutoClip(percentile=25)
    lin = nn.Linear(4, 4)
    history = []
    for _ in range(12):
        lin.weight.grad = torch.randn(4, 4) * float(torch.rand(()) * 10)
        lin.bias.grad = None
        norm = float(lin.weight.grad.double().norm())
        history.append(norm)
        res = clip([lin.weight, lin.bias])
        expected = np.percentile(history, 25)
        assert float(res.threshold) == pytest.approx(expected, rel=1e-6)  # norms measured in float32
        assert float(lin.weight.grad.double().norm()) == pytest.approx(min(norm, expected), rel=1e-5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: clipping.AutoClip(percentile=0), r"'percentile' parameter of AutoClip must be in \(0, 100\]\. Got 0"),
        (lambda: clipping.AutoClip(percentile=120), r"Got 120 instead"),
        (lambda: clipping.clip_grad_norm_([], 0.0), r"'max_norm' .* > 0"),
        (lambda: clipping.clip_grad_value_([], -1.0), r"'clip_value'"),
        (lambda: clipping.adaptive_clip_grad_([], clipping=0.0), r"'clipping'"),
    ],
)
def test_bad_parameters_are_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_autoclip_makes_no_host_sync() -> None:
    """Its threshold stays a device tensor (torch's clip_grads_with_norm_ would call float() on it)."""
    from tests.monitor.test_collectors import _CountSyncs

    p = torch.nn.Parameter(torch.zeros(4))
    auto = clipping.AutoClip(percentile=50)
    for g in (1.0, 3.0, 2.0):
        p.grad = torch.full((4,), g)
        with _CountSyncs() as mode:
            auto([p])
        assert mode.syncs == 0
    assert float(p.grad.norm()) == pytest.approx(4.0 * 4.0 / (4.0 + 1e-6), rel=1e-6)  # at the median of 2, 6, 4
