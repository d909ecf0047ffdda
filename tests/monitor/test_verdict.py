"""The verdict's rules on models whose ground truth is known by construction."""

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.errors import ConfigError
from gradwatch.theory import rnn as theory_rnn


def run(model, make_batch, loss_fn, steps=25, lr=0.05, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with gw.Monitor(model, opt, **kw) as mon:
        for i in range(steps):
            x, y = make_batch(i)
            loss = loss_fn(model(x), y)
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return mon.verdict(), mon.history


def classification(seed, in_dim=16, n_cls=4, batch=64):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(in_dim, n_cls, generator=g)

    def make(i):
        x = torch.randn(batch, in_dim, generator=g)
        return x, (x @ w).argmax(dim=1)

    return make


def test_deep_sigmoid_mlp_with_small_init_vanishes():
    torch.manual_seed(0)
    layers = []
    for _ in range(20):
        lin = nn.Linear(32, 32)
        nn.init.normal_(lin.weight, std=0.5 / np.sqrt(32))
        layers += [lin, nn.Sigmoid()]
    model = nn.Sequential(nn.Linear(16, 32), nn.Sigmoid(), *layers, nn.Linear(32, 4))
    v, _ = run(model, classification(0), nn.functional.cross_entropy)
    assert v.status == "vanishing"
    assert "0" in v.where and "2" in v.where
    ev = v.evidence[0]
    assert ev.quantity == "depth_ratio" and ev.value < 1e-3
    assert {a.remedy for a in v.advice} >= {"relu", "init:kumar", "batchnorm", "residual"}


class ResBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.bn = nn.BatchNorm1d(width)
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x):
        return x + self.fc(self.act(self.bn(x)))


@pytest.mark.parametrize("seed", range(5))
def test_relu_batchnorm_residual_mlp_is_healthy(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 64), *[ResBlock(64) for _ in range(10)], nn.BatchNorm1d(64), nn.Linear(64, 4))
    v, _ = run(model, classification(seed), nn.functional.cross_entropy, steps=30, activations_every=5)
    assert v.status == "healthy", str(v)


class LinearRNN(nn.Module):
    def __init__(self, n=16, radius=1.5, seed=0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(theory_rnn.recurrent_matrix(n, radius, seed=seed), dtype=torch.float32))
        torch.manual_seed(seed)
        self.u = nn.Linear(1, n, bias=False)
        self.out = nn.Linear(n, 1)

    def forward(self, x):  # x: (B, T, 1)
        h = torch.zeros(x.shape[0], self.w.shape[0])
        for t in range(x.shape[1]):
            h = h @ self.w.T + self.u(x[:, t])
        return self.out(h).squeeze(1)


def sequences(seed, T=100, batch=16):
    g = torch.Generator().manual_seed(seed)

    def make(i):
        x = torch.randn(batch, T, 1, generator=g) * 1e-3
        return x, x.sum(dim=(1, 2))

    return make


def test_linear_rnn_with_spectral_radius_above_one_explodes():
    v, h = run(LinearRNN(radius=1.5), sequences(0), nn.functional.mse_loss, steps=3, lr=0.0, time_profile_every=1)
    assert v.status == "exploding", str(v)
    kinds = {e.quantity for e in v.evidence}
    assert "time_ratio" in kinds
    time_ev = next(e for e in v.evidence if e.quantity == "time_ratio")
    assert time_ev.value > 1e10  # ≈ 1.5^99 growth toward early steps
    assert {a.remedy for a in v.advice} >= {"clip_grad_norm", "spectral_radius<1"}
    _, prof, _ = h.time_profiles[-1]
    slope = np.polyfit(np.arange(100), np.log(prof), 1)[0]
    assert slope == pytest.approx(-np.log(1.5), abs=0.05)


def test_linear_rnn_with_spectral_radius_below_one_is_not_exploding():
    v, _ = run(LinearRNN(radius=0.9), sequences(0, T=20), nn.functional.mse_loss, steps=3, lr=0.0, time_profile_every=1)
    assert v.status != "exploding"


class TanhRNN(nn.Module):
    def __init__(self, scale):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(1, 32, batch_first=True)
        with torch.no_grad():
            self.rnn.weight_hh_l0.mul_(scale)
            self.rnn.weight_ih_l0.mul_(scale)
            self.rnn.bias_hh_l0.mul_(scale)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        return self.out(self.rnn(x)[0][:, -1]).squeeze(1)


def test_saturating_tanh_rnn_with_large_weights_vanishes_not_explodes():
    # Note 3 of the article: large weights do not imply explosion; saturation makes σ' ≈ 0.
    def make(i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(16, 100, 1, generator=g)
        return x, x[:, 0, 0]

    v, h = run(
        TanhRNN(scale=100.0), make, nn.functional.mse_loss, steps=4, lr=0.0, time_profile_every=1, activations_every=1
    )
    assert v.status == "vanishing", str(v)
    assert any(e.quantity in ("time_ratio", "saturation") for e in v.evidence)
    assert h.activations["rnn"].fraction[-1] > 0.9
    assert "lstm" in {a.remedy for a in v.advice}


def test_planted_nan_gives_nonfinite_verdict():
    torch.manual_seed(0)

    class Bad(nn.Module):
        def forward(self, x):
            return torch.log(x - 10.0)  # NaN for every realistic input

    model = nn.Sequential(nn.Linear(16, 8), Bad(), nn.Linear(8, 4))
    v, _ = run(model, classification(0), nn.functional.cross_entropy, steps=2, trace_nonfinite=True)
    assert v.status == "nonfinite"
    assert v.where == ("1",)
    assert "forward output" in v.evidence[0].sentence


def test_verdict_serializes_and_reads_the_same_from_a_log(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 4))
    path = tmp_path / "run.jsonl"
    v, _ = run(model, classification(0), nn.functional.cross_entropy, steps=6, log=path)
    back = gw.verdict(gw.read_jsonl(path))
    assert back == v
    d = v.to_json()
    assert d["status"] == v.status and isinstance(d["evidence"], list)
    assert str(v).startswith(v.status)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vanishing_ratio": 2.0}, r"'vanishing_ratio' parameter of Thresholds must be in \(0, 1\)"),
        ({"exploding_ratio": 0.5}, r"'exploding_ratio' .* must be > 1"),
        ({"window": 0.0}, r"'window'"),
    ],
)
def test_thresholds_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        gw.Thresholds(**kwargs)


def test_thresholds_are_configurable():
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(2) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 4))
    v, h = run(model, classification(0), nn.functional.cross_entropy, steps=3)
    assert v.status == "healthy"
    strict = gw.Thresholds(vanishing_ratio=0.999)
    assert gw.verdict(h, strict).status == "vanishing"
