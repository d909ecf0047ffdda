"""The validation corpus: training programs whose gradient pathology is known by construction.

Each scenario is a plain training loop written the way people write them (an optimizer or
a manual SGD update, ``torch.autocast``, ``clip_grad_norm_``, ...), with the monitor
attached with its default settings — ``gw.Monitor(model, opt)``, or ``gw.Monitor(model)``
when there is no optimizer object. It returns the monitor's verdict together with what the
loop itself saw (loss and global ‖g‖ per step, computed here, independently of the
monitor) and a few scenario-specific *facts*: the numbers that make the ground truth real
(e.g. that the exploding LM's loss and gradient norm really blow up, that fp16 gradients
really underflow to exact zeros where float32 ones do not, that a NaN really comes from
log(0)). ``tests/benchmarks/test_diagnosis.py`` checks those facts; ``diagnosis.py``
scores the verdicts against :class:`Truth`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import gradwatch as gw
from gradwatch.tasks import digits_split
from gradwatch.tasks.text import MarkovText, batchify, markov_text

STATUSES = ("vanishing", "exploding", "nonfinite", "healthy")


@dataclass(frozen=True)
class Truth:
    """What a correct diagnosis of a scenario says.

    Attributes:
        status: the acceptable statuses, the expected one first.
        location: acceptable layer/module names (a name also matches its sub-modules:
            "encoder.layers.0" matches "encoder.layers.0.linear1"); None: not scored.
        remedies: registry names of which one should be among the first two advice items;
            "kind:<kind>" accepts any catalog remedy of that kind; (): not scored.
        origin: "forward" or "backward" for non-finite scenarios (part of the location).
        lint: a regular expression; a monitor warning that matches it counts as the right
            status and as the right advice (e.g. a "zero_grad is never called" lint).
        why: the reason this is the truth, in one or two sentences.
    """

    status: tuple[str, ...]
    location: tuple[str, ...] | None = None
    remedies: tuple[str, ...] = ()
    origin: str | None = None
    lint: str | None = None
    why: str = ""


@dataclass
class Outcome:
    """One run of a scenario: the verdict and what the loop measured without the monitor."""

    verdict: Any
    loss: np.ndarray
    grad_norm: np.ndarray
    facts: dict[str, float] = field(default_factory=dict)
    first_nonfinite: Any = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """A training program, its ground truth, and how long it runs."""

    name: str
    story: str
    truth: Truth
    run: Callable[[int, int], Outcome]
    steps: int
    quick_steps: int
    seeds: int = 3
    control: bool = False


class Trace:
    """Loss and global gradient norm per step, as the training loop itself sees them."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.grad_norm: list[float] = []

    def log(self, loss: torch.Tensor, params: Iterable[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        self.loss.append(float(loss.detach().float()))
        self.grad_norm.append(float(torch.nn.utils.get_total_norm(grads)) if grads else math.nan)

    def outcome(self, mon: gw.Monitor, **facts: float) -> Outcome:
        loss, g = np.asarray(self.loss), np.asarray(self.grad_norm)
        base = {
            "loss_first": loss[0],
            "loss_last": loss[-1],
            "loss_max": float(np.nanmax(loss)) if np.isfinite(loss).any() else math.nan,
            "grad_first": g[0],
            "grad_max": float(np.nanmax(g)) if np.isfinite(g).any() else math.nan,
            "nonfinite_loss_steps": float((~np.isfinite(loss)).sum()),
        }
        return Outcome(mon.verdict(), loss, g, {**base, **facts}, mon.first_nonfinite)


def _digits(seed: int, batch: int = 64, *, steps: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    X, y, _, _ = digits_split()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (batch,), generator=g)
        yield X[idx], y[idx]


# --------------------------------------------------------------------------------------------
# A word-level RNN language model, as in PyTorch's word_language_model example
# --------------------------------------------------------------------------------------------

_TEXTS: dict[int, MarkovText] = {}


def _text(vocab: int) -> MarkovText:
    if vocab not in _TEXTS:
        _TEXTS[vocab] = markov_text(vocab, seed=0)
    return _TEXTS[vocab]


class RNNModel(nn.Module):
    """Embedding → nn.RNN(tanh) → Linear decoder; uniform(−0.1, 0.1) init as the example."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, kind: str = "RNN") -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn: nn.Module = nn.RNN(ninp, nhid, nonlinearity="tanh") if kind == "RNN" else nn.LSTM(ninp, nhid)
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        output, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(output), hidden


def _repackage(h: Any) -> Any:
    return h.detach() if isinstance(h, torch.Tensor) else tuple(v.detach() for v in h)


def _word_lm(seed: int, steps: int, *, lr: float, clip: float | None) -> Outcome:
    V, emsize, nhid, batch, bptt = 2000, 64, 128, 20, 35
    text = _text(V)
    data = batchify(text.sample(batch * (bptt * steps + 1), seed=seed), batch)
    torch.manual_seed(seed)
    model = RNNModel(V, emsize, nhid)
    criterion = nn.CrossEntropyLoss()
    trace = Trace()
    whh0 = float(model.rnn.weight_hh_l0.detach().norm())
    hidden = torch.zeros(1, batch, nhid)
    with gw.Monitor(model) as mon:
        for i in range(steps):
            x, y = data[i * bptt : (i + 1) * bptt], data[i * bptt + 1 : (i + 1) * bptt + 1]
            hidden = _repackage(hidden)
            model.zero_grad()
            output, hidden = model(x, hidden)
            loss = criterion(output.view(-1, V), y.reshape(-1))
            loss.backward()
            trace.log(loss, model.parameters())
            if clip is None:
                mon.step(loss)
            else:  # a manual loop reports the norm clip_grad_norm_ returned
                mon.step(loss, clip=torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
        saturated = float((hidden.abs() > 0.99).float().mean())
        return trace.outcome(
            mon,
            whh_norm_first=whh0,
            whh_norm_last=float(model.rnn.weight_hh_l0.detach().norm()),
            hidden_saturated_last=saturated,
            unigram_entropy=text.unigram_entropy,
            chance_loss=math.log(V),
        )


def lm_rnn_exploding(seed: int, steps: int) -> Outcome:
    """The word LM at lr 5 without clipping: the recurrent weights blow up, then the units saturate."""
    return _word_lm(seed, steps, lr=5.0, clip=None)


def lm_rnn_clipped(seed: int, steps: int) -> Outcome:
    """The same program with ``clip_grad_norm_(model.parameters(), 0.25)``: it trains."""
    return _word_lm(seed, steps, lr=5.0, clip=0.25)


# --------------------------------------------------------------------------------------------
# MLPs on scikit-learn's digits
# --------------------------------------------------------------------------------------------


def manual_sgd_mlp(seed: int, steps: int) -> Outcome:
    """Control: a ReLU MLP trained by a hand-written SGD update (no optimizer object). Healthy."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    lr, trace = 0.3, Trace()
    with gw.Monitor(model) as mon:
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
                    p.grad = None
        return trace.outcome(mon)


def missing_zero_grad(seed: int, steps: int) -> Outcome:
    """SGD with momentum, ``optimizer.zero_grad()`` forgotten: every .grad is a running sum."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trace, fresh = Trace(), []
    with gw.Monitor(model, opt) as mon:
        for x, y in _digits(seed, steps=steps):
            before = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            this_batch = [p.grad - b for p, b in zip(model.parameters(), before, strict=True)]
            fresh.append(float(torch.nn.utils.get_total_norm(this_batch)))
            mon.step(loss)
            opt.step()
        g = np.asarray(trace.grad_norm)
        return trace.outcome(mon, accumulated_over_fresh_last=float(g[-1] / fresh[-1]))


def adam_lr_one(seed: int, steps: int) -> Outcome:
    """A ReLU MLP with Adam at lr 1.0 (a thousand times the default): it diverges."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    trace = Trace()
    with gw.Monitor(model, opt) as mon:
        theta0 = float(torch.nn.utils.get_total_norm(list(model.parameters())))
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        theta = float(torch.nn.utils.get_total_norm(list(model.parameters())))
        return trace.outcome(mon, param_norm_first=theta0, param_norm_last=theta, chance_loss=math.log(10))


RELU_LR = 3.0


def relu_killed_by_lr(seed: int, steps: int) -> Outcome:
    """A ReLU MLP whose first SGD steps at a large lr push most hidden units below zero for good."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=RELU_LR)
    trace = Trace()
    X, _, _, _ = digits_split()
    with gw.Monitor(model, opt) as mon:
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            h1 = model[1](model[0](X))
            h2 = model[3](model[2](h1))
        dead1 = float((h1.amax(dim=0) <= 0).float().mean())
        dead2 = float((h2.amax(dim=0) <= 0).float().mean())
        return trace.outcome(mon, dead_fraction_1=dead1, dead_fraction_3=dead2)


def sigmoid_mlp_20(seed: int, steps: int) -> Outcome:
    """Twenty sigmoid layers with PyTorch's default init: σ′ ≤ 1/4 per layer starves the first ones."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(64, 64), nn.Sigmoid()]
    for _ in range(19):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trace = Trace()
    with gw.Monitor(model, opt) as mon:
        first_over_last = []
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            first_over_last.append(float(model[0].weight.grad.norm() / model[-1].weight.grad.norm()))
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon, first_over_last_grad=float(np.median(first_over_last)))


class ResBlock(nn.Module):
    """x + Linear(ReLU(BatchNorm(x))): a pre-activation residual block."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(width)
        self.act = nn.ReLU()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(self.act(self.bn(x)))


def resbn_mlp(seed: int, steps: int) -> Outcome:
    """Control: a 10-block residual BatchNorm ReLU MLP with SGD + momentum. Healthy."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), *[ResBlock(64) for _ in range(10)], nn.BatchNorm1d(64), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trace = Trace()
    with gw.Monitor(model, opt) as mon:
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon)


# --------------------------------------------------------------------------------------------
# Non-finite values: a forward NaN (log of 0) and a backward NaN (sqrt at 0)
# --------------------------------------------------------------------------------------------


class LogScale(nn.Module):
    """log-compress non-negative features (the bug: no epsilon, and ReLU outputs are often 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class LogFeatureNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.act = nn.ReLU()
        self.logscale = LogScale()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.logscale(self.act(self.fc1(x))))))


def forward_nan_log0(seed: int, steps: int) -> Outcome:
    """log(ReLU(x)) in the middle of an MLP: −inf in the forward pass, NaN from the next layer on."""
    torch.manual_seed(seed)
    model = LogFeatureNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trace = Trace()
    X, _, _, _ = digits_split()
    with torch.no_grad():
        h = model.act(model.fc1(X[:64]))
        facts = {
            "input_nonfinite": float((~torch.isfinite(X)).sum()),
            "relu_zeros": float((h == 0).float().mean()),
            "logscale_neginf": float(torch.isneginf(model.logscale(h)).float().mean()),
            "fc1_out_nonfinite": float((~torch.isfinite(model.fc1(X[:64]))).sum()),
        }
    with gw.Monitor(model, opt) as mon:
        for x, y in _digits(seed, steps=steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon, **facts)


class PairwiseDistance(nn.Module):
    """Euclidean distances between all pairs of embeddings, written out by hand."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))


class MetricNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
        self.dist = PairwiseDistance()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dist(self.embed(x))


def _contrastive(d: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    same = (y[:, None] == y[None, :]).float()
    return (same * d**2 + (1 - same) * torch.relu(margin - d) ** 2).mean()


def backward_nan_sqrt0(seed: int, steps: int) -> Outcome:
    """A contrastive loss over hand-written pairwise distances: the diagonal is sqrt(0), whose
    gradient 1/(2·sqrt(0)) · 0 is NaN although every forward value is finite."""
    torch.manual_seed(seed)
    model = MetricNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trace = Trace()
    finite_forward = []
    with gw.Monitor(model, opt) as mon:
        for x, y in _digits(seed, batch=32, steps=steps):
            d = model(x)
            finite_forward.append(bool(torch.isfinite(d).all()))
            loss = _contrastive(d, y)
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon, first_forward_finite=float(finite_forward[0]))


# --------------------------------------------------------------------------------------------
# Mixed precision: fp16 without and with a GradScaler
# --------------------------------------------------------------------------------------------


def _returns_model() -> nn.Sequential:
    layers: list[nn.Module] = []
    width_in = 32
    for _ in range(6):
        layers += [nn.Linear(width_in, 128), nn.ReLU()]
        width_in = 128
    return nn.Sequential(*layers, nn.Linear(128, 128))


def _fp16(seed: int, steps: int, *, scaled: bool) -> Outcome:
    # targets the size of daily returns (~1e-3): the MSE gradient is ~1e-6 at the output and
    # smaller still after six layers, below fp16's smallest subnormal (6e-8) without loss scaling
    torch.manual_seed(seed)
    model = _returns_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=scaled)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 128, generator=g)
    trace = Trace()
    zero_first, zero_first_fp32 = math.nan, math.nan
    with gw.Monitor(model, opt, scaler=scaler if scaled else None) as mon:
        for i in range(steps):
            x = torch.randn(256, 32, generator=g)
            y = torch.tanh(x @ w / 6) * 1e-3
            with torch.autocast("cpu", dtype=torch.float16):
                out = model(x)
            loss = nn.functional.mse_loss(out.float(), y)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            trace.log(loss, model.parameters())
            if i == steps - 1:
                zero_first = float((model[0].weight.grad == 0).float().mean())
                ref = _returns_model()
                ref.load_state_dict(model.state_dict())
                nn.functional.mse_loss(ref(x), y).backward()
                zero_first_fp32 = float((ref[0].weight.grad == 0).float().mean())
            mon.step(loss)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
        return trace.outcome(mon, first_layer_zero_grad=zero_first, first_layer_zero_grad_fp32=zero_first_fp32)


def fp16_no_scaler(seed: int, steps: int) -> Outcome:
    """fp16 autocast without loss scaling: the first layers' gradients underflow to exact zeros."""
    return _fp16(seed, steps, scaled=False)


def fp16_grad_scaler(seed: int, steps: int) -> Outcome:
    """Control: the same program with a GradScaler (monitor told about it): healthy."""
    return _fp16(seed, steps, scaled=True)


# --------------------------------------------------------------------------------------------
# Recurrences: note 3's linear RNN, an LSTM LM
# --------------------------------------------------------------------------------------------


NOTE3_EPS = 0.8
NOTE3_T = 30


class LinearRecurrence(nn.Module):
    """h_t = W_rec h_{t−1} + W_in u_t with W_rec block-diagonal copies of note 3's [[0, 2], [ε, 0]]."""

    def __init__(self, n_in: int, n_hidden: int, eps: float) -> None:
        super().__init__()
        block = torch.tensor([[0.0, 2.0], [eps, 0.0]])
        self.w_rec = nn.Parameter(torch.block_diag(*[block] * (n_hidden // 2)))
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) / math.sqrt(n_in))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (B, T, n_in) → last state (B, n_hidden)
        h = u.new_zeros(u.shape[0], self.w_rec.shape[0])
        for t in range(u.shape[1]):
            h = h @ self.w_rec.T + u[:, t] @ self.w_in.T
        return h


class LinearRNN(nn.Module):
    def __init__(self, eps: float) -> None:
        super().__init__()
        self.rnn = LinearRecurrence(1, 16, eps)
        self.readout = nn.Linear(16, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(u)).squeeze(-1)


def linear_rnn_note3(seed: int, steps: int) -> Outcome:
    """Note 3's recurrence without a nonlinearity (c = 1), trained with Adam: (W D)² = 2ε·I = 1.6·I, so
    ∂h_T/∂h_0 grows as 1.6^(T/2) and the gradient explodes although every weight is ≤ 2. (With SGD
    the first step already overflows the forward pass to NaN; Adam's bounded steps keep it finite.)"""
    torch.manual_seed(seed)
    model = LinearRNN(NOTE3_EPS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    trace = Trace()
    with gw.Monitor(model, opt) as mon:
        for _ in range(steps):
            u = torch.randn(32, NOTE3_T, 1, generator=g)
            loss = nn.functional.mse_loss(model(u), u[:, 0, 0])  # recall the first input
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        rate = gw.theory.rnn.note3(eps=NOTE3_EPS, c=1.0).rate
        return trace.outcome(mon, note3_rate=rate, jacobian_growth=rate ** (NOTE3_T / 2))


def lstm_lm(seed: int, steps: int) -> Outcome:
    """Control: an LSTM word LM with Adam (lr 3e-3). Healthy."""
    V, emsize, nhid, batch, bptt = 500, 32, 64, 16, 20
    data = batchify(_text(V).sample(batch * (bptt * steps + 1), seed=seed), batch)
    torch.manual_seed(seed)
    model = RNNModel(V, emsize, nhid, kind="LSTM")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trace = Trace()
    hidden = (torch.zeros(1, batch, nhid), torch.zeros(1, batch, nhid))
    with gw.Monitor(model, opt) as mon:
        for i in range(steps):
            x, y = data[i * bptt : (i + 1) * bptt], data[i * bptt + 1 : (i + 1) * bptt + 1]
            hidden = _repackage(hidden)
            output, hidden = model(x, hidden)
            loss = nn.functional.cross_entropy(output.view(-1, V), y.reshape(-1))
            loss.backward()
            trace.log(loss, model.parameters())
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon, chance_loss=math.log(V))


# --------------------------------------------------------------------------------------------
# Embeddings and transformers
# --------------------------------------------------------------------------------------------


class BagClassifier(nn.Module):
    def __init__(self, vocab: int, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab, 32, mode="mean")
        self.fc = nn.Linear(32, 64)
        self.act = nn.ReLU()
        self.out = nn.Linear(64, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(self.embedding(tokens))))


def embedding_classifier(seed: int, steps: int) -> Outcome:
    """Control: topic classification of generated documents with an EmbeddingBag (5,000 words;
    a batch touches a few hundred rows). Healthy."""
    V, n_topics, doc_len, batch = 5000, 4, 30, 32
    text = _text(V)
    g = torch.Generator().manual_seed(seed)
    # a topic's documents draw 70 % of their words from the classes ≡ topic (mod 4)
    topic_of_word = torch.from_numpy(text.word_class % n_topics)
    zipf = torch.from_numpy(text.stationary)
    per_topic = [torch.where(topic_of_word == t, zipf, torch.zeros_like(zipf)) for t in range(n_topics)]
    torch.manual_seed(seed)
    model = BagClassifier(V, n_topics)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trace, touched = Trace(), []
    with gw.Monitor(model, opt) as mon:
        for _ in range(steps):
            y = torch.randint(0, n_topics, (batch,), generator=g)
            on_topic = torch.stack([torch.multinomial(per_topic[int(t)], doc_len, True, generator=g) for t in y])
            noise = torch.multinomial(zipf, batch * doc_len, True, generator=g).view(batch, doc_len)
            tokens = torch.where(torch.rand(batch, doc_len, generator=g) < 0.7, on_topic, noise)
            loss = nn.functional.cross_entropy(model(tokens), y)
            loss.backward()
            trace.log(loss, model.parameters())
            touched.append(float((model.embedding.weight.grad.abs().sum(1) > 0).float().mean()))
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        return trace.outcome(mon, rows_touched=float(np.mean(touched)), chance_loss=math.log(n_topics))


class TransformerLM(nn.Module):
    """Token + position embeddings → nn.TransformerEncoder (causal) → head."""

    def __init__(self, vocab: int, length: int, d: int, layers: int, *, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(length, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos(torch.arange(x.shape[1]))
        return self.head(self.encoder(h, mask=self.mask, is_causal=True))


def _transformer_lm(seed: int, steps: int, *, layers: int, norm_first: bool, warmup: int) -> Outcome:
    V, T, B, d = 500, 32, 16, 64
    text = _text(V)
    data = text.sample(B * (T + 1) * steps, seed=seed).view(steps, B, T + 1)
    torch.manual_seed(seed)
    model = TransformerLM(V, T, d, layers, norm_first=norm_first)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)) if warmup else None
    trace, bottom_over_top = Trace(), []
    with gw.Monitor(model, opt) as mon:
        for i in range(steps):
            x, y = data[i, :, :-1], data[i, :, 1:]
            loss = nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
            loss.backward()
            trace.log(loss, model.parameters())
            blocks = model.encoder.layers
            bottom_over_top.append(
                float(
                    torch.nn.utils.get_total_norm([p.grad for p in blocks[0].parameters()])
                    / torch.nn.utils.get_total_norm([p.grad for p in blocks[-1].parameters()])
                )
            )
            mon.step(loss)
            opt.step()
            opt.zero_grad()
            if sched is not None:
                sched.step()
        tail = max(1, steps // 5)
        return trace.outcome(
            mon,
            bottom_over_top_first=bottom_over_top[0],
            bottom_over_top_last=float(np.median(bottom_over_top[-tail:])),
            loss_tail=float(np.mean(trace.loss[-tail:])),
            unigram_entropy=text.unigram_entropy,
            entropy_rate=text.entropy_rate,
        )


def postln_transformer_deep(seed: int, steps: int) -> Outcome:
    """12 post-LN layers, Adam at 1e-3 without warm-up: the bottom layers' gradients collapse."""
    return _transformer_lm(seed, steps, layers=12, norm_first=False, warmup=0)


def small_transformer(seed: int, steps: int) -> Outcome:
    """Control: 2 pre-LN layers, Adam 1e-3 with 10 warm-up steps. Healthy."""
    return _transformer_lm(seed, steps, layers=2, norm_first=True, warmup=10)


# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------

_BOTTOM = ("embed", "pos", "encoder.layers.0", "encoder.layers.1", "encoder.layers.2", "encoder.layers.3")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "lm_rnn_exploding",
        "word LM (2,000 words, nn.RNN tanh), manual SGD at lr 5, no clipping",
        Truth(
            ("exploding",),
            ("rnn",),
            ("clip_grad_norm", "lr:lower"),
            why="within ~10 steps ‖g‖ grows > 100× and the recurrent weights' norm > 50×; the tanh units "
            "saturate only afterwards, so the saturation is a consequence (Pascanu et al. 2013).",
        ),
        lm_rnn_exploding,
        steps=100,
        quick_steps=30,
    ),
    Scenario(
        "lm_rnn_clipped",
        "the same LM with clip_grad_norm_(…, 0.25), reported by mon.step(loss, clip=…)",
        Truth(("healthy", "vanishing"), why="clipping bounds every step; the loss falls to the unigram entropy."),
        lm_rnn_clipped,
        steps=150,
        quick_steps=50,
    ),
    Scenario(
        "manual_sgd_mlp",
        "ReLU MLP on digits, hand-written SGD (no optimizer object)",
        Truth(("healthy",), why="a 3-layer ReLU MLP at lr 0.3 trains without incident."),
        manual_sgd_mlp,
        steps=150,
        quick_steps=60,
        seeds=5,
        control=True,
    ),
    Scenario(
        "embedding_classifier",
        "EmbeddingBag(5,000 words) + MLP topic classifier, Adam",
        Truth(("healthy",), why="a shallow model that learns; most embedding rows get no gradient in a batch."),
        embedding_classifier,
        steps=150,
        quick_steps=40,
        seeds=5,
        control=True,
    ),
    Scenario(
        "postln_transformer_deep",
        "12-layer post-LN transformer LM, Adam 1e-3, no warm-up",
        Truth(
            ("vanishing",),
            _BOTTOM,
            ("lr:lower", "layernorm"),
            why="Xiong et al. 2020: post-LN's gradient is largest near the output and an early large lr "
            "without warm-up breaks training; here the bottom layers' gradient falls ~1000× below the "
            "top's and the loss stalls at the unigram entropy, while pre-LN at the same lr learns.",
        ),
        postln_transformer_deep,
        steps=80,
        quick_steps=40,
    ),
    Scenario(
        "fp16_no_scaler",
        "6-layer ReLU regression on 1e-3-sized targets under fp16 autocast, no GradScaler",
        Truth(
            ("vanishing",),
            ("0", "2"),
            ("amp:grad_scaler",),
            why="the first layers' fp16 gradients are exact zeros (underflow) where float32 ones are not.",
        ),
        fp16_no_scaler,
        steps=60,
        quick_steps=30,
    ),
    Scenario(
        "fp16_grad_scaler",
        "the same with a GradScaler (passed to the monitor)",
        Truth(("healthy",), why="loss scaling keeps the small gradients representable."),
        fp16_grad_scaler,
        steps=60,
        quick_steps=30,
        seeds=5,
        control=True,
    ),
    Scenario(
        "forward_nan_log0",
        "log(ReLU(x)) without epsilon in the middle of an MLP",
        Truth(
            ("nonfinite",),
            ("logscale",),
            ("numerics:guard",),
            origin="forward",
            why="log(0) = −inf in the forward pass of `logscale`; the inputs and fc1's outputs are finite.",
        ),
        forward_nan_log0,
        steps=20,
        quick_steps=10,
    ),
    Scenario(
        "backward_nan_sqrt0",
        "contrastive loss over hand-written pairwise distances (sqrt at 0 on the diagonal)",
        Truth(
            ("nonfinite",),
            ("dist",),
            ("numerics:guard",),
            origin="backward",
            why="every forward value is finite; d sqrt/dx at 0 is inf, times 0 gives NaN in the backward "
            "pass of `dist`. The fix is numerical (an epsilon), not clipping.",
        ),
        backward_nan_sqrt0,
        steps=20,
        quick_steps=10,
    ),
    Scenario(
        "missing_zero_grad",
        "SGD + momentum on digits, optimizer.zero_grad() never called",
        Truth(
            ("exploding",),
            remedies=(),
            lint=r"zero_grad",
            why="every .grad is the sum of all gradients so far: ‖g‖ grows with the step count.",
        ),
        missing_zero_grad,
        steps=100,
        quick_steps=40,
    ),
    Scenario(
        "adam_lr_one",
        "ReLU MLP on digits, Adam at lr 1.0",
        Truth(("exploding",), None, ("lr:lower",), why="the weights grow by ~1 per entry per step; the loss blows up."),
        adam_lr_one,
        steps=60,
        quick_steps=30,
    ),
    Scenario(
        "relu_killed_by_lr",
        "ReLU MLP on digits, SGD at a large lr",
        Truth(
            ("vanishing",),
            ("0", "1", "2", "3"),
            ("lr:lower", "leaky_relu"),
            why="after the first steps most hidden units output 0 for every input: their gradient is exactly 0.",
        ),
        relu_killed_by_lr,
        steps=60,
        quick_steps=60,
    ),
    Scenario(
        "sigmoid_mlp_20",
        "20 sigmoid layers on digits, default init, SGD",
        Truth(
            ("vanishing",),
            ("0", "2", "4"),
            ("init:kumar", "relu", "batchnorm", "residual", "init:yilmaz_poli"),
            why="σ′ ≤ 1/4 and default-init weights shrink the gradient ~10× per layer toward the input.",
        ),
        sigmoid_mlp_20,
        steps=60,
        quick_steps=30,
    ),
    Scenario(
        "linear_rnn_note3",
        "note 3's linear recurrence (W_rec blocks [[0, 2], [0.8, 0]], γ ≈ 1.26), T = 30, Adam",
        Truth(
            ("exploding",),
            ("rnn",),
            ("clip_grad_norm", "spectral_radius<1"),
            why="with no nonlinearity (c = 1), (W D)² = 1.6·I: the Jacobian product over 30 steps is 1.6^15 ≈ 1.2e3; "
            "‖g‖ is ~1e6 × ‖θ‖.",
        ),
        linear_rnn_note3,
        steps=40,
        quick_steps=20,
    ),
    Scenario(
        "resbn_mlp",
        "10-block residual BatchNorm ReLU MLP, SGD + momentum",
        Truth(("healthy",), why="residual connections and BatchNorm keep every layer's gradient at scale."),
        resbn_mlp,
        steps=100,
        quick_steps=30,
        seeds=5,
        control=True,
    ),
    Scenario(
        "lstm_lm",
        "LSTM word LM (500 words), Adam 3e-3",
        Truth(("healthy",), why="a small LSTM LM that learns."),
        lstm_lm,
        steps=100,
        quick_steps=30,
        seeds=5,
        control=True,
    ),
    Scenario(
        "small_transformer",
        "2-layer pre-LN transformer LM, Adam 1e-3 with warm-up",
        Truth(("healthy",), why="pre-LN with warm-up: the configuration Xiong et al. 2020 recommend."),
        small_transformer,
        steps=80,
        quick_steps=30,
        seeds=5,
        control=True,
    ),
)


def get(name: str) -> Scenario:
    """The scenario called ``name`` (KeyError listing the names otherwise)."""
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; scenarios: {', '.join(s.name for s in SCENARIOS)}")
