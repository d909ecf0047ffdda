"""Misuse lints: each one on the real misuse, warned once and recorded; the correct loop stays silent.

The silent cases run with GradwatchWarning turned into an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.monitor.lints import LINT_KINDS


def _net(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _batch(i: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(16, 6, generator=g).to(dtype), torch.randint(0, 3, (16,), generator=g)


def _loss(model: nn.Module, i: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x, y = _batch(i, dtype)
    return nn.functional.cross_entropy(model(x).float(), y)


def _lints(loop: Callable[[], gw.Monitor]) -> tuple[list[str], list[str], gw.Monitor]:
    """Run ``loop`` (it returns its closed monitor); the lint kinds warned, their messages, the monitor."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = loop()
    ours = [w for w in caught if issubclass(w.category, gw.GradwatchWarning)]
    kinds = [lint.kind for lint in mon.history.lints]
    assert len(ours) == len(kinds)  # every warning is recorded, once
    for w in ours:
        assert w.filename == __file__  # it points at the user's line
    return kinds, [str(w.message) for w in ours], mon


def _silent(loop: Callable[[], gw.Monitor]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", gw.GradwatchWarning)
        mon = loop()
    assert mon.history.lints == []


# ---------------------------------------------------------------- clipping and the GradScaler


def _amp_loop(order: str) -> gw.Monitor:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    with gw.Monitor(model, opt, scaler=scaler) as mon:
        for i in range(4):
            scaler.scale(_loss(model, i)).backward()
            mon.step()
            if order == "clip_scaled":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the misuse: still scaled
                scaler.unscale_(opt)
            elif order == "mon_clip_scaled":
                mon.clip_grad_norm_(1.0)
            else:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    return mon


@pytest.mark.parametrize("order", ["clip_scaled", "mon_clip_scaled"])
def test_clipping_scaled_gradients(order: str) -> None:
    kinds, messages, mon = _lints(lambda: _amp_loop(order))
    assert kinds == ["clip_scaled"]
    assert "scaler.unscale_(optimizer) before clip_grad_norm_" in messages[0]
    assert mon.history.lints[0].step == 0


def test_clipping_after_unscale_is_silent() -> None:
    _silent(lambda: _amp_loop("correct"))


def _sgd_loop(clip: str, steps: int = 4) -> gw.Monitor:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gw.Monitor(model, opt) as mon:
        for i in range(steps):
            _loss(model, i).backward()
            mon.step()
            if clip == "before":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            elif clip == "mon":
                mon.clip_grad_norm_(0.1)
            opt.step()
            if clip == "after":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)  # the misuse
            elif clip == "mon_after":
                mon.clip_grad_norm_(0.1)
            opt.zero_grad()
    return mon


@pytest.mark.parametrize("clip", ["after", "mon_after"])
def test_clipping_after_the_optimizer_step(clip: str) -> None:
    kinds, messages, mon = _lints(lambda: _sgd_loop(clip))
    assert kinds == ["clip_after_step"] and mon.history.lints[0].step == 0
    assert "between loss.backward() and optimizer.step()" in messages[0]


@pytest.mark.parametrize("clip", ["before", "mon", "none"])
def test_clipping_before_the_step_is_silent(clip: str) -> None:
    _silent(lambda: _sgd_loop(clip))


# ---------------------------------------------------------------- zero_grad


def _accumulating_loop(zero: str, steps: int = 8) -> gw.Monitor:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.Monitor(model, opt, sync_every=3) as mon:
        for i in range(steps):
            if zero == "model_in_place":
                model.zero_grad(set_to_none=False)
            _loss(model, i).backward()
            mon.step()
            opt.step()
            if zero == "optimizer":
                opt.zero_grad()
            elif zero == "optimizer_in_place":
                opt.zero_grad(set_to_none=False)
    return mon


def test_gradients_accumulating_without_zero_grad() -> None:
    kinds, messages, mon = _lints(lambda: _accumulating_loop("never"))
    assert kinds == ["no_zero_grad"]
    assert "optimizer.zero_grad()" in messages[0]
    # reference: the recorded norm is that of the running sum of every step's own gradient
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(3):
        _loss(model, i).backward()
        opt.step()
    total = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
    assert mon.history.global_grad_norm[2] == pytest.approx(total, rel=1e-5)
    g = mon.history.global_grad_norm
    assert g[-1] > 2 * g[0]


@pytest.mark.parametrize("zero", ["optimizer", "optimizer_in_place", "model_in_place"])
def test_zeroing_the_gradient_is_silent(zero: str) -> None:
    _silent(lambda: _accumulating_loop(zero, steps=12))


def test_manual_loop_without_zero_grad() -> None:
    def loop() -> gw.Monitor:
        model = _net()
        with gw.Monitor(model, sync_every=4) as mon:
            for i in range(8):
                loss = _loss(model, i)
                loss.backward()
                mon.step(loss)
                for p in model.parameters():
                    p.data.add_(p.grad, alpha=-0.01)  # no model.zero_grad(): the gradients pile up
        return mon

    kinds, _, _ = _lints(loop)
    assert kinds == ["no_zero_grad"]


# ---------------------------------------------------------------- micro-batches


def test_step_per_micro_batch_is_recorded() -> None:
    def loop() -> gw.Monitor:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with gw.Monitor(model, opt) as mon:
            for step in range(3):
                for j in range(2):
                    _loss(model, 2 * step + j).backward()
                    mon.step()
                opt.step()
                opt.zero_grad()
        return mon

    kinds, messages, _ = _lints(loop)
    assert kinds == ["step_per_micro_batch"] and "accumulation_steps" in messages[0]

    def with_option() -> gw.Monitor:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with gw.Monitor(model, opt, accumulation_steps=2) as mon:
            for step in range(3):
                for j in range(2):
                    _loss(model, 2 * step + j).backward()
                    mon.step()
                opt.step()
                opt.zero_grad()
        return mon

    _silent(with_option)


# ---------------------------------------------------------------- float16 and infinite norms


def _fp16_loop(scale: float, clip: bool) -> gw.Monitor:
    model = _net(dtype=torch.float16)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    with gw.Monitor(model, opt) as mon:
        for i in range(2):
            (_loss(model, i, torch.float16) * scale).backward()
            mon.step()
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) if clip else None
            if i == 0 and clip and scale > 1:
                assert math.isinf(float(total))  # torch's own norm, in float16
                assert all(float(p.grad.abs().max()) == 0 for p in model.parameters())  # scaled by 1/inf
            opt.step()
            opt.zero_grad()
    return mon


def test_a_float16_norm_that_overflows_and_a_clip_that_returns_inf() -> None:
    kinds, messages, mon = _lints(lambda: _fp16_loop(2e5, clip=True))
    assert sorted(kinds) == ["clip_inf", "fp16_norm_overflow"]
    fp16 = messages[kinds.index("fp16_norm_overflow")]
    assert "65504" in fp16 and "float32" in fp16
    # reference: every element is finite in float16, their norm (in float64) is above 65504
    model = _net(dtype=torch.float16)
    (_loss(model, 0, torch.float16) * 2e5).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)) > 65504
    assert mon.first_nonfinite is None  # finite elements: not a NaN/Inf event


def test_small_float16_gradients_are_silent() -> None:
    _silent(lambda: _fp16_loop(1.0, clip=True))


def test_a_clip_reported_as_inf() -> None:
    def loop() -> gw.Monitor:
        model = _net()
        with gw.Monitor(model) as mon:
            for i in range(3):
                loss = _loss(model, i)
                loss.backward()
                if i == 1:
                    model[0].weight.grad[0, 0] = math.inf
                total = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                mon.step(loss, clip=total)
                model.zero_grad()
        return mon

    kinds, messages, mon = _lints(loop)
    assert kinds == ["clip_inf"] and "step 1" in messages[0]
    assert mon.history.lints[0].step == 1


# ---------------------------------------------------------------- records


def test_lints_are_in_the_log_and_read_back(tmp_path) -> None:
    path = tmp_path / "run.jsonl"

    def loop() -> gw.Monitor:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with gw.Monitor(model, opt, log=path, sync_every=2) as mon:
            for i in range(5):
                _loss(model, i).backward()
                mon.step()
                opt.step()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                opt.zero_grad()
        return mon

    _, _, mon = _lints(loop)
    assert gw.read_jsonl(path).lints == mon.history.lints
    assert [lint.kind for lint in mon.history.lints] == ["clip_after_step"]
    assert set(LINT_KINDS) == {
        "clip_after_step",
        "clip_inf",
        "clip_scaled",
        "fp16_norm_overflow",
        "no_zero_grad",
        "step_per_micro_batch",
    }


def test_lints_off_and_hooks_restored() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu")
    mon = gw.Monitor(model, opt, scaler=scaler)
    assert "zero_grad" in vars(opt) and "unscale_" in vars(scaler)
    mon.close()
    assert "zero_grad" not in vars(opt) and "unscale_" not in vars(scaler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gw.GradwatchWarning)
        with gw.Monitor(model, opt, lints=False) as mon:
            assert "zero_grad" not in vars(opt)
            for i in range(3):
                _loss(model, i).backward()
                mon.step()
                opt.step()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                opt.zero_grad()
