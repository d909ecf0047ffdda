"""The monitor in real training loops: AMP, gradient accumulation, clipping, tied weights, compile.

Every number is checked against a manual computation over ``named_parameters()``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.errors import ConfigError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _batch(step: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _manual(model: nn.Module, divide_by: float = 1.0) -> tuple[float, dict[str, float]]:
    """Global and per-module gradient norms by a plain loop over named_parameters()."""
    per: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        layer = name.rsplit(".", 1)[0]
        per[layer] = per.get(layer, 0.0) + float(p.grad.double().div(divide_by).pow(2).sum())
    return math.sqrt(sum(per.values())), {k: math.sqrt(v) for k, v in per.items()}


def _assert_record(rec: dict, expected: tuple[float, dict[str, float]], rel: float = 1e-5) -> None:
    total, per = expected
    assert rec["global_grad_norm"] == pytest.approx(total, rel=rel)
    for layer, v in per.items():
        assert rec["layers"][layer]["grad_norm"] == pytest.approx(v, rel=rel)


# ---------------------------------------------------------------- AMP


@pytest.mark.parametrize("where", ["after_backward", "after_unscale", "after_update"])
def test_grad_scaler_norms_are_unscaled_wherever_step_is_called(where: str) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2)
    expected = []
    with gw.Monitor(model, opt, scaler=scaler, sync_every=3) as mon:
        for step in range(6):
            x, y = _batch(step)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scale = float(scaler.get_scale())
            expected.append((_manual(model, divide_by=scale), scale))
            if where == "after_backward":
                mon.step(loss)
            scaler.unscale_(opt)
            if where == "after_unscale":
                mon.step(loss)
            scaler.step(opt)
            scaler.update()
            if where == "after_update":
                mon.step(loss)
            opt.zero_grad()
        records = mon.records()
    assert len(records) == 6
    for rec, (exp, scale) in zip(records, expected, strict=True):
        _assert_record(rec, exp)
        assert rec["loss_scale"] == scale
        assert "skipped" not in rec
    assert len({r["loss_scale"] for r in records}) > 1  # the scale grew: the test covers a change of scale
    assert "update" not in scaler.__dict__  # the monitor's shadow of scaler.update is gone after close


@pytest.mark.parametrize("before_update", [True, False])
def test_grad_scaler_skipped_steps_are_recorded(before_update: bool) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    truth = []
    with gw.Monitor(model, opt, scaler=scaler, weights_every=1) as mon:
        for step in range(5):
            x, y = _batch(step)
            loss = nn.functional.cross_entropy(model(x), y)
            if step == 2:
                loss = loss * math.inf  # an overflow, as fp16 produces
            scaler.scale(loss).backward()
            if before_update:
                mon.step(loss)
            before = [p.detach().clone() for p in model.parameters()]
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            if not before_update:
                mon.step(loss)
            moved = any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
            truth.append((not moved, scaler.get_scale() < scale))
            opt.zero_grad()
        records = mon.records()
    assert [t[0] for t in truth] == [False, False, True, False, False]  # ground truth: parameters frozen at 2
    assert truth[2][1]  # and the scale backed off
    for rec, (frozen, _) in zip(records, truth, strict=True):
        assert rec.get("skipped", False) is frozen
        if frozen:
            assert "inf/NaN" in rec["skip_reason"]
            # no update happened: no update ratio is attributed to the skipped step
            assert all(s["update_ratio"] is None for s in rec["layers"].values())
        else:
            assert all(s["update_ratio"] is not None and s["update_ratio"] > 0 for s in rec["layers"].values())
    h = gw.History.from_records(records)
    assert h.skipped.tolist() == [False, False, True, False, False]


def test_a_disabled_grad_scaler_is_plain_fp32() -> None:
    """GradScaler(enabled=False), the usual "AMP off" switch, records as if there were no scaler."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    expected = []
    with gw.Monitor(model, opt, scaler=scaler) as mon:
        for step in range(3):
            x, y = _batch(step)
            loss = nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            expected.append(_manual(model))
            mon.step(loss)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
        records = mon.records()
    for rec, exp in zip(records, expected, strict=True):
        _assert_record(rec, exp)
        assert "loss_scale" not in rec and "skipped" not in rec


def test_bf16_autocast_norms_match_manual() -> None:
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    expected = []
    with gw.Monitor(model, opt) as mon:
        for step in range(3):
            x, y = _batch(step)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            expected.append(_manual(model))
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        for rec, exp in zip(mon.records(), expected, strict=True):
            _assert_record(rec, exp)


def test_scaler_needs_optimizer_and_a_scaler() -> None:
    model = _net()
    with pytest.raises(ConfigError, match="needs the optimizer"):
        gw.Monitor(model, scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(ConfigError, match=r"GradScaler or None\. Got int"):
        gw.Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), scaler=3)


# ---------------------------------------------------------------- accumulation


def test_accumulation_one_record_per_optimizer_step_of_the_accumulated_gradient() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    k, expected, losses = 4, [], []
    with gw.Monitor(model, opt, accumulation_steps=k, weights_every=1) as mon:
        for step in range(3):
            micro = []
            for j in range(k):
                x, y = _batch(10 * step + j, n=4)
                loss = nn.functional.cross_entropy(model(x), y) / k
                loss.backward()
                micro.append(float(loss))
                mon.step(loss)
            expected.append(_manual(model))
            losses.append(np.mean(micro))
            opt.step()
            opt.zero_grad()
        records = mon.records()
    assert [r["step"] for r in records] == [0, 1, 2]
    for rec, exp, loss in zip(records, expected, losses, strict=True):
        _assert_record(rec, exp)
        assert rec["loss"] == pytest.approx(loss, rel=1e-6)
        assert all(s["update_ratio"] > 0 for s in rec["layers"].values())


def test_accumulation_full_batch_equivalence() -> None:
    """Four micro-batches of 4 accumulated (loss / 4) = one batch of 16: same recorded norm."""
    records = []
    for k in (1, 4):
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = _batch(0, n=16)
        with gw.Monitor(model, opt, accumulation_steps=k) as mon:
            for xs, ys in zip(x.chunk(k), y.chunk(k), strict=True):
                (nn.functional.cross_entropy(model(xs), ys) / k).backward()
                mon.step()
            opt.step()
            records.append(mon.records())
    assert len(records[0]) == len(records[1]) == 1
    assert records[1][0]["global_grad_norm"] == pytest.approx(records[0][0]["global_grad_norm"], rel=1e-5)


def test_calling_step_per_micro_batch_without_the_option_warns() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gw.Monitor(model, opt) as mon:
        for step in range(2):
            for j in range(2):
                x, y = _batch(step * 2 + j)
                nn.functional.cross_entropy(model(x), y).backward()
                if step == 1 and j == 1:
                    with pytest.warns(gw.GradwatchWarning, match="accumulation_steps"):
                        mon.step()
                else:
                    mon.step()
            opt.step()
            opt.zero_grad()


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("max_norm", [0.05, 1e9])
def test_pre_and_post_clip_norms_and_clip_rate(max_norm: float) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pre, post = [], []
    with gw.Monitor(model, opt, sync_every=2) as mon:
        for step in range(5):
            x, y = _batch(step)
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()  # before clipping: the gradient as backprop produced it
            pre.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
            post.append(_manual(model)[0])
            opt.step()
            opt.zero_grad()
        records = mon.records()
        assert mon.last_record() == records[-1] and mon.last_record()["step"] == 4
    h = mon.history
    for rec, a, b in zip(records, pre, post, strict=True):
        assert rec["global_grad_norm"] == pytest.approx(a, rel=1e-5)
        if max_norm < 1:
            assert rec["clip"]["pre"] == pytest.approx(a, rel=1e-5)
            assert rec["clip"]["post"] == pytest.approx(b, rel=1e-5)
            assert b == pytest.approx(max_norm, rel=1e-4)
        else:
            assert "clip" not in rec  # nothing was clipped: no clutter
    assert h.clip_rate(window=3).tolist() == ([1.0] * 5 if max_norm < 1 else [0.0] * 5)


def test_clip_true_records_pre_and_post_on_every_step_and_sinks_get_them(tmp_path) -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gw.Monitor(model, opt, clip=True, log=tmp_path / "log.jsonl") as mon:
        for step in range(3):
            x, y = _batch(step)
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9 if step != 1 else 0.01)
            opt.step()
            opt.zero_grad()
    h = gw.read_jsonl(tmp_path / "log.jsonl")
    assert np.isfinite(h.clip_pre).all() and np.isfinite(h.clip_post).all()
    assert (h.clip_post < h.clip_pre).tolist() == [False, True, False]
    with pytest.raises(ConfigError, match="'clip' parameter of Monitor must be None, True or False"):
        gw.Monitor(model, clip="yes")


# ---------------------------------------------------------------- models no one here wrote


class _TiedLM(nn.Module):
    """Embedding and output layer share one weight, as GPT-2's wte and lm_head do."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.emb(ids))))


def test_tied_weights_are_counted_once() -> None:
    torch.manual_seed(0)
    model = _TiedLM()
    ids = torch.randint(0, 11, (4, 5))
    with gw.Monitor(model) as mon:
        nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
        mon.step()
        rec = mon.records()[0]
    total, per = _manual(model)
    assert rec["global_grad_norm"] == pytest.approx(total, rel=1e-6)
    assert set(rec["layers"]) == {"emb", "mix"}  # the shared weight belongs to its first owner
    assert rec["layers"]["emb"]["grad_norm"] == pytest.approx(per["emb"], rel=1e-6)


class _SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def test_cnn_per_layer_norms_equal_a_manual_loop() -> None:
    torch.manual_seed(0)
    model = _SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    expected = []
    with gw.Monitor(model, opt) as mon:
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
            nn.functional.cross_entropy(model(x), y).backward()
            expected.append(_manual(model))
            mon.step()
            opt.step()
            opt.zero_grad()
        records = mon.records()
    for rec, exp in zip(records, expected, strict=True):
        _assert_record(rec, exp)
        assert list(rec["layers"]) == [
            "features.0",
            "features.1",
            "features.4",
            "features.5",
            "classifier",
        ]


# ---------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_model_same_numbers_as_eager(backend: str) -> None:
    records = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        target = torch.compile(model, backend=backend) if compiled else model
        with gw.Monitor(target, opt, activations_every=2, weights_every=2) as mon:
            for step in range(4):
                x, y = _batch(step)
                nn.functional.cross_entropy(target(x), y).backward()
                mon.step()
                opt.step()
                opt.zero_grad()
            records[compiled] = mon.records()
    for eager, comp in zip(records[False], records[True], strict=True):
        assert comp["global_grad_norm"] == pytest.approx(eager["global_grad_norm"], rel=1e-5)
        names = [n.removeprefix("_orig_mod.") for n in comp["layers"]]
        assert names == list(eager["layers"])
        for n, stats in comp["layers"].items():
            e = eager["layers"][n.removeprefix("_orig_mod.")]
            assert stats["grad_norm"] == pytest.approx(e["grad_norm"], rel=1e-5)
            if e["update_ratio"] is not None:
                assert stats["update_ratio"] == pytest.approx(e["update_ratio"], rel=1e-4)
        if "activations" in eager:
            for n, a in eager["activations"].items():
                assert comp["activations"]["_orig_mod." + n]["fraction"] == pytest.approx(a["fraction"], abs=1e-6)
