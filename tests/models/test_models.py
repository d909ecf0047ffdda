"""The configurable models: structure, forward against manual loops, knobs, errors."""

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch import models
from gradwatch.errors import ConfigError


@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_mlp_activations_and_shapes(activation):
    net = models.mlp(layers=3, hidden=16, in_dim=5, out_dim=2, activation=activation, seed=0)
    assert net(torch.randn(7, 5)).shape == (7, 2)
    acts = [m for m in net.modules() if isinstance(m, models.ACTIVATIONS[activation])]
    assert len(acts) == 4


def test_mlp_residual_block_is_identity_plus_branch():
    net = models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, activation="relu", residual=True, norm="layer", seed=1)
    block = net.blocks[0]
    x = torch.randn(3, 8)
    # pre-activation block (He et al. 2016b): identity skip + Linear(act(norm(x)))
    torch.testing.assert_close(block(x), x + block.linear(block.act(block.norm(x))))
    plain = models.mlp(layers=1, hidden=8, in_dim=4, out_dim=1, norm="batch").blocks[0]
    assert isinstance(plain.norm, nn.BatchNorm1d)
    torch.testing.assert_close(plain(x), plain.act(plain.norm(plain.linear(x))))
    assert net.final is not None and models.mlp(layers=1, hidden=8, in_dim=4, out_dim=1).final is None


def test_mlp_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, seed=3)
    b = models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, seed=3)
    assert torch.equal(torch.rand(2), expected)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_mlp_init_by_name():
    net = models.mlp(layers=2, hidden=200, in_dim=200, out_dim=1, activation="sigmoid", init="kumar", seed=0)
    assert float(net.blocks[0].linear.weight.detach().std()) == pytest.approx((12.8 / 200) ** 0.5, rel=0.03)


def test_hand_written_rnn_matches_a_manual_loop_and_exposes_states():
    net = models.rnn(kind="rnn", hidden=6, in_dim=2, out_dim=1, activation="sigmoid", seed=0)
    x = torch.randn(3, 7, 2)
    out = net(x)
    cell = net.cells[0]
    h = torch.zeros(3, 6)
    for t in range(7):
        h = torch.sigmoid(x[:, t] @ cell.w_in.weight.T + cell.w_in.bias + h @ cell.w_rec.weight.T)
    torch.testing.assert_close(out, net.head(h))
    assert len(net.hidden_states) == 7
    torch.testing.assert_close(net.hidden_states[-1], h)


def test_hand_written_rnn_hidden_profile_through_the_monitor_timeline():
    net = models.rnn(kind="rnn", hidden=6, in_dim=2, out_dim=1, layers=2, seed=0)
    prof = gw.time_profile(net, torch.randn(4, 9, 2), lambda o: o.pow(2).mean())
    assert prof.hidden is not None and prof.hidden.shape == (18,)  # 2 layers × 9 steps, in tracking order
    assert prof.input.shape == (9,)


def test_pascanu_penalty_on_the_models_hidden_states():
    from gradwatch.remedies.regularizer import pascanu_penalty

    net = models.rnn(kind="rnn", hidden=5, in_dim=1, out_dim=1, seed=0)
    loss = net(torch.randn(2, 6, 1)).pow(2).mean()
    omega = pascanu_penalty(loss, net.hidden_states)
    (loss + 0.1 * omega).backward()
    assert net.cells[0].w_rec.weight.grad is not None


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fused_kinds(kind):
    net = models.rnn(kind=kind, hidden=8, in_dim=3, out_dim=2, layers=2, init="orthogonal", seed=0)
    assert net(torch.randn(4, 5, 3)).shape == (4, 2)
    assert net.hidden_states == []


def test_irnn_by_name():
    net = models.rnn(kind="rnn", hidden=4, in_dim=1, activation="relu", init="identity_recurrent", seed=0)
    assert torch.equal(net.cells[0].w_rec.weight, torch.eye(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_models_run_on_cuda():
    net = models.rnn(kind="lstm", hidden=8, in_dim=3).to("cuda")
    assert net(torch.randn(2, 4, 3, device="cuda")).device.type == "cuda"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, activation="swish"),
            r"'activation' parameter of mlp must be one of",
        ),
        (
            lambda: models.mlp(layers=0, hidden=8, in_dim=4, out_dim=1),
            r"'layers' parameter of mlp must be an integer >= 1",
        ),
        (lambda: models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, norm="group"), r"'norm' .* 'batch', 'layer'"),
        (
            lambda: models.mlp(layers=2, hidden=8, in_dim=4, out_dim=1, activation="gelu", init="kumar"),
            r"init='kumar' covers",
        ),
        (lambda: models.rnn(kind="transformer"), r"'kind' parameter of rnn must be one of 'gru', 'lstm', 'rnn'"),
        (lambda: models.rnn(hidden=0), r"'hidden'"),
        (lambda: models.rnn()(torch.randn(3, 4)), r"\(batch, time, features\)"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
