"""The monitor against manual loops over named_parameters(), and its contracts."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.errors import ConfigError, GradwatchError, SinkClosedError


def mlp(depth=4, width=16, act=nn.Sigmoid, seed=0, in_dim=8, out_dim=3):
    torch.manual_seed(seed)
    layers = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, out_dim))


def batches(n, seed=0, in_dim=8, out_dim=3, batch=32):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, in_dim, generator=g), torch.randint(0, out_dim, (batch,), generator=g)) for _ in range(n)
    ]


def manual_stats(model):
    """Independent reference: a plain loop over named_parameters(), float64."""
    out = {}
    for name, module in model.named_modules():
        ps = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not ps:
            continue
        out[name] = {
            "grad_norm": math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in ps)),
            "grad_max": max(float(p.grad.double().abs().max()) for p in ps),
            "param_norm": math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in ps)),
        }
    return out


@pytest.mark.parametrize("order", ["monitor_first", "optimizer_first"])
def test_per_layer_statistics_and_update_ratio_match_a_manual_loop(order):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mon = gw.Monitor(model, opt, sync_every=3, weights_every=1, grad_max=True)
    expected = []
    for x, y in batches(7):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        ref = manual_stats(model)
        before = {
            n: [p.detach().double().clone() for p in m.parameters(recurse=False)] for n, m in model.named_modules()
        }
        if order == "monitor_first":
            mon.step(loss)
            opt.step()
        else:
            opt.step()
            mon.step(loss)
        for n, m in model.named_modules():
            if n in ref:
                d = math.sqrt(
                    sum(
                        float((p.detach().double() - b).pow(2).sum())
                        for p, b in zip(m.parameters(recurse=False), before[n], strict=True)
                    )
                )
                w = math.sqrt(sum(float(b.pow(2).sum()) for b in before[n]))
                ref[n]["update_ratio"] = d / w
        ref["__loss"] = float(loss.detach())
        expected.append(ref)
        opt.zero_grad()
    h = mon.history
    assert h.n_steps == 7
    for s, ref in enumerate(expected):
        assert h.loss[s] == pytest.approx(ref["__loss"], rel=1e-6)
        total = 0.0
        for name, lh in h.layers.items():
            # grad/param norms: monitor uses float32 reductions, reference float64
            assert lh.grad_norm[s] == pytest.approx(ref[name]["grad_norm"], rel=1e-5)
            assert lh.grad_max[s] == pytest.approx(ref[name]["grad_max"], rel=1e-6)
            total += ref[name]["grad_norm"] ** 2
        for name, lh in h.layers.items():
            # ‖θ‖ at which the gradient was computed, whichever order the loop uses
            assert lh.param_norm[s] == pytest.approx(ref[name]["param_norm"], rel=1e-5)
        for name, lh in h.layers.items():
            assert lh.update_ratio[s] == pytest.approx(ref[name]["update_ratio"], rel=1e-4)
        assert h.global_grad_norm[s] == pytest.approx(math.sqrt(total), rel=1e-5)
    mon.close()


def _train(model, data, monitor_kwargs=None, n_steps=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mon = gw.Monitor(model, opt, **monitor_kwargs) if monitor_kwargs is not None else None
    losses = []
    for x, y in data:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if mon is not None:
            mon.step(loss)
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach().clone())
    if mon is not None:
        mon.close()
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"activations_every": 1, "weights_every": 1, "trace_nonfinite": True, "sync_every": 2},
    ],
)
def test_monitoring_does_not_change_training_bitwise(kwargs):
    data = batches(12)
    plain_losses, plain_params = _train(mlp(seed=3), data)
    mon_losses, mon_params = _train(mlp(seed=3), data, kwargs)
    assert torch.equal(plain_losses, mon_losses)
    for a, b in zip(plain_params, mon_params, strict=True):
        assert torch.equal(a, b)


class SeqModel(nn.Module):
    def __init__(self, kind="lstm", batch_first=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.rnn = cls(3, 12, batch_first=batch_first)
        self.head = nn.Linear(12, 2)
        self.batch_first = batch_first

    def forward(self, x):
        out, _ = self.rnn(x)
        last = out[:, -1] if self.batch_first else out[-1]
        return self.head(last)


def test_time_profile_monitoring_does_not_change_lstm_training_bitwise():
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(4, 15, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(6)]
    a_losses, a_params = _train(SeqModel(), data)
    b_losses, b_params = _train(SeqModel(), data, {"time_profile_every": 1, "activations_every": 1})
    assert torch.equal(a_losses, b_losses)
    for a, b in zip(a_params, b_params, strict=True):
        assert torch.equal(a, b)


def test_monitor_time_profile_equals_standalone_time_profile():
    model = SeqModel()
    x = torch.randn(5, 20, 3, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 0, 1, 1])
    ref = gw.time_profile(model, x, lambda out: nn.functional.cross_entropy(out, y))
    mon = gw.Monitor(model, time_profile_every=1)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    mon.step(loss)
    (step, prof, hid) = mon.history.time_profiles[0]
    mon.close()
    assert step == 0 and hid is None
    np.testing.assert_allclose(prof, ref.input.double().numpy(), rtol=1e-6)
    assert x.grad is None and not x.requires_grad  # the caller's tensor is untouched


def test_activation_statistics_match_manual_computation():
    model = mlp(depth=2, width=64, act=nn.Sigmoid)
    with torch.no_grad():
        model[0].weight.mul_(30.0)  # push the first sigmoid into saturation
    relu_model = mlp(depth=2, width=64, act=nn.ReLU, seed=1)
    with torch.no_grad():
        relu_model[0].bias.fill_(-3.0)  # kill most first-layer ReLUs
    x, y = batches(1, batch=64)[0]
    for m, act_name, kind in ((model, "1", "saturation"), (relu_model, "1", "dead")):
        out = m[1](m[0](x)).detach()  # before the monitor exists: its hooks must not see this call
        mon = gw.Monitor(m, activations_every=1)
        if kind == "saturation":
            expected = float((out * (1 - out) < 0.0025).float().mean())
        else:
            expected = float((out <= 0).all(dim=0).float().mean())
        nn.functional.cross_entropy(m(x), y).backward()
        mon.step()
        a = mon.history.activations[act_name]
        assert a.kind == kind
        assert a.fraction[0] == pytest.approx(expected, abs=1e-7)
        assert a.std[0] == pytest.approx(float(out.std()), rel=1e-5)
        assert expected > 0.3  # the fixture really saturates / kills units
        mon.close()


def test_activation_statistics_are_taken_on_their_own_period():
    model = mlp()
    mon = gw.Monitor(model, activations_every=3)
    for x, y in batches(7):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    steps = mon.history.activations["1"].steps
    assert steps.tolist() == [0, 3, 6]
    mon.close()
    assert all(not m._forward_hooks for m in model.modules())  # hooks are resources: all removed
    assert all(not m._forward_pre_hooks for m in model.modules())


class NaNAt(nn.Module):
    """Turns its input into NaN on one chosen call (a planted fault)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        return x * float("nan") if self.calls - 1 == self.at else x


def planted_nan_model(at=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), NaNAt(at), nn.Tanh(), nn.Linear(16, 3))


def test_first_nonfinite_is_located_in_the_forward_pass_with_tracing():
    model = planted_nan_model(at=3)
    mon = gw.Monitor(model, trace_nonfinite=True, sync_every=100)
    for x, y in batches(6):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    nf = mon.first_nonfinite
    assert (nf.step, nf.module, nf.tensor) == (3, "3", "forward output")
    assert mon.verdict().status == "nonfinite"
    # later steps are finite again and recorded as such
    h = mon.history
    assert np.all(np.isfinite(h.global_grad_norm[[0, 1, 2, 4, 5]]))
    assert math.isnan(h.global_grad_norm[3])


def test_without_tracing_or_loss_a_forward_nan_is_not_pinned_on_a_layer():
    # every gradient is NaN: without the loss, forward and backward cannot be told apart, and
    # naming the first layer (the far end from the fault) would send the user the wrong way
    model = planted_nan_model(at=2)
    mon = gw.Monitor(model, trace_nonfinite=False)
    for x, y in batches(4):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    nf = mon.first_nonfinite
    assert (nf.step, nf.tensor, nf.module, nf.parameter, nf.origin) == (2, "parameter gradient", "", None, None)
    assert "mon.step(loss)" in str(nf)


def test_nonfinite_in_one_layer_keeps_other_layers_recorded():
    model = mlp()
    target = model[4].weight
    mon = gw.Monitor(model)
    x, y = batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        target.grad[0, 0] = float("inf")
    mon.step()
    h = mon.history
    assert h.layers["4"].grad_norm[0] == math.inf
    for name in ("0", "2", "6", "8"):
        assert math.isfinite(h.layers[name].grad_norm[0])
    nf = mon.first_nonfinite
    assert (nf.module, nf.parameter, nf.value) == ("4", "4.weight", "inf")


def test_on_nonfinite_raise_and_warn():
    model = planted_nan_model(at=1)
    mon = gw.Monitor(model, on_nonfinite="raise")
    data = batches(3)
    x, y = data[0]
    nn.functional.cross_entropy(model(x), y).backward()
    mon.step()
    model.zero_grad()
    x, y = data[1]
    nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(gw.NonFiniteError, match="step 1"):
        mon.step()
    model2 = planted_nan_model(at=0)
    mon2 = gw.Monitor(model2, on_nonfinite="warn")
    nn.functional.cross_entropy(model2(x), y).backward()
    with pytest.warns(gw.GradwatchWarning, match="first nan"):
        mon2.step()


def test_jsonl_contract_and_nan_strings(tmp_path):
    path = tmp_path / "run.jsonl"
    model = planted_nan_model(at=1)
    with gw.Monitor(model, sinks=[gw.sinks.JSONL(path)], sync_every=2) as mon:
        for x, y in batches(3):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            mon.step(loss)
            model.zero_grad()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    recs = [json.loads(line) for line in lines]  # every line is valid JSON
    assert [r["step"] for r in recs] == [0, 1, 2]
    for r in recs:
        assert isinstance(r["global_grad_norm"], (float, str))
        for stats in r["layers"].values():
            assert {"grad_norm", "grad_max", "param_norm", "update_ratio"} <= set(stats)
    assert recs[1]["global_grad_norm"] == "nan"
    assert recs[1]["loss"] == "nan"
    assert recs[1]["nonfinite"]["step"] == 1
    back = gw.read_jsonl(path)
    np.testing.assert_array_equal(back.steps, [0, 1, 2])
    assert back.nonfinite.step == 1


def test_history_read_back_from_jsonl_equals_live_history(tmp_path):
    path = tmp_path / "run.jsonl"
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, log=path, sync_every=4, activations_every=2, weights_every=1)
    for x, y in batches(9):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
    live = mon.history
    mon.close()
    back = gw.read_jsonl(path)
    assert list(back.layers) == list(live.layers)
    for q in ("grad_norm", "grad_max", "param_norm", "update_ratio"):
        np.testing.assert_array_equal(back.layer_matrix(q), live.layer_matrix(q))
    assert np.isfinite(back.layer_matrix("update_ratio")).all()  # the last record got its update too
    np.testing.assert_array_equal(back.activations["1"].fraction, live.activations["1"].fraction)
    assert gw.verdict(back) == gw.verdict(live)


def test_sync_every_batches_host_transfers(tmp_path):
    path = tmp_path / "run.jsonl"
    model = mlp()
    mon = gw.Monitor(model, log=path, sync_every=5)
    for i, (x, y) in enumerate(batches(11)):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
        n_lines = len(path.read_text().splitlines())
        assert n_lines == 5 * ((i + 1) // 5)
    mon.close()
    assert len(path.read_text().splitlines()) == 11


def test_weight_statistics_have_their_own_period():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, weights_every=3, sync_every=2)
    for x, y in batches(7):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        opt.step()
        opt.zero_grad()
    h = mon.history
    measured = np.isfinite(h.layers["0"].update_ratio)
    assert np.flatnonzero(measured).tolist() == [0, 3, 6]
    assert np.flatnonzero(np.isfinite(h.layers["0"].param_norm)).tolist() == [0, 3, 6]
    no_opt = gw.Monitor(mlp(), weights_every=2)
    for x, y in batches(3):
        no_opt.model.zero_grad()
        nn.functional.cross_entropy(no_opt.model(x), y).backward()
        no_opt.step()
    pn = no_opt.history.layers["0"].param_norm
    assert np.isfinite(pn[[0, 2]]).all() and np.isnan(pn[1])
    assert pn[0] == pytest.approx(
        float(
            no_opt.model[0]
            .weight.detach()
            .double()
            .norm()
            .pow(2)
            .add(no_opt.model[0].bias.detach().double().norm().pow(2))
            .sqrt()
        ),
        rel=1e-6,
    )


def test_every_records_every_nth_step():
    model = mlp()
    mon = gw.Monitor(model, every=3)
    for x, y in batches(8):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    assert mon.history.steps.tolist() == [0, 3, 6]


def test_csv_sink(tmp_path):
    import csv

    model = mlp(depth=2)
    sink = gw.sinks.CSV(tmp_path / "run.csv")
    with gw.Monitor(model, sinks=[sink]) as mon:
        for x, y in batches(2):
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()
            model.zero_grad()
        h = mon.history
    rows = list(csv.DictReader((tmp_path / "run.csv").open()))
    assert len(rows) == 2 * 3
    assert float(rows[0]["grad_norm"]) == pytest.approx(h.layers["0"].grad_norm[0])


def test_tensorboard_sink_event_files_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = mlp(depth=2)
    with gw.Monitor(model, sinks=[gw.sinks.TensorBoard(tmp_path / "tb")], sync_every=2) as mon:
        for x, y in batches(3):
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()
            model.zero_grad()
        h = mon.history
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("gradwatch/grad_norm/0")
    assert [e.step for e in events] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in events], h.layers["0"].grad_norm, rtol=1e-6)


def test_wandb_sink_offline(wandb_run):
    run, logged = wandb_run
    model = mlp(depth=2)
    with gw.Monitor(model, sinks=[gw.sinks.WandB(run)]) as mon:
        for x, y in batches(2):
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()
            model.zero_grad()
        h = mon.history
    run.finish()
    assert [s for s, _ in logged] == [0, 1]
    assert logged[1][1]["gradwatch/grad_norm/0"] == pytest.approx(h.layers["0"].grad_norm[1])


def test_filters_select_layers():
    model = mlp(depth=3)
    assert [layer.name for layer in gw.Monitor(model, include="[02]").layers] == ["0", "2"]
    assert [layer.name for layer in gw.Monitor(model, exclude=["0", "6"]).layers] == ["2", "4"]
    lstm = SeqModel()
    assert [layer.name for layer in gw.Monitor(lstm, module_types=nn.LSTM).layers] == ["rnn"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: gw.Monitor(mlp(), include="encoder.*"),
            r"No layer matches include='encoder\.\*'.*Layers with trainable parameters: '0', '2'",
        ),
        (lambda: gw.Monitor(nn.Sequential(nn.ReLU())), "no parameters that require grad"),
        (lambda: gw.Monitor(mlp().requires_grad_(False)), "no parameters that require grad"),
        (lambda: gw.Monitor(mlp(), every=0), r"'every' parameter of Monitor must be an integer >= 1"),
        (lambda: gw.Monitor(mlp(), on_nonfinite="ignore"), r"'on_nonfinite' .* one of 'raise', 'record', 'warn'"),
        (lambda: gw.Monitor("not a model"), "must be a torch.nn.Module"),
        (lambda: gw.Monitor(mlp(), profile_module="nope"), "'profile_module'"),
    ],
)
def test_bad_configuration_is_named(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_step_before_backward_warns_and_records_nothing():
    mon = gw.Monitor(mlp())
    with pytest.warns(gw.GradwatchWarning, match="call loss.backward"):
        mon.step()
    assert mon.history.n_steps == 0


def test_closed_sink_and_closed_monitor_raise(tmp_path):
    sink = gw.sinks.JSONL(tmp_path / "a.jsonl")
    sink.close()
    with pytest.raises(SinkClosedError, match="closed"):
        sink.write([{"step": 0, "layers": {}}])
    mon = gw.Monitor(mlp())
    mon.close()
    mon.close()  # idempotent
    with pytest.raises(GradwatchError, match="after close"):
        mon.step()


def test_unwritable_log_path_is_a_clear_error(tmp_path):
    with pytest.raises(gw.OutputError, match="does not exist"):
        gw.Monitor(mlp(), log=tmp_path / "missing" / "run.jsonl")


def test_hooks_are_removed_when_the_loop_raises():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="boom"), gw.Monitor(model, opt, trace_nonfinite=True):
        raise RuntimeError("boom")
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_plot_writes_png(tmp_path):
    from matplotlib.image import imread

    model = SeqModel(kind="rnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gw.Monitor(model, opt, time_profile_every=2, activations_every=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(4, 10, 3, generator=g)
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 1, 0]))
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
    out = mon.plot(tmp_path / "flow.png")
    img = imread(out)
    assert img.shape[0] > 300 and img[..., :3].std() > 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.close()


def test_without_grad_max_the_l2_norms_still_catch_nan():
    model = planted_nan_model(at=1)
    mon = gw.Monitor(model, grad_max=False)
    for x, y in batches(2):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()
    h = mon.history
    assert np.isnan(h.layers["0"].grad_max).all()  # not measured
    ref_model = planted_nan_model(at=99)
    x, y = batches(1)[0]
    nn.functional.cross_entropy(ref_model(x), y).backward()
    assert h.layers["0"].grad_norm[0] == pytest.approx(
        float(
            ref_model[0].weight.grad.double().norm().pow(2).add(ref_model[0].bias.grad.double().norm().pow(2)).sqrt()
        ),
        rel=1e-5,
    )
    nf = mon.first_nonfinite
    assert (nf.step, nf.tensor, nf.value) == (1, "parameter gradient", "nan")


def test_several_forwards_in_one_step_pool_their_activation_statistics():
    model = mlp(depth=1, width=32)
    mon = gw.Monitor(model, activations_every=1)
    xa, ya = batches(1, seed=1)[0]
    xb, yb = batches(1, seed=2)[0]
    with torch.no_grad():
        both = model[1](model[0](torch.cat([xa, xb])))
    (nn.functional.cross_entropy(model(xa), ya) + nn.functional.cross_entropy(model(xb), yb)).backward()
    mon.step()
    a = mon.history.activations["1"]
    assert a.std[0] == pytest.approx(float(both.double().std()), rel=1e-5)
    assert a.fraction[0] == pytest.approx(float((both * (1 - both) < 0.0025).double().mean()), abs=1e-9)


def test_eval_forwards_under_no_grad_are_not_recorded():
    model = mlp(depth=1, width=32)
    mon = gw.Monitor(model, activations_every=1)
    x, y = batches(1)[0]
    with torch.no_grad():
        model(torch.full_like(x, 100.0))  # would be fully saturated
    nn.functional.cross_entropy(model(x), y).backward()
    mon.step()
    assert mon.history.activations["1"].fraction[0] < 0.5


def test_time_profile_plot(tmp_path):
    from matplotlib.image import imread

    prof = gw.time_profile(SeqModel(), torch.randn(2, 12, 3), lambda o: o.sum())
    img = imread(prof.plot(tmp_path / "t.png"))
    assert img[..., :3].std() > 0.05
