"""What one experiment is: a frozen, validated, JSON-serializable ``Spec``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradwatch import _checks, _limits
from gradwatch.errors import ConfigError
from gradwatch.models import ACTIVATIONS
from gradwatch.remedies import registry
from gradwatch.remedies.init import INITS
from gradwatch.tasks import FLAT_TASKS, TASKS, get_task

__all__ = ["DEVICE_TYPES", "MODELS", "OPTIMIZERS", "Spec", "check_size"]

MODELS = ("gru", "lstm", "mlp", "rnn")
OPTIMIZERS = ("adam", "rprop", "sgd", "sign_sgd")


@dataclass(frozen=True)
class Spec:
    """One training run: task, model, remedies, optimizer, budget, seed, device.

    Attributes:
        task, length: a name from ``gradwatch.tasks.TASKS`` and its sequence length T.
        jitter: the authors' ±10 % length variation of the adding/multiplication tasks.
        model: "rnn" (hand-written, any activation), "lstm", "gru" or "mlp" (the flat tasks, FLAT_TASKS).
        activation, hidden, layers, norm, residual, init: the model's knobs (see gradwatch.models).
        remedies: ``{name: {param: value}}`` applied every step; names from
            ``gradwatch.remedies.registry.STEP_REMEDIES`` (architecture, init and optimizer
            remedies are the fields above: ``registry.spec_fields`` maps names to them).
        optimizer, lr, momentum: "sgd", "adam", "rprop" or "sign_sgd".
        steps, batch_size: training budget.
        eval_every, eval_batch: evaluate the task's error on a fixed held-out batch.
        seed: seeds the model, the data and the evaluation batch, in [0, 2**32 − 1].
        device: "cpu", "cuda", "cuda:1", "mps" (whether this machine has it is checked by ``run``).
    """

    task: str = "adding"
    length: int = 50
    jitter: bool = True
    model: str = "rnn"
    activation: str = "tanh"
    hidden: int = 32
    layers: int = 1
    norm: str | None = None
    residual: bool = False
    init: str | None = None
    remedies: dict[str, dict[str, float]] = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    steps: int = 500
    batch_size: int = 32
    eval_every: int = 50
    eval_batch: int = 512
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        owner = "Spec"
        _checks.choice(self.task, "task", owner, tuple(TASKS))
        task = get_task(self.task)
        _checks.positive_int(self.length, "length", owner, minimum=task.min_length)
        _checks.choice(self.model, "model", owner, MODELS)
        if task.kind == "sequence":
            raise ConfigError(
                f"The runner predicts from the last step; task {self.task!r} needs an output at every step."
            )
        if (self.model == "mlp") != (self.task in FLAT_TASKS):
            raise ConfigError(
                f"model='mlp' goes with task='digits_mlp' or another flat task {FLAT_TASKS} (and only there); "
                "sequence tasks need rnn, lstm or gru."
            )
        _checks.boolean(self.jitter, "jitter", owner)
        _checks.boolean(self.residual, "residual", owner)
        _checks.choice(self.activation, "activation", owner, tuple(ACTIVATIONS))
        for name in ("hidden", "layers", "steps", "batch_size", "eval_every", "eval_batch"):
            _checks.positive_int(getattr(self, name), name, owner)
        if self.norm is not None:
            _checks.choice(self.norm, "norm", owner, ("batch", "layer"))
        if self.init is not None:
            _checks.choice(self.init, "init", owner, (*INITS, "default"))
        if not isinstance(self.remedies, Mapping) or not all(isinstance(k, str) for k in self.remedies):
            raise _checks.out_of_range(
                "remedies",
                owner,
                "a table {name: {parameter: number}}, e.g. {clip_grad_norm = {max_norm = 1.0}}",
                self.remedies,
            )
        registry.validate(self.remedies, owner, model=self.model)
        _checks.choice(self.optimizer, "optimizer", owner, OPTIMIZERS)
        _checks.interval(self.lr, "lr", owner, 0, low_open=True)
        _checks.interval(self.momentum, "momentum", owner, 0, 1, high_open=True)
        _checks.seed(self.seed, "seed", owner)
        _check_device_name(self.device, owner)

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON object (what ``spec.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "spec") -> Spec:
        """Build a spec from a JSON/TOML mapping; an unknown key is an error naming it and ``where``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"The {where} must be a table of Spec fields. Got {data!r} instead.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(data) - names))
        if unknown:
            raise ConfigError(f"Unknown key(s) {unknown} in {where}; valid keys: {sorted(names)}.")
        return cls(**data)

    @property
    def run_id(self) -> str:
        """A stable identifier: readable prefix + hash of every field (same spec, same id)."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()[:10]
        return f"{self.task}-T{self.length}-{self.model}-{self.activation}-s{self.seed}-{digest}"

    def remedy_params(self, name: str) -> dict[str, float]:
        """The parameters of a remedy in this spec, defaults filled in."""
        return registry.with_defaults(name, self.remedies.get(name))


DEVICE_TYPES = ("cpu", "cuda", "mps")


def _check_device_name(device: object, owner: str) -> None:
    """A device string torch parses, of a type the runner supports; availability is checked by run()."""
    import torch

    valid = "a device such as 'cpu', 'cuda', 'cuda:1' or 'mps'"
    if not isinstance(device, str):
        raise _checks.out_of_range("device", owner, valid, device)
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise _checks.out_of_range("device", owner, valid, device) from None
    if parsed.type not in DEVICE_TYPES:
        raise _checks.out_of_range("device", owner, valid, device)


_GATES = {"rnn": 1, "gru": 3, "lstm": 4, "mlp": 1}


@_limits.estimator(
    "Spec",
    {"steps": 1, "length": 1, "hidden": 1, "layers": 1, "batch_size": 1, "eval_batch": 1},
    memory="4 bytes × (8 × parameters + (3 × batch_size + eval_batch) × length × layers × hidden × (gates + 3) "
    "+ 2 × (batch_size + eval_batch) × length × inputs) + 8 bytes × steps × (5 × layers + 10); "
    "parameters ≈ layers × gates × hidden × (hidden + inputs + 2), gates 1 (rnn, mlp), 3 (gru), 4 (lstm)",
    time="2 s + steps × (5 ms + 1 ms × length × layers + 6 × batch_size × length × layers × gates × hidden × "
    "(hidden + inputs) flops at 10 GFLOP/s), plus each evaluation's forward pass over eval_batch",
)
def _estimate(
    *,
    steps: int,
    length: int,
    hidden: int,
    layers: int,
    batch_size: int,
    eval_batch: int,
    model: str = "rnn",
    n_inputs: int = 1,
    n_outputs: int = 1,
    eval_every: int = 50,
) -> _limits.Estimate:
    """Peak memory (bytes) and wall time (seconds) of ``run`` for these sizes; see the decorator's formulas."""
    S, T, H, L, B, E = (float(v) for v in (steps, length, hidden, layers, batch_size, eval_batch))
    G = _GATES.get(model, 4)
    params = L * G * H * (H + max(n_inputs, 1) + 2) + H * n_outputs
    per_unit = T * L * H * (G + 3)
    memory = 4 * (8 * params + 3 * B * per_unit + E * per_unit + 2 * (B + E) * T * n_inputs) + 8 * S * (5 * L + 10)
    n_evals = S / eval_every + 1
    flops = L * G * H * (H + n_inputs)
    seconds = 2 + S * (5e-3 + 1e-3 * T * L + 6e-10 * B * T * flops) + n_evals * (3e-4 * T * L + 2e-10 * E * T * flops)
    return _limits.Estimate(memory, seconds)


def check_size(spec: Spec, *, limits: bool = True) -> _limits.Estimate:
    """Estimate the memory and time ``run(spec)`` needs; refuse a spec over the limits (see gradwatch._limits).

    Raises:
        ConfigError: over the memory or time limit, naming the field to lower and the largest value that fits.
    """
    task = get_task(spec.task)
    return _limits.enforce(
        "Spec",
        {k: getattr(spec, k) for k in ("steps", "length", "hidden", "layers", "batch_size", "eval_batch")},
        context={
            "model": spec.model,
            "n_inputs": task.n_inputs,
            "n_outputs": task.n_outputs,
            "eval_every": spec.eval_every,
        },
        limits=limits,
    )
