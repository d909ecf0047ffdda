"""Gradient over time: fused and hand-written RNNs, layouts, packing, and the theory lab."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gradwatch as gw
from gradwatch.errors import ConfigError
from gradwatch.theory import rnn as theory_rnn


def manual_profile(model, x, loss_fn, time_dim=1, batch_dim=0):
    x = x.clone().requires_grad_(True)
    loss_fn(model(x)).backward()
    g = x.grad.movedim((batch_dim, time_dim), (0, 1))
    return g.pow(2).sum(dim=tuple(d for d in range(g.dim()) if d != 1)).sqrt()


@pytest.mark.parametrize("kind", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_modules_in_both_layouts(kind, batch_first):
    torch.manual_seed(0)
    rnn = kind(3, 8, batch_first=batch_first)
    head = nn.Linear(8, 1)

    def model(x):
        out, _ = rnn(x)
        return head(out[:, -1] if batch_first else out[-1])

    shape = (4, 12, 3) if batch_first else (12, 4, 3)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    td, bd = (1, 0) if batch_first else (0, 1)
    prof = gw.time_profile(model, x, lambda o: o.pow(2).mean(), time_dim=td, batch_dim=bd)
    rnn.zero_grad()
    ref = manual_profile(model, x, lambda o: o.pow(2).mean(), td, bd)
    torch.testing.assert_close(prof.input, ref, rtol=1e-5, atol=0, check_dtype=False)
    assert prof.hidden is None


def test_time_profile_does_not_touch_parameter_grads():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 5, batch_first=True)
    x = torch.randn(2, 6, 3)
    gw.time_profile(lambda v: rnn(v)[0][:, -1], x, lambda o: o.sum())
    assert all(p.grad is None for p in rnn.parameters())


def test_packed_sequences_match_padded_manual_profile_per_sample():
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 6, batch_first=True)
    lengths = torch.tensor([7, 4, 5])
    x = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(3))
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)

    def loss_fn(out):
        padded, _ = pad_packed_sequence(out, batch_first=True)
        return padded.pow(2).sum()

    prof = gw.time_profile(lambda p: lstm(p)[0], packed, loss_fn, per_sample=True)
    xr = x.clone().requires_grad_(True)
    loss_fn(lstm(pack_padded_sequence(xr, lengths, batch_first=True, enforce_sorted=False))[0]).backward()
    ref = xr.grad.pow(2).sum(dim=2).sqrt()  # (B, T); padded positions get zero gradient
    torch.testing.assert_close(prof.input, ref, rtol=1e-5, atol=1e-7, check_dtype=False)
    total = gw.time_profile(lambda p: lstm(p)[0], packed, loss_fn)
    torch.testing.assert_close(total.input, ref.pow(2).sum(0).sqrt(), rtol=1e-5, atol=1e-7, check_dtype=False)


class LoopRNN(nn.Module):
    """A hand-written tanh RNN that exposes its hidden states."""

    def __init__(self, n_in=2, n_h=6):
        super().__init__()
        torch.manual_seed(0)
        self.w_in = nn.Linear(n_in, n_h)
        self.w_rec = nn.Linear(n_h, n_h, bias=False)
        self.n_h = n_h

    def forward(self, x):
        h = torch.zeros(x.shape[0], self.n_h)
        for t in range(x.shape[1]):
            h = gw.track_hidden(torch.tanh(self.w_in(x[:, t]) + self.w_rec(h)))
        return h


def test_hand_written_loop_exposes_hidden_state_gradients():
    model = LoopRNN()
    x = torch.randn(3, 9, 2, generator=torch.Generator().manual_seed(0))
    prof = gw.time_profile(model, x, lambda h: h.pow(2).sum(), per_sample=False)
    # manual: retain every h_t and read its gradient
    hs = []
    h = torch.zeros(3, 6)
    xr = x.clone().requires_grad_(True)
    for t in range(9):
        h = torch.tanh(model.w_in(xr[:, t]) + model.w_rec(h))
        h.retain_grad()
        hs.append(h)
    h.pow(2).sum().backward()
    ref_h = torch.stack([s.grad.norm() for s in hs])
    torch.testing.assert_close(prof.hidden, ref_h, rtol=1e-5, atol=0, check_dtype=False)
    torch.testing.assert_close(prof.input, xr.grad.pow(2).sum(dim=(0, 2)).sqrt(), rtol=1e-5, atol=0, check_dtype=False)
    # outside a profiling pass track_hidden is the identity and retains nothing
    v = torch.ones(2, requires_grad=True) * 2
    assert gw.track_hidden(v) is v and not v.retains_grad


def test_sigmoid_rnn_profile_matches_the_theory_lab_and_decays_geometrically():
    net = theory_rnn.random_sigmoid_rnn(10, 0.9, n_input=2, seed=1)
    T = 40
    u = theory_rnn.random_inputs(T, 2, seed=1)
    y = np.full(10, 0.5)
    w_rec, w_in, b = (torch.tensor(a) for a in (net.w_rec, net.w_in, net.b))

    def model(inputs):  # inputs: (1, T, m), batch_first
        x = torch.zeros(10, dtype=torch.float64)
        for t in range(inputs.shape[1]):
            x = w_rec @ torch.sigmoid(x) + w_in @ inputs[0, t] + b
        return x

    prof = gw.time_profile(model, torch.tensor(u)[None], lambda x: 0.5 * (x - torch.tensor(y)).pow(2).sum())
    # Theory lab: the b-part of gradient term k is g_t = ∇_x L · ∂x_T/∂x_t (t = T − k), and ∂L/∂u_t = g_t W_in.
    terms = theory_rnn.gradient_terms(net, u, y)
    g = terms.terms[:, -10:]  # rows k = 0..T-1, b-part
    expected = np.linalg.norm(g @ net.w_in, axis=1)[::-1]  # back to time order t = 1..T
    np.testing.assert_allclose(prof.input.numpy(), expected, rtol=1e-10)
    # geometric decay away from the loss, no faster than the tight bound (‖W_rec‖/4) per step
    logs = np.log(prof.input.numpy())
    slope = np.polyfit(np.arange(T), logs, 1)[0]
    assert slope > 0  # grows toward t = T, i.e. decays with distance from the loss
    assert slope >= -np.log(np.linalg.norm(net.w_rec, 2) / 4) - 0.1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: gw.time_profile(nn.Embedding(5, 2), torch.zeros(2, 3, dtype=torch.long), lambda o: o.sum()),
            "floating-point",
        ),
        (lambda: gw.time_profile(lambda x: x * 2, torch.ones(2, 3, 1), lambda o: o), "scalar"),
        (
            lambda: gw.time_profile(lambda x: torch.ones(1, requires_grad=True), torch.ones(2, 3), lambda o: o.sum()),
            "does not depend",
        ),
        (lambda: gw.time_profile(lambda x: x, [1, 2], lambda o: o.sum()), "tensor or a PackedSequence"),
        (
            lambda: gw.time_profile(lambda x: x, torch.ones(2, 3), lambda o: o.sum(), time_dim=0, batch_dim=0),
            "must differ",
        ),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_monitor_warns_once_and_disables_profile_for_token_inputs():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.rnn = nn.GRU(4, 4, batch_first=True)

        def forward(self, ids):
            return self.rnn(self.emb(ids))[0][:, -1].sum()

    model = Tok()
    mon = gw.Monitor(model, time_profile_every=1)
    ids = torch.randint(0, 10, (2, 5))
    with pytest.warns(gw.GradwatchWarning, match="profile_module"):
        model(ids).backward()
    mon.step()
    mon.close()
    mon2 = gw.Monitor(model, time_profile_every=1, profile_module="rnn")
    model.zero_grad()
    model(ids).backward()
    mon2.step()
    (_, prof, _) = mon2.history.time_profiles[0]
    mon2.close()
    assert prof.shape == (5,) and np.all(prof > 0)
