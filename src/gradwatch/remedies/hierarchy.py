"""Schmidhuber's (1992) history compressor: a two-level hierarchy of recurrent networks.

The article's "multi-level hierarchy": J. Schmidhuber, "Learning complex, extended
sequences using the principle of history compression", Neural Computation 4 (1992). The
lower level, the *automatizer*, is an RNN that learns to predict its next input. Inputs
it predicts carry no new information and are dropped; only the inputs it fails to predict
— with their time stamps — go up to the *chunker*, an RNN that therefore sees a sequence
about as long as the number of surprising events, not as long as the original. A
dependency that spans hundreds of steps below spans a few steps above, where gradients
do not have time to vanish.

Training follows the paper's order: the automatizer first (unsupervised next-input
prediction), then the chunker on the compressed sequences (here, supervised: the class of
the sequence), then both together (``joint_epochs``: the summed loss, with the
compression recomputed from the current automatizer every epoch). Where we differ from
the paper: the paper's final "collapse" teaches the automatizer to also predict the
chunker's states so that one net ends up doing the whole job; our joint phase only
fine-tunes both nets side by side. Inputs are one-hot symbol sequences, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from gradwatch import _checks
from gradwatch.errors import ConfigError

__all__ = ["Compressed", "HistoryCompressor"]


@dataclass(frozen=True)
class Compressed:
    """The chunker's view of a batch of sequences.

    Attributes:
        inputs: (B, L, V + 1): the unpredicted one-hot inputs, each with its time stamp t/T
            as a last feature, left-aligned and zero-padded.
        lengths: (B,) how many inputs each sequence kept (the first input always counts).
    """

    inputs: torch.Tensor
    lengths: torch.Tensor


_CELLS = {"gru": nn.GRU, "rnn": nn.RNN}


class _Chunker(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_classes: int, cell: str) -> None:
        super().__init__()
        self.rnn = _CELLS[cell](n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, c: Compressed) -> torch.Tensor:
        packed = pack_padded_sequence(c.inputs, c.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        logits: torch.Tensor = self.head(h[-1])
        return logits


class HistoryCompressor:
    """Automatizer + chunker for classifying long one-hot sequences (scikit-learn style).

    Args:
        n_symbols: alphabet size V (inputs are one-hot, shape (B, T, V)).
        n_classes: number of sequence classes.
        hidden: hidden size of each level's RNN.
        cell: "rnn" (a plain tanh RNN, as in the paper; default) or "gru", for both levels.
        threshold: an input is "unpredicted" when the automatizer gave it probability below
            this (the paper: when the prediction is wrong).
        epochs_automatizer, epochs_chunker, joint_epochs: full-batch Adam epochs per phase.
        lr: Adam's learning rate.
        seed: seeds the initialization (the global RNG is forked, not touched).

    Learned attributes: ``automatizer_`` (GRU + readout), ``chunker_``, ``history_`` (losses).
    """

    def __init__(
        self,
        n_symbols: int,
        n_classes: int,
        *,
        hidden: int = 16,
        cell: str = "rnn",
        threshold: float = 0.5,
        epochs_automatizer: int = 150,
        epochs_chunker: int = 150,
        joint_epochs: int = 20,
        lr: float = 0.02,
        seed: int = 0,
    ) -> None:
        owner = "HistoryCompressor"
        self.n_symbols = _checks.positive_int(n_symbols, "n_symbols", owner, minimum=2)
        self.n_classes = _checks.positive_int(n_classes, "n_classes", owner, minimum=2)
        self.hidden = _checks.positive_int(hidden, "hidden", owner)
        self.cell = _checks.choice(cell, "cell", owner, tuple(_CELLS))
        self.threshold = _checks.interval(threshold, "threshold", owner, 0, 1, low_open=True, high_open=True)
        self.epochs_automatizer = _checks.positive_int(epochs_automatizer, "epochs_automatizer", owner, minimum=0)
        self.epochs_chunker = _checks.positive_int(epochs_chunker, "epochs_chunker", owner, minimum=0)
        self.joint_epochs = _checks.positive_int(joint_epochs, "joint_epochs", owner, minimum=0)
        self.lr = _checks.interval(lr, "lr", owner, 0, low_open=True)
        self.seed = seed

    # ------------------------------------------------------------------ levels
    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[2] != self.n_symbols or x.shape[1] < 2:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ConfigError(
                f"HistoryCompressor expects one-hot sequences of shape (batch, time >= 2, {self.n_symbols}). Got {shape}."
            )
        return x.float()

    def _predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self._a_rnn(x)
        logits: torch.Tensor = self._a_head(out)  # for x_{t+1} made at t, shape (B, T, V)
        return logits

    def _automatizer_loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._predict_logits(x)[:, :-1]
        return nn.functional.cross_entropy(logits.reshape(-1, self.n_symbols), x[:, 1:].argmax(-1).reshape(-1))

    def surprises(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean (B, T): which inputs the automatizer failed to predict (x_0 always)."""
        self._check_fitted()
        x = self._check_x(x)
        with torch.no_grad():
            probs = torch.softmax(self._predict_logits(x)[:, :-1], dim=-1)
            p_actual = (probs * x[:, 1:]).sum(-1)
        first = torch.ones(x.shape[0], 1, dtype=torch.bool)
        return torch.cat([first, p_actual < self.threshold], dim=1)

    def compress(self, x: torch.Tensor) -> Compressed:
        """Keep only the unpredicted inputs, with their time stamps (the chunker's input)."""
        x = self._check_x(x)
        keep = self.surprises(x)
        B, T, V = x.shape
        lengths = keep.sum(dim=1)
        L = int(lengths.max())
        out = torch.zeros(B, L, V + 1)
        stamps = torch.arange(T, dtype=torch.float32) / (T - 1)
        for b in range(B):
            idx = torch.nonzero(keep[b]).squeeze(1)
            out[b, : idx.numel(), :V] = x[b, idx]
            out[b, : idx.numel(), V] = stamps[idx]
        return Compressed(out, lengths)

    # ------------------------------------------------------------------ training
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> HistoryCompressor:
        """Train the automatizer, then the chunker, then both (see the module docstring); returns self.

        Raises:
            ConfigError: bad shapes or labels outside [0, n_classes).
        """
        x = self._check_x(x)
        y = torch.as_tensor(y).long()
        if y.shape != (x.shape[0],) or y.min() < 0 or y.max() >= self.n_classes:
            raise ConfigError(f"y must hold {x.shape[0]} labels in [0, {self.n_classes}). Got shape {tuple(y.shape)}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._a_rnn = _CELLS[self.cell](self.n_symbols, self.hidden, batch_first=True)
            self._a_head = nn.Linear(self.hidden, self.n_symbols)
            self.chunker_ = _Chunker(self.n_symbols + 1, self.hidden, self.n_classes, self.cell)
        self.automatizer_ = nn.ModuleDict({"rnn": self._a_rnn, "head": self._a_head})
        self.history_: dict[str, list[float]] = {"automatizer": [], "chunker": [], "joint": []}
        opt_a = torch.optim.Adam(self.automatizer_.parameters(), lr=self.lr)
        for _ in range(self.epochs_automatizer):
            opt_a.zero_grad()
            loss = self._automatizer_loss(x)
            loss.backward()
            opt_a.step()
            self.history_["automatizer"].append(float(loss.detach()))
        compressed = self.compress(x)
        opt_c = torch.optim.Adam(self.chunker_.parameters(), lr=self.lr)
        for _ in range(self.epochs_chunker):
            opt_c.zero_grad()
            loss = nn.functional.cross_entropy(self.chunker_(compressed), y)
            loss.backward()
            opt_c.step()
            self.history_["chunker"].append(float(loss.detach()))
        params = list(self.automatizer_.parameters()) + list(self.chunker_.parameters())
        opt_j = torch.optim.Adam(params, lr=self.lr / 4)
        for _ in range(self.joint_epochs):
            compressed = self.compress(x)
            opt_j.zero_grad()
            loss = self._automatizer_loss(x) + nn.functional.cross_entropy(self.chunker_(compressed), y)
            loss.backward()
            opt_j.step()
            self.history_["joint"].append(float(loss.detach()))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "chunker_"):
            raise ConfigError("This HistoryCompressor is not fitted yet: call fit(x, y) first.")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class of each sequence, shape (B,)."""
        self._check_fitted()
        with torch.no_grad():
            logits: torch.Tensor = self.chunker_(self.compress(x))
            return logits.argmax(-1)
