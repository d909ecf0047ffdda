"""Where the first NaN/Inf came from, by default: forward or backward, which module, which tensor.

The reference for every location is autograd itself: which parameters' ``.grad`` are
non-finite after the same backward, and which module's output first is, found by a plain
loop over the model.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.monitor.collectors.nonfinite import AUTO_TRACE_CALLS


class NaNAtStep(nn.Module):
    """A parameter-free module that turns its input into NaN at chosen steps (``now``, set by the loop):
    a forward fault that a replay of the same step reproduces, as log(0) or 0/0 on the same batch do."""

    def __init__(self, at: set[int]) -> None:
        super().__init__()
        self.at, self.now = at, -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan") if self.now in self.at else x


class NaNAt(nn.Module):
    """A parameter-free module that turns its input into NaN on chosen calls (a planted forward fault
    that depends on hidden state, so a replay of the same step does not reproduce it)."""

    def __init__(self, at: set[int]) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * float("nan") if self.calls - 1 in self.at else x


class WhereSqrt(nn.Module):
    """``where(x > 0, sqrt(x), 0)``: finite forward, NaN backward (the masked branch's sqrt(x < 0))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x.sqrt(), torch.zeros_like(x))


def _mlp(middle: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), middle, nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def _no_hooks(model: nn.Module) -> bool:
    """No tracing hook on any leaf module (the model itself keeps the monitor's input reference hook)."""
    leaves = [m for m in model.modules() if not list(m.children())]
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in leaves)


def test_a_forward_nan_is_located_at_once_by_replaying_its_forward() -> None:
    """The issue's case: a parameter-free module in the middle of an MLP makes NaN, the optimizer then
    writes NaN into every weight. The module is named by default, at the step it happened."""
    model = _mlp(NaNAtStep({3}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bn_free_reference = [p.detach().clone() for p in model.parameters()]
    with gw.Monitor(model, opt, sync_every=50) as mon:
        for i in range(8):
            x, y = _batch(i)
            model[3].now = i
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        nf = mon.first_nonfinite
    # reference: a plain loop over the modules of that step's forward, before the update
    assert (nf.step, nf.origin, nf.module, nf.tensor) == (3, "forward", "3", "forward output")
    assert "made in the forward pass" in str(nf) and "recurred" not in str(nf)
    assert _no_hooks(model) and len(bn_free_reference) == 8


def test_replaying_a_forward_changes_nothing_in_training() -> None:
    """Same losses and weights, bitwise, with and without the monitor, through a NaN, dropout and batch norm."""

    def train(monitored: bool) -> tuple[list[float], list[torch.Tensor]]:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), NaNAtStep({2}), nn.Linear(16, 3)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = gw.Monitor(model, opt) if monitored else None
        losses = []
        for i in range(4):
            x, y = _batch(i)
            model[3].now = i
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            if mon is not None:
                mon.step(loss)
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
        if mon is not None:
            assert mon.first_nonfinite.module == "3"
            mon.close()
        return losses, [t.detach().clone() for t in model.state_dict().values()]

    (la, sa), (lb, sb) = train(False), train(True)
    assert np.array_equal(np.array(la), np.array(lb), equal_nan=True)
    assert all(torch.equal(a, b) or (a.isnan() == b.isnan()).all() for a, b in zip(sa, sb, strict=True))


def test_a_forward_nan_is_told_from_the_loss_and_located_when_it_recurs() -> None:
    # a fault that a replay does not reproduce (hidden state): the replay at step 3 is call 4,
    # so the fault's call 8 is step 7, where the armed hooks locate it
    model = _mlp(NaNAt({3, 8}))
    mon = gw.Monitor(model, sync_every=1, activations_every=None)  # trace_nonfinite="auto" by default
    for i in range(10):
        x, y = _batch(i)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        model.zero_grad()  # no update: the weights stay finite, so the fault can recur from its source
        assert _no_hooks(model) == (i < 3 or i >= 7)  # armed from the first NaN to its recurrence
        if i == 3:  # found at this step's sync: the tracing hooks are armed for the next occurrence
            nf = mon.first_nonfinite
            assert (nf.step, nf.origin, nf.tensor, nf.module, nf.value) == (3, "forward", "loss", "", "nan")
            assert not _no_hooks(model)
    nf = mon.first_nonfinite
    # reference: the first module whose output is NaN at step 7 is the planted one, "3"
    assert (nf.step, nf.origin, nf.module, nf.tensor, nf.traced_step) == (3, "forward", "3", "forward output", 7)
    assert "located when it recurred at step 7" in str(nf)
    assert _no_hooks(model)  # one recurrence located: the hooks are gone again
    assert mon.verdict().status == "nonfinite"
    h = mon.history
    assert np.isnan(h.loss[[3, 7]]).all() and np.isfinite(np.delete(h.loss, [3, 7])).all()
    mon.close()


def test_a_backward_nan_is_located_between_the_last_non_finite_and_the_first_finite_layer() -> None:
    model = _mlp(WhereSqrt())
    mon = gw.Monitor(model)
    x, y = _batch(0)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    mon.step(loss)
    # reference: autograd's own gradients — non-finite up to layer "2", finite from layer "4" on
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert bad == ["0.weight", "0.bias", "2.weight", "2.bias"] and math.isfinite(float(loss.detach()))
    nf = mon.first_nonfinite
    # the deepest non-finite parameter gradient is 2.weight; the one module of the user's own
    # that ran after layer "2" (and before "4", whose gradient is finite) is "3": the source
    assert (nf.step, nf.origin, nf.module, nf.parameter, nf.tensor, nf.value) == (
        0,
        "backward",
        "3",
        "2.weight",
        "gradient w.r.t. input",
        "nan",
    )
    assert "backward pass" in str(nf) and "inferred" in str(nf)
    mon.close()
    # with torch's own modules only after that layer, the layer itself is named
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    mon = gw.Monitor(model)
    x, y = _batch(0)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model[2].weight.grad[0, 0] = math.nan  # as if layer "2"'s own backward had made it
    model[0].weight.grad[0, 0] = math.nan
    mon.step(loss)
    nf = mon.first_nonfinite
    assert (nf.origin, nf.module, nf.parameter, nf.tensor) == ("backward", "2", "2.weight", "parameter gradient")
    assert "every layer after it has a finite gradient" in str(nf)
    mon.close()


def test_without_the_loss_finite_output_layers_still_mean_backward() -> None:
    model = _mlp(WhereSqrt())
    mon = gw.Monitor(model)
    x, y = _batch(0)
    nn.functional.cross_entropy(model(x), y).backward()
    mon.step()  # no loss passed
    nf = mon.first_nonfinite
    assert (nf.origin, nf.module, nf.parameter) == ("backward", "3", "2.weight")
    mon.close()


def test_an_inf_loss_with_finite_gradients_is_nonfinite_not_healthy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    mon = gw.Monitor(model)
    x, y = _batch(0)
    loss = nn.functional.cross_entropy(model(x), y % 4) + torch.tensor(math.inf)  # d/dθ is finite
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    mon.step(loss)
    nf = mon.first_nonfinite
    assert (nf.step, nf.origin, nf.tensor, nf.value) == (0, "forward", "loss", "inf")
    assert mon.verdict().status == "nonfinite"
    mon.close()


def test_on_nonfinite_warn_arms_the_hooks_at_once() -> None:
    model = _mlp(NaNAt({1, 2}))
    mon = gw.Monitor(model, on_nonfinite="warn")  # sync_every=50: the warning's own check arms them
    messages = []
    for i in range(3):
        x, y = _batch(i)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mon.step(loss)
        messages.append([str(w.message) for w in caught])
        model.zero_grad()
    assert messages[0] == []
    assert "first nan at step 1" in messages[1][0] and "forward pass" in messages[1][0]
    nf = mon.first_nonfinite
    # the replay of step 1's forward is the module's call 2, which is NaN again: located at step 1 itself
    assert (nf.step, nf.module, nf.tensor, nf.traced_step) == (1, "3", "forward output", 1)
    mon.close()


def test_recurrence_from_non_finite_weights_is_not_taken_for_the_origin() -> None:
    # the optimizer writes the NaN gradient into every weight: every later forward is NaN from
    # layer "0" on, which says nothing about where the first NaN came from
    model = _mlp(NaNAt({2}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, sync_every=1)
    for i in range(6):
        x, y = _batch(i)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
    assert not torch.isfinite(model[0].weight).all()
    nf = mon.first_nonfinite
    assert (nf.step, nf.origin, nf.module, nf.tensor, nf.traced_step) == (2, "forward", "", "loss", None)
    assert _no_hooks(model)  # the weights are NaN: tracing stopped
    mon.close()


def test_auto_tracing_gives_up_after_its_window() -> None:
    model = _mlp(NaNAt({0}))
    mon = gw.Monitor(model, sync_every=1, weights_every=None, activations_every=None)
    for i in range(AUTO_TRACE_CALLS + 2):
        x, y = _batch(i % 4)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        model.zero_grad()
        if i == 1:
            assert not _no_hooks(model)
    assert _no_hooks(model) and mon.first_nonfinite.traced_step is None
    mon.close()


def test_trace_false_never_hooks_and_trace_is_validated() -> None:
    model = _mlp(NaNAt({0, 1}))
    mon = gw.Monitor(model, trace_nonfinite=False, sync_every=1)
    for i in range(2):
        x, y = _batch(i)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        assert _no_hooks(model)
        model.zero_grad()
    assert mon.first_nonfinite.origin == "forward"
    mon.close()
    with pytest.raises(gw.ConfigError, match="'trace_nonfinite' parameter of Monitor must be True, False or 'auto'"):
        gw.Monitor(model, trace_nonfinite="yes")


@pytest.mark.parametrize("before_update", [True, False])
def test_steps_a_grad_scaler_skipped_are_not_a_nonfinite_event(before_update: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    with gw.Monitor(model, opt, scaler=scaler, sync_every=1) as mon:  # a sync between step and update
        for i in range(4):
            x, y = _batch(i)
            loss = nn.functional.cross_entropy(model(x[:, :6]), y)
            scaler.scale(loss * (math.inf if i == 1 else 1.0)).backward()
            if before_update:
                mon.step(loss)
            scaler.step(opt)
            scaler.update()
            if not before_update:
                mon.step(loss)
            opt.zero_grad()
        assert mon.history.skipped.tolist() == [False, True, False, False]
        assert mon.first_nonfinite is None
        # an Inf the scaler does not skip (in the loss only: the gradients are finite) is one
        loss = nn.functional.cross_entropy(model(x[:, :6]), y) + torch.tensor(math.inf)
        scaler.scale(loss).backward()
        mon.step(loss)
        assert mon.first_nonfinite is None  # undecided until scaler.update() says whether it skipped
        scaler.step(opt)
        scaler.update()
        assert not mon.history.skipped[4]
        assert (mon.first_nonfinite.step, mon.first_nonfinite.origin) == (4, "forward")


def test_origin_and_traced_location_survive_the_log_and_old_logs_load(tmp_path) -> None:
    model = _mlp(NaNAt({1, 4}))  # call 2 is the monitor's replay at step 1 (finite: hidden state), call 4 step 3
    path = tmp_path / "run.jsonl"
    with gw.Monitor(model, log=path, sync_every=1) as mon:
        for i in range(5):
            x, y = _batch(i)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            model.zero_grad()
        live = mon.first_nonfinite
    assert live.traced_step == 3
    assert gw.read_jsonl(path).nonfinite == live
    old = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in old:  # a log written before origins existed
        if "nonfinite" in rec:
            rec["nonfinite"] = {k: rec["nonfinite"][k] for k in ("step", "module", "tensor", "parameter", "value")}
    nf = gw.History.from_records(old).nonfinite
    assert (nf.step, nf.origin, nf.traced_step) == (1, None, None)
