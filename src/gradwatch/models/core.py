"""Configurable models to apply remedies to: ``mlp(...)`` and ``rnn(...)``.

Knobs are the article's remedies: activation (ReLU family vs sigmoid/tanh), normalization
(batch or layer), residual connections, initialization (by registry name, from
:mod:`gradwatch.remedies.init`), and for recurrent models the cell (a hand-written RNN
that exposes its hidden states, or torch's fused LSTM/GRU). Every model is an ordinary
``nn.Module``: move it to a GPU with ``.to("cuda")`` ("faster hardware" is a remedy too).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gradwatch import _checks
from gradwatch._hidden import track_hidden
from gradwatch.errors import ConfigError
from gradwatch.remedies.init import INITS, init_, kumar_

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "RNN_KINDS", "RecurrentNet", "SimpleRNNCell", "mlp", "rnn"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
NORMS = ("batch", "layer")
RNN_KINDS = ("gru", "lstm", "rnn")
_INIT_NAMES = (*INITS, "default")


class _Block(nn.Module):
    """One hidden block.

    Plain (``residual=False``): Linear → [norm] → activation.
    Residual (``residual=True``): x + Linear(activation([norm](x))) — the pre-activation
    block of He et al. 2016b ("Identity mappings in deep residual networks"), whose skip
    path is an exact identity and whose branch can add negative values (a post-activation
    ReLU branch could only add, and a deep stack of them drifts).
    """

    def __init__(self, width: int, activation: str, norm: str | None, residual: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.norm = None if norm is None else (nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width))
        self.act = ACTIVATIONS[activation]()
        self.residual = residual

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch F(x) (residual blocks), or the whole block (plain ones)."""
        if self.residual:
            return self.linear(self.act(x if self.norm is None else self.norm(x)))
        h = self.linear(x)
        return self.act(h if self.norm is None else self.norm(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x) if self.residual else self.branch(x)


class MLP(nn.Module):
    """input Linear → activation → ``depth`` blocks → [norm → activation, residual nets] → output Linear."""

    def __init__(
        self,
        depth: int,
        width: int,
        in_dim: int,
        out_dim: int,
        activation: str,
        norm: str | None,
        residual: bool,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, width)
        self.input_act = ACTIVATIONS[activation]()
        self.blocks = nn.Sequential(*[_Block(width, activation, norm, residual) for _ in range(depth)])
        # pre-activation stacks end with their own normalization and activation (He et al. 2016b)
        self.final = None
        if residual:
            final_norm = (
                nn.Identity() if norm is None else (nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width))
            )
            self.final = nn.Sequential(final_norm, ACTIVATIONS[activation]())
        self.output = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.input_act(self.input(x)))
        if self.final is not None:
            h = self.final(h)
        return self.output(h)


def _check_common(owner: str, activation: str, init: str | None) -> None:
    _checks.choice(activation, "activation", owner, tuple(ACTIVATIONS))
    if init is not None:
        _checks.choice(init, "init", owner, _INIT_NAMES)


def _apply_init(model: nn.Module, init: str | None, activation: str) -> None:
    if init == "kumar":
        if activation not in ("sigmoid", "tanh", "relu"):
            raise ConfigError(
                f"init='kumar' covers activation 'sigmoid', 'tanh' and 'relu' (Kumar 2017). Got {activation!r}."
            )
        kumar_(model, activation)
    else:
        init_(model, init, activation)


def mlp(
    *,
    in_dim: int,
    out_dim: int,
    hidden: int = 64,
    layers: int = 2,
    activation: str = "relu",
    norm: str | None = None,
    residual: bool = False,
    init: str | None = None,
    seed: int | None = None,
) -> MLP:
    """Build a multi-layer perceptron with the article's remedies as knobs.

    Args:
        in_dim, out_dim: input and output sizes (≥ 1).
        hidden: the width of every hidden block (≥ 1).
        layers: number of hidden blocks (≥ 1), each Linear(hidden, hidden) → [norm] → activation.
        activation: one of ``ACTIVATIONS``.
        norm: None, "batch" (``nn.BatchNorm1d``) or "layer" (``nn.LayerNorm``), before the activation.
        residual: identity skip connections around every block: x + F(x) with the
            pre-activation branch F(x) = Linear(activation(norm(x))) of He et al. 2016b.
        init: None/"default" (torch's), or a name from ``gradwatch.remedies.init.INITS``.
        seed: seeds the initialization (the global RNG is forked, not touched).

    Raises:
        ConfigError: a size < 1 or an unknown name.
    """
    owner = "mlp"
    for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("layers", layers)):
        _checks.positive_int(v, name, owner)
    _check_common(owner, activation, init)
    if norm is not None:
        _checks.choice(norm, "norm", owner, NORMS)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = MLP(layers, hidden, in_dim, out_dim, activation, norm, bool(residual))
        _apply_init(model, init, activation)
    return model


class SimpleRNNCell(nn.Module):
    """x_t = act(W_in u_t + W_rec h_{t−1} + b), written out so that every state is visible.

    ``activation`` may be "sigmoid" (the article's model), "tanh", "relu", ... . The
    recurrent Linear is marked so that :func:`gradwatch.remedies.init.identity_recurrent_`
    recognizes it.
    """

    def __init__(self, in_dim: int, hidden: int, activation: str = "tanh") -> None:
        super().__init__()
        self.w_in = nn.Linear(in_dim, hidden)
        self.w_rec = nn.Linear(hidden, hidden, bias=False)
        self.w_rec._gradwatch_recurrent = True  # type: ignore[assignment]
        self.act = ACTIVATIONS[activation]()
        self.hidden = hidden

    def forward(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.w_in(u) + self.w_rec(h))


class RecurrentNet(nn.Module):
    """A recurrent network reading (B, T, in_dim) and predicting from its last state.

    After each forward, ``hidden_states`` holds the states h_1..h_T of the last layer of a
    hand-written (``kind="rnn"``) network — what the Pascanu regularizer and the monitor's
    hidden-state profile need. Fused LSTM/GRU keep theirs internal (the list stays empty).
    ``inputs`` holds the last forward's input (B, T, in_dim): what gradient flossing
    (:mod:`gradwatch.remedies.flossing`) measures the Lyapunov exponents along.
    """

    def __init__(self, kind: str, in_dim: int, hidden: int, out_dim: int, layers: int, activation: str) -> None:
        super().__init__()
        self.kind = kind
        self.hidden = hidden
        if kind == "rnn":
            dims = [in_dim] + [hidden] * (layers - 1)
            self.cells = nn.ModuleList([SimpleRNNCell(d, hidden, activation) for d in dims])
            self.fused = None
        else:
            self.cells = nn.ModuleList()
            self.fused = (nn.LSTM if kind == "lstm" else nn.GRU)(in_dim, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, out_dim)
        self.hidden_states: list[torch.Tensor] = []
        self.inputs: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ConfigError(f"RecurrentNet expects inputs of shape (batch, time, features). Got {tuple(x.shape)}.")
        self.inputs = x
        if self.fused is not None:
            self.hidden_states = []
            return self.head(self.fused(x)[0][:, -1])
        seq = x
        states: list[torch.Tensor] = []
        for cell in self.cells:
            h = x.new_zeros(x.shape[0], self.hidden)
            states = []
            for t in range(seq.shape[1]):
                h = track_hidden(cell(seq[:, t], h))
                states.append(h)
            seq = torch.stack(states, dim=1)
        self.hidden_states = states
        return self.head(states[-1])


def rnn(
    *,
    kind: str = "rnn",
    in_dim: int = 1,
    out_dim: int = 1,
    hidden: int = 32,
    layers: int = 1,
    activation: str = "tanh",
    init: str | None = None,
    seed: int | None = None,
) -> RecurrentNet:
    """Build a recurrent network: a hand-written RNN (any activation, sigmoid included) or fused LSTM/GRU.

    Args:
        kind: "rnn" (hand-written, exposes ``hidden_states``), "lstm" or "gru" (torch's fused modules).
        in_dim, out_dim: input and output sizes per time step (≥ 1).
        hidden: the hidden state's size (≥ 1).
        layers: number of stacked recurrent layers (≥ 1).
        activation: the RNN cell's activation (``kind="rnn"`` only; LSTM/GRU have their own gates).
        init: None/"default", or a name from ``gradwatch.remedies.init.INITS``
            (e.g. "orthogonal", "identity_recurrent" for an IRNN with ``activation="relu"``).
        seed: seeds the initialization (the global RNG is forked, not touched).

    Raises:
        ConfigError: an unknown kind/activation/init or a size < 1.
    """
    owner = "rnn"
    _checks.choice(kind, "kind", owner, RNN_KINDS)
    for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("layers", layers)):
        _checks.positive_int(v, name, owner)
    _check_common(owner, activation, init)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = RecurrentNet(kind, in_dim, hidden, out_dim, layers, activation)
        _apply_init(model, init, activation if kind == "rnn" else "tanh")
    return model
