"""What one experiment is: a frozen, validated, JSON-serializable ``Spec``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradwatch import _checks
from gradwatch.errors import ConfigError
from gradwatch.models import ACTIVATIONS
from gradwatch.remedies import registry
from gradwatch.remedies.init import INITS
from gradwatch.tasks import FLAT_TASKS, TASKS, get_task

__all__ = ["MODELS", "OPTIMIZERS", "Spec"]

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
        seed: seeds the model, the data and the evaluation batch.
        device: "cpu", "cuda", ...
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
        _checks.choice(self.activation, "activation", owner, tuple(ACTIVATIONS))
        for name in ("hidden", "layers", "steps", "batch_size", "eval_every", "eval_batch"):
            _checks.positive_int(getattr(self, name), name, owner)
        if self.norm is not None:
            _checks.choice(self.norm, "norm", owner, ("batch", "layer"))
        if self.init is not None:
            _checks.choice(self.init, "init", owner, (*INITS, "default"))
        registry.validate(self.remedies, owner, model=self.model)
        _checks.choice(self.optimizer, "optimizer", owner, OPTIMIZERS)
        _checks.interval(self.lr, "lr", owner, 0, low_open=True)
        _checks.interval(self.momentum, "momentum", owner, 0, 1, high_open=True)

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON object (what ``spec.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "spec") -> Spec:
        """Build a spec from a JSON/TOML mapping; an unknown key is an error naming it and ``where``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
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
