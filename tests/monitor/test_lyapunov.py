"""The Lyapunov collector: λ of each recurrent module from the training forward, in the record, show and verdict."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.monitor.history import read_jsonl
from gradwatch.monitor.verdict import verdict
from gradwatch.remedies import flossing
from tests.monitor.verdict.records import records


class _Net(nn.Module):
    def __init__(self, cell: type[nn.Module] = nn.LSTM, layers: int = 2) -> None:
        super().__init__()
        self.rnn = cell(2, 6, num_layers=layers, batch_first=True)
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _train(model: nn.Module, steps: int, tmp_path=None, **options):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    inputs = []
    log = None if tmp_path is None else tmp_path / "m.jsonl"
    with gw.Monitor(model, opt, log=log, sync_every=3, **options) as mon:
        for _ in range(steps):
            x = torch.randn(8, 25, 2, generator=gen)
            inputs.append(x)
            loss = model(x).pow(2).mean()
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return mon.history, inputs, log


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_exponents_are_those_of_the_module_on_the_step_input(cell):
    torch.manual_seed(0)
    model = _Net(cell)
    snapshots = []

    class Keep(nn.Module):  # a copy of the weights as they were at each forward
        pass

    def keep(module, args):
        snapshots.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    model.rnn.register_forward_pre_hook(keep)
    history, inputs, _ = _train(model, 5, lyapunov_every=2, lyapunov_k=3)
    assert [s for s, _ in history.lyapunov] == [0, 2, 4]
    for step, exps in history.lyapunov:
        # independent reference: the remedy's estimator on the same weights, input and seed-0 start
        ref = cell(2, 6, num_layers=2, batch_first=True)
        ref.load_state_dict(snapshots[step])
        expected = flossing.lyapunov_exponents(ref, inputs[step][:4], k=3, seed=0).detach().numpy()
        np.testing.assert_allclose(exps["rnn"], expected, rtol=1e-5, atol=1e-6)


def test_it_is_off_by_default_and_never_changes_training():
    torch.manual_seed(1)
    a, b = _Net(), _Net()
    b.load_state_dict(a.state_dict())
    ha, _, _ = _train(a, 4)
    hb, _, _ = _train(b, 4, lyapunov_every=1)
    assert ha.lyapunov == [] and len(hb.lyapunov) == 4
    assert np.array_equal(ha.loss, hb.loss)  # bitwise
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not a.rnn._forward_hooks and not b.rnn._forward_hooks  # hooks removed on close


def test_the_jsonl_record_and_show_carry_them(tmp_path):
    torch.manual_seed(2)
    history, _, log = _train(_Net(nn.GRU), 4, tmp_path, lyapunov_every=2, lyapunov_k=2)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [("lyapunov" in r) for r in lines] == [True, False, True, False]
    np.testing.assert_allclose(lines[2]["lyapunov"]["rnn"], history.lyapunov[1][1]["rnn"])
    back = gw.History.from_records(lines)
    assert [s for s, _ in back.lyapunov] == [0, 2]
    np.testing.assert_allclose(back.lyapunov[1][1]["rnn"], history.lyapunov[1][1]["rnn"])


def _with_lyapunov(values: list[float], name: str = "rnn") -> gw.History:
    recs = records(
        {"rnn": [1.0] * len(values), "head": [1.0] * len(values)}, roles={"rnn": "recurrent", "head": "linear"}
    )
    for r, v in zip(recs, values, strict=True):
        r["lyapunov"] = {name: [v, v - 0.5]}
    return gw.History.from_records(recs)


def test_a_positive_top_exponent_is_exploding_dynamics():
    v = verdict(_with_lyapunov([0.3] * 10))
    assert v.status == "exploding" and v.where == ("rnn",)
    assert any(e.quantity == "lyapunov" and e.value == pytest.approx(0.3) for e in v.evidence)
    assert "flossing" in [a.remedy for a in v.advice]


def test_a_very_negative_top_exponent_is_vanishing_memory():
    v = verdict(_with_lyapunov([-1.5] * 10))
    assert v.status == "vanishing" and v.where == ("rnn",)
    assert "flossing" in [a.remedy for a in v.advice]


@pytest.mark.parametrize(
    "values",
    [
        [0.05] * 10,  # slightly chaotic: below the threshold
        [-0.5] * 10,  # an ordinary contracting LSTM
        [-0.2] * 19 + [0.5],  # one odd measurement: the recent median disagrees
        [float("nan")] * 10,
    ],
)
def test_no_false_alarm_below_the_thresholds(values):
    assert verdict(_with_lyapunov(values)).status == "healthy"


def test_a_bad_lyapunov_record_is_named(tmp_path):
    recs = records({"rnn": [1.0]})
    recs[0]["lyapunov"] = {"rnn": ["x"]}
    log = tmp_path / "bad.jsonl"
    log.write_text(json.dumps(recs[0]) + "\n")
    with pytest.raises(gw.errors.ConfigError, match="Lyapunov exponents of 'rnn'"):
        read_jsonl(log)


def test_bad_config_is_named():
    with pytest.raises(gw.errors.ConfigError, match="'lyapunov_k' parameter of Monitor must be an integer >= 1"):
        gw.Monitor(_Net(), lyapunov_k=0)
    with pytest.raises(gw.errors.ConfigError, match="'lyapunov_every'"):
        gw.Monitor(_Net(), lyapunov_every=0)


def test_show_prints_and_plots_them(tmp_path):
    from typer.testing import CliRunner

    from gradwatch.cli import app

    torch.manual_seed(3)
    history, _, log = _train(_Net(nn.RNN, layers=1), 4, tmp_path, lyapunov_every=2, lyapunov_k=2)
    png = tmp_path / "flow.png"
    out = CliRunner().invoke(app, ["show", str(log), "--plot", str(png)])
    assert out.exit_code == 0, out.output
    step, exps = history.lyapunov[-1]
    assert (
        f"Lyapunov exponents of rnn at step {step} (nats/step): " + ", ".join(f"{v:+.3f}" for v in exps["rnn"])
        in out.output
    )
    assert png.stat().st_size > 0
    doc = json.loads(CliRunner().invoke(app, ["show", str(log), "--json"]).stdout)
    np.testing.assert_allclose(doc["lyapunov"]["rnn"]["exponents"], exps["rnn"])
    from gradwatch.monitor.plot import history_figure

    fig = history_figure(history)
    (ax,) = [a for a in fig.axes if a.get_gid() == "gradwatch:panel:lyapunov"]
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "gradwatch:lyapunov:rnn:1"]
    np.testing.assert_allclose(line.get_ydata(), [e["rnn"][0] for _, e in history.lyapunov])
