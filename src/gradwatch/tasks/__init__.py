"""Long-range tasks and small embedded data sets, with their success criteria and chance levels.

Every task generates batches ``(inputs, targets)`` with inputs batch-first, shape
(B, T, n_inputs), from a length T, a batch size and a ``torch.Generator``; it knows how to
score outputs (:meth:`Task.error`: the fraction of sequences got wrong), what counts as
solved (``success_error``) and what chance gets (``chance_error``, analytic; the tests
check it by simulation).

The pathological problems follow Pascanu, Mikolov & Bengio 2013 ("On the difficulty of
training recurrent neural networks", §4.1), which take them from Hochreiter &
Schmidhuber 1997 and Martens & Sutskever 2011, as their authors' published code defines
them: a regression output counts as wrong when its squared error exceeds 0.04, a
classification when its arg-max is wrong, and a task is solved when (almost) no sequence
is wrong — we use an error rate below 1 % (the authors stop at < 0.0001 % on 10,000
sequences; reduced-size experiments cannot resolve that).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradwatch import _checks
from gradwatch.errors import ConfigError
from gradwatch.tasks.guessing import latch_sequences, parity_sequences
from gradwatch.tasks.text import MarkovText, batchify, markov_text

__all__ = [
    "FLAT_TASKS",
    "TASKS",
    "MarkovText",
    "Task",
    "batchify",
    "digits_split",
    "get_task",
    "latch_sequences",
    "markov_text",
    "parity_sequences",
    "rare_events",
]

Generator = torch.Generator


@dataclass(frozen=True)
class Task:
    """A task: how to generate it, score it, and what chance and success are.

    Attributes:
        name: registry name.
        source: the paper that defines it.
        kind: "regression" (one output, squared-error threshold 0.04), "classification"
            (``n_outputs`` classes from the last step) or "sequence" (a class at every step,
            outputs (B, T, n_outputs); a sequence is wrong if any step is).
        n_inputs, n_outputs: feature sizes.
        chance_error: the error rate of the best input-blind guess (analytic).
        success_error: solved when the error rate is below this.
        min_length: the shortest T that the definition allows.
        generate: (T, batch_size, generator) → (inputs (B, T', n_inputs), targets).
        held_out_fn: a fixed held-out set () → (inputs, targets), scored instead of a
            generated batch (see :meth:`eval_batch`); None for generated tasks.
    """

    name: str
    source: str
    kind: str
    n_inputs: int
    n_outputs: int
    chance_error: float
    success_error: float
    min_length: int
    generate_fn: Callable[[int, int, Generator], tuple[torch.Tensor, torch.Tensor]]
    held_out_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None

    def generate(
        self,
        length: int,
        batch_size: int,
        generator: Generator | None = None,
        *,
        seed: int = 0,
        jitter: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a batch: ``(inputs, targets)``; inputs (B, T', n_inputs), batch first.

        ``jitter=False`` turns off the authors' ±10 % length variation of the adding and
        multiplication tasks (T' = T exactly), e.g. to stack batches of several seeds.

        Raises:
            ConfigError: ``length`` below the task's minimum or ``batch_size`` < 1.
        """
        T = _checks.positive_int(length, "length", self.name, minimum=self.min_length)
        B = _checks.positive_int(batch_size, "batch_size", self.name)
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        if self.name in ("adding", "multiplication"):
            return self.generate_fn(T, B, gen, jitter)  # type: ignore[call-arg]
        return self.generate_fn(T, B, gen)

    def eval_batch(
        self, length: int, batch_size: int, *, seed: int, jitter: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch a run is scored on: the task's fixed held-out set if it has one, else a batch drawn with ``seed``.

        A held-out set is returned whole (``batch_size`` is then ignored), so that the
        error is measured on data the training batches never contain.
        """
        if self.held_out_fn is not None:
            return self.held_out_fn()
        return self.generate(length, batch_size, seed=seed, jitter=jitter)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss: mean squared error (regression) or cross-entropy (classification)."""
        if self.kind == "regression":
            return nn.functional.mse_loss(outputs.reshape(-1), targets.reshape(-1))
        if self.kind == "sequence":
            return nn.functional.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
        return nn.functional.cross_entropy(outputs, targets)

    def error(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Fraction of sequences got wrong (squared error > 0.04, or a wrong class); NaN if any output is NaN/Inf.

        A non-finite output is not an answer: argmax would pick a class for it and count it right
        by chance, and a NaN squared error compares as "not > 0.04" (correct).
        """
        with torch.no_grad():
            if not bool(torch.isfinite(outputs).all()):
                return math.nan
            if self.kind == "regression":
                return float(((outputs.reshape(-1) - targets.reshape(-1)) ** 2 > 0.04).float().mean())
            if self.kind == "sequence":
                return float((outputs.argmax(-1) != targets).any(dim=1).float().mean())
            return float((outputs.argmax(-1) != targets).float().mean())

    def solved(self, outputs: torch.Tensor, targets: torch.Tensor) -> bool:
        """Whether the error rate is below ``success_error``."""
        return self.error(outputs, targets) < self.success_error


def _two_positions(B: int, T: int, gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """p0 ∈ [0, 0.1 T), p1 ∈ [0.1 T, 0.5 T): the marked steps of the adding/multiplication tasks."""
    p0 = torch.randint(0, max(1, int(T * 0.1)), (B,), generator=gen)
    p1 = torch.randint(0, max(1, int(T * 0.4)), (B,), generator=gen) + int(T * 0.1)
    return p0, p1


def _marked_values(
    length: int, B: int, gen: Generator, jitter: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # the authors vary the length by up to 10 % per batch
    T = length + (int(torch.randint(0, max(1, int(length * 0.1)), (1,), generator=gen)) if jitter else 0)
    x = torch.zeros(B, T, 2)
    x[:, :, 1] = torch.rand(B, T, generator=gen)
    p0, p1 = _two_positions(B, T, gen)
    rows = torch.arange(B)
    x[rows, p0, 0] = 1.0
    x[rows, p1, 0] = 1.0
    return x, x[rows, p0, 1], x[rows, p1, 1]


def _adding(length: int, B: int, gen: Generator, jitter: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    x, a, b = _marked_values(length, B, gen, jitter)
    return x, (a + b) / 2


def _multiplication(length: int, B: int, gen: Generator, jitter: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    x, a, b = _marked_values(length, B, gen, jitter)
    return x, a * b


def _one_hot(vals: torch.Tensor, n: int) -> torch.Tensor:
    return nn.functional.one_hot(vals, n).float()


def _temporal_order(length: int, B: int, gen: Generator, n_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symbols A/B (channels 0/1) at n_bits random early/middle/late positions among noise c..f."""
    starts = (0.1, 0.5) if n_bits == 2 else (0.1, 0.3, 0.6)
    vals = torch.randint(0, 4, (B, length), generator=gen) + 2
    rows = torch.arange(B)
    label = torch.zeros(B, dtype=torch.long)
    for i, s in enumerate(starts):
        p = torch.randint(0, max(1, int(length * 0.1)), (B,), generator=gen) + int(length * s)
        v = torch.randint(0, 2, (B,), generator=gen)
        vals[rows, p] = v
        label += v * (2**i)
    return _one_hot(vals, 6), label


def _permutation(length: int, B: int, gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """100 symbols; the first is 0 or 1, the rest random in 2..99; predict the first at the end."""
    vals = torch.randint(2, 100, (B, length), generator=gen)
    first = torch.randint(0, 2, (B,), generator=gen)
    vals[:, 0] = first
    return _one_hot(vals, 100), first


def _memorization(
    length: int, B: int, gen: Generator, n_values: int = 5, n_pos: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noiseless memorization: show n_pos symbols, wait ``length`` steps, then recall them all.

    Inputs: n_values symbols + a "blank" channel + a "go" channel; targets: per step, the
    symbol to output (n_values) or "blank" (index n_values), shape (B, length + 2·n_pos).
    """
    total = length + 2 * n_pos
    x = torch.zeros(B, total, n_values + 2)
    y = torch.full((B, total), n_values, dtype=torch.long)
    symbols = torch.randint(0, n_values, (B, n_pos), generator=gen)
    x[:, :n_pos, :n_values] = _one_hot(symbols, n_values)
    x[:, n_pos:, n_values] = 1.0
    x[:, length + n_pos, n_values] = 0.0
    x[:, length + n_pos, n_values + 1] = 1.0
    y[:, -n_pos:] = symbols
    return x, y


def _latching(length: int, B: int, gen: Generator, L: int = 3, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Bengio, Simard & Frasconi 1994, §III "two-sequence problem": the class is set by the first L
    inputs (one of two fixed random prototypes), the remaining T − L inputs are Gaussian noise."""
    proto_gen = torch.Generator().manual_seed(1994)
    protos = torch.rand(2, L, generator=proto_gen) * 2 - 1
    label = torch.randint(0, 2, (B,), generator=gen)
    x = torch.randn(B, length, 1, generator=gen) * noise
    x[:, :L, 0] = protos[label]
    return x, label


_DIGITS: tuple[torch.Tensor, torch.Tensor] | None = None


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        _DIGITS = (torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target))
    return _DIGITS


def digits_split(n_train: int = 1400) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (X_train, y_train, X_test, y_test): pixels scaled to [0, 1], the first
    ``n_train`` of the 1,797 images for training (the file's order; no shuffling), the rest held out."""
    X, y = _digits()
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _sequential_digits(
    length: int, B: int, gen: Generator, permuted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits read one pixel per step (64 steps), optionally permuted."""
    X, y = _digits()
    idx = torch.randint(0, X.shape[0], (B,), generator=gen)
    seq = X[idx]
    if permuted:
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(2015))
        seq = seq[:, perm]
    return seq.unsqueeze(-1), y[idx]


def _digits_flat(length: int, B: int, gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as flat 64-pixel vectors (for deep MLPs), as a length-1 sequence."""
    X, y = _digits()
    idx = torch.randint(0, X.shape[0], (B,), generator=gen)
    return X[idx].unsqueeze(1), y[idx]


def _digits_train_flat(length: int, B: int, gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The training part of :func:`digits_split` as flat 64-pixel vectors (a length-1 sequence)."""
    X, y, _, _ = digits_split()
    idx = torch.randint(0, X.shape[0], (B,), generator=gen)
    return X[idx].unsqueeze(1), y[idx]


def _digits_held_out_flat() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, X, y = digits_split()
    return X.unsqueeze(1), y


_MNIST1D: tuple[torch.Tensor, torch.Tensor] | None = None


def _mnist1d_data() -> tuple[torch.Tensor, torch.Tensor]:
    global _MNIST1D
    if _MNIST1D is None:
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise ConfigError("Task 'mnist1d' needs the mnist1d package: pip install mnist1d.") from None
        # built offline from its generator; mnist1d.get_dataset() would download
        d = make_dataset(get_dataset_args())
        _MNIST1D = (torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.long))
    return _MNIST1D


def _mnist1d(length: int, B: int, gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Greydanus 2020's MNIST-1D (40-point 1-D digits), read one point per step."""
    X, y = _mnist1d_data()
    idx = torch.randint(0, X.shape[0], (B,), generator=gen)
    return X[idx].unsqueeze(-1), y[idx]


def _majority_error(name: str = "digits") -> float:
    _, y = _mnist1d_data() if name == "mnist1d" else _digits()
    counts = torch.bincount(y)
    return float(1 - counts.max() / counts.sum())


def _adding_chance() -> float:
    # best constant 1/2 is wrong when ((a + b)/2 − 1/2)² > 0.04 ⇔ |a + b − 1| > 0.4; a + b is
    # triangular on [0, 2], so P = 2 · ½ · 0.6² = 0.36
    return 0.36


def _multiplication_chance() -> float:
    # constant E[ab] = 1/4 wrong when |ab − 1/4| > 0.2; P(ab ≤ z) = z − z ln z
    def cdf(z: float) -> float:
        return z - z * math.log(z)

    return cdf(0.05) + (1 - cdf(0.45))


_P13 = "Pascanu, Mikolov & Bengio 2013, §4.1 (after Hochreiter & Schmidhuber 1997; Martens & Sutskever 2011)"

TASKS: dict[str, Task] = {
    "adding": Task("adding", _P13, "regression", 2, 1, _adding_chance(), 0.01, 10, _adding),
    "multiplication": Task(
        "multiplication", _P13, "regression", 2, 1, _multiplication_chance(), 0.01, 10, _multiplication
    ),
    "temporal_order": Task(
        "temporal_order", _P13, "classification", 6, 4, 0.75, 0.01, 10, lambda T, B, g: _temporal_order(T, B, g, 2)
    ),
    "temporal_order_3bit": Task(
        "temporal_order_3bit",
        _P13,
        "classification",
        6,
        8,
        0.875,
        0.01,
        10,
        lambda T, B, g: _temporal_order(T, B, g, 3),
    ),
    "random_permutation": Task("random_permutation", _P13, "classification", 100, 100, 0.5, 0.01, 2, _permutation),
    "memorization": Task(
        "memorization",
        _P13 + "; 5 symbols × 10 positions as in the authors' code",
        "sequence",
        7,
        6,
        1 - 0.2**10,  # the blanks are guessable, the 10 recalled symbols are not
        0.01,
        1,
        _memorization,
    ),
    "latching": Task(
        "latching", "Bengio, Simard & Frasconi 1994, §III", "classification", 1, 2, 0.5, 0.01, 4, _latching
    ),
    "sequential_digits": Task(
        "sequential_digits",
        "scikit-learn's digits read pixel by pixel (cf. Le et al. 2015's pixel-by-pixel MNIST)",
        "classification",
        1,
        10,
        float("nan"),
        0.05,
        1,
        _sequential_digits,
    ),
    "permuted_digits": Task(
        "permuted_digits",
        "as sequential_digits, pixels in a fixed random order (Le et al. 2015's permuted MNIST)",
        "classification",
        1,
        10,
        float("nan"),
        0.05,
        1,
        lambda T, B, g: _sequential_digits(T, B, g, permuted=True),
    ),
    "mnist1d": Task(
        "mnist1d",
        "Greydanus 2020, 'Scaling down deep learning' (MNIST-1D), generated offline",
        "classification",
        1,
        10,
        float("nan"),
        0.05,
        1,
        _mnist1d,
    ),
    "digits_mlp": Task(
        "digits_mlp",
        "scikit-learn's digits (flat 64 pixels)",
        "classification",
        64,
        10,
        float("nan"),
        0.05,
        1,
        _digits_flat,
    ),
    "digits_heldout": Task(
        "digits_heldout",
        "scikit-learn's digits (flat 64 pixels): trained on the first 1,400 images, scored on the other 397",
        "classification",
        64,
        10,
        float("nan"),
        0.05,
        1,
        _digits_train_flat,
        _digits_held_out_flat,
    ),
}
# tasks whose inputs are flat vectors (one step), for model="mlp"
FLAT_TASKS = ("digits_heldout", "digits_mlp")


def get_task(name: str) -> Task:
    """Return the task registered under ``name`` (digits tasks get their chance level filled in).

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    _checks.choice(name, "task", "get_task", tuple(TASKS))
    task = TASKS[name]
    if math.isnan(task.chance_error):
        task = Task(**{**task.__dict__, "chance_error": _majority_error(name)})
    return task


def rare_events(n: int, length: int, *, seed: int = 0, n_distractors: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A long-lag task for history compression (cf. Schmidhuber 1992; Hochreiter & Schmidhuber 1997, exp. 2a).

    Symbols 0, 1, 2 cycle predictably from a random phase; the class event (symbol 3 or 4)
    replaces one of steps 1–3; ``n_distractors`` distractor events (symbol 5) replace random
    later steps. The class must be reported at the end, ``length`` steps later.

    Returns:
        (one-hot inputs (n, length, 6), labels (n,)).

    Raises:
        ConfigError: ``length`` < 12 or ``n`` < 1.
    """
    owner = "rare_events"
    T = _checks.positive_int(length, "length", owner, minimum=12)
    N = _checks.positive_int(n, "n", owner)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (N,), generator=g)
    seqs = torch.zeros(N, T, dtype=torch.long)
    for b in range(N):
        phase = int(torch.randint(0, 3, (1,), generator=g))
        s = [(phase + t) % 3 for t in range(T)]
        s[int(torch.randint(1, 4, (1,), generator=g))] = 3 + int(y[b])
        for _ in range(n_distractors):
            s[int(torch.randint(10, T - 1, (1,), generator=g))] = 5
        seqs[b] = torch.tensor(s)
    return nn.functional.one_hot(seqs, 6).float(), y
