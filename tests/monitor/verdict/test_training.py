"""The verdict on real tiny training runs: an RNN language model exploding, its clipped twin, roles, controls."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.monitor.roles import layer_roles

V, E, H, T, B = 500, 16, 32, 20, 8


class WordLM(nn.Module):
    """embedding → nn.RNN(tanh) → decoder, initialized as the popular word-language-model example."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(V, E)
        self.rnn = nn.RNN(E, H, batch_first=True)
        self.decoder = nn.Linear(H, V)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rnn(self.encoder(x))[0])


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    """Generated text: a Zipf-distributed Markov chain over V words (nothing downloaded)."""
    g = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, V + 1).double()
    noise = torch.multinomial(zipf / zipf.sum(), n, replacement=True, generator=g)
    follow = torch.randint(0, V, (V, 4), generator=g)
    pick, coin = torch.randint(0, 4, (n,), generator=g), torch.rand(n, generator=g) < 0.3
    out = noise.clone()
    for i in range(1, n):
        if not coin[i]:
            out[i] = follow[out[i - 1], pick[i]]
    return out


def train_lm(lr: float, clip: float | None, steps: int = 30, log=None):
    """Manual SGD without an optimizer object, as the example repositories write it."""
    torch.manual_seed(0)
    model = WordLM()
    data = tokens(steps * B * T + 1)
    rnn_norms, batches = {}, []
    with gw.Monitor(model, log=log) as mon:
        for i in range(steps):
            chunk = data[i * B * T : (i + 1) * B * T + 1]
            x, y = chunk[:-1].view(B, T), chunk[1:].view(B, T)
            batches.append(x)
            model.zero_grad()
            rnn_norms[i] = float(
                torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.rnn.parameters()]))
            )
            loss = nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
            loss.backward()
            mon.step(loss)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
        return mon.verdict(), mon.history, rnn_norms, batches


@pytest.fixture(scope="module")
def exploded(tmp_path_factory):
    log = tmp_path_factory.mktemp("lm") / "run.jsonl"
    return (*train_lm(lr=20.0, clip=None, log=log), log)


def test_an_rnn_lm_at_lr_20_without_clipping_is_exploding_in_rnn(exploded):
    v, h, rnn_norms, _, _ = exploded
    assert v.status == "exploding", str(v)
    assert v.where[0] == "rnn"
    assert [a.remedy for a in v.advice][:2] == ["clip_grad_norm", "lr:lower"]
    assert not {"init:kumar", "init:yilmaz_poli", "batchnorm"} & {a.remedy for a in v.advice}
    story = v.evidence[0]
    assert story.quantity == "explosion" and story.sentence.startswith("exploding at step")
    assert "then saturated" in story.sentence
    (blowup,) = [e for e in v.events if e.kind == "param_blowup" and e.layer == "rnn"]
    measured = {s: n for s, n in rnn_norms.items() if s % 10 == 0}  # weights_every=10
    assert blowup.value == pytest.approx(max(measured.values()), rel=1e-5)  # the monitor's ‖θ‖ vs a manual one
    assert blowup.value / rnn_norms[0] > 100
    (worse,) = [e for e in gw.verdict(h, chance_loss=math.log(V)).events if e.kind == "loss_above_chance"]
    assert worse.value >= 1.5 * math.log(V) and worse.baseline == pytest.approx(math.log(V))
    onset = int(story.sentence.split()[3])
    assert onset < blowup.step <= min(e.step for e in v.events if e.kind == "saturation")  # ‖θ‖: every 10 steps


def test_the_log_gives_the_same_verdict_and_show_prints_the_events(exploded, cli):
    v, _, _, _, log = exploded
    back = gw.read_jsonl(log)
    assert back.roles == {"encoder": "embedding", "rnn": "recurrent", "decoder": "linear"}
    assert gw.verdict(back) == v
    r = cli("show", str(log), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["status"] == "exploding" and doc["events"] == json.loads(json.dumps([e.to_json() for e in v.events]))
    assert doc["roles"]["rnn"] == "recurrent"
    human = cli("show", str(log))
    assert "exploding at step" in human.out and "events" in human.out


@pytest.fixture(scope="module")
def clipped():
    return train_lm(lr=20.0, clip=0.25)


def test_the_same_lm_with_clipping_is_not_exploding(clipped):
    v, _h, _, _ = clipped
    assert v.status != "exploding", str(v)
    assert not [e for e in v.events if e.alarm]


def test_embedding_rows_are_the_tokens_the_batch_used(clipped, exploded):
    _, h, _, batches = clipped
    frac = h.layers["encoder"].row_fraction
    for step in (0, 10, 20):
        assert frac[step] == pytest.approx(torch.unique(batches[step]).numel() / V)
    assert np.isnan(frac[1])
    # saturated tanh units pass exactly zero gradient: fewer rows than tokens receive any
    _, h_exp, _, batches_exp, _ = exploded
    assert h_exp.layers["encoder"].row_fraction[20] < torch.unique(batches_exp[20]).numel() / V
    lh = h.layers["encoder"]
    plain = lh.grad_norm / np.sqrt(lh.numel)
    assert lh.grad_rms[0] / plain[0] == pytest.approx(1 / np.sqrt(np.nanmedian(frac)))


class HandLoop(nn.Module):
    """A hand-written recurrent loop: its Linear layers run T times per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.w_in, self.w_rec, self.head = nn.Linear(3, 16), nn.Linear(16, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 16)
        for t in range(x.shape[1]):
            h = torch.tanh(self.w_in(x[:, t]) + self.w_rec(h))
        return self.head(h).squeeze(1)


def test_roles_from_types_and_from_loops():
    tf = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    names = [n for n, m in tf.named_modules() if list(m.parameters(recurse=False))]
    assert layer_roles(tf, names) == {
        "self_attn": "attention",
        "self_attn.out_proj": "attention",
        "linear1": "linear",
        "linear2": "linear",
        "norm1": "norm",
        "norm2": "norm",
    }
    model = HandLoop()
    with gw.Monitor(model, torch.optim.SGD(model.parameters(), lr=0.01)) as mon:
        model(torch.randn(4, 7, 3)).sum().backward()
        mon.step()
        assert mon.history.roles == {"w_in": "recurrent", "w_rec": "recurrent", "head": "linear"}


class SaturatedRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(1, 32, batch_first=True)
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.mul_(100.0)
        self.out = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0][:, -1]).squeeze(1)


def test_an_nn_rnn_gets_rnn_advice_without_a_time_profile():
    model = SaturatedRNN()
    g = torch.Generator().manual_seed(0)
    with gw.Monitor(model, activations_every=1, time_profile_every=None) as mon:
        for _ in range(4):
            x = torch.randn(16, 50, 1, generator=g)
            nn.functional.mse_loss(model(x), x[:, 0, 0]).backward()
            mon.step()
            model.zero_grad()
        v = mon.verdict()
    assert v.status == "vanishing", str(v)
    remedies = [a.remedy for a in v.advice]
    assert remedies[0] == "lstm"
    assert not {"init:kumar", "init:yilmaz_poli", "batchnorm", "residual"} & set(remedies)


# ---- healthy controls: no alarm, no spike, no blow-up, no divergence ---------------------------------


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.bn, self.fc = nn.BatchNorm1d(width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(torch.relu(self.bn(x)))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.out = nn.LSTM(4, 32, batch_first=True), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(x)[0][:, -1])


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 32) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.randn(16, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.enc(self.emb(x) + self.pos[: x.shape[1]]))


def _control(kind: str, seed: int):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        model: nn.Module = nn.Sequential(nn.Linear(16, 64), *[ResBlock(64) for _ in range(6)], nn.Linear(64, 4))
        w = torch.randn(16, 4, generator=g)

        def batch():
            x = torch.randn(32, 16, generator=g)
            return x, (x @ w).argmax(1)

        return model, batch, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.functional.cross_entropy
    if kind == "lstm":
        model = LSTMNet()

        def batch():
            x = torch.randn(32, 20, 4, generator=g)
            return x, (x[:, :3, 0].sum(1) > 0).long() + 2 * (x[:, -1, 1] > 0).long()

        return model, batch, torch.optim.Adam(model.parameters(), lr=3e-3), nn.functional.cross_entropy
    model = TinyTransformer()

    def batch():
        x = torch.randint(0, 50, (16, 16), generator=g)
        return x, torch.roll(x, 1, 1)

    def loss_fn(out, y):
        return nn.functional.cross_entropy(out.reshape(-1, 50), y.reshape(-1))

    return model, batch, torch.optim.AdamW(model.parameters(), lr=1e-3), loss_fn


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer"])
def test_healthy_controls_raise_no_alarm(kind, seed):
    model, batch, opt, loss_fn = _control(kind, seed)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 10))  # LR warm-up
    with gw.Monitor(model, opt) as mon:
        for _ in range(50):
            x, y = batch()
            loss = loss_fn(model(x), y)
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
            warmup.step()
        v = mon.verdict()
    assert v.status == "healthy", str(v)
    noisy = {"grad_spike", "loss_spike", "param_blowup", "divergence", "nonfinite", "loss_rising"}
    assert not [e for e in v.events if e.kind in noisy], str(v)
    assert mon.history.loss[-10:].mean() < mon.history.loss[:10].mean()  # it did train
