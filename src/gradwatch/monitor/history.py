"""What the monitor recorded, as plain numpy arrays, and the JSON record format.

One *record* is one recorded optimizer step. The JSON form of a record (what the JSONL
sink writes, one per line, and what ``gradwatch show`` reads back) is::

    {"step": 12, "global_grad_norm": 0.83, "loss": 0.41,
     "layers": {"fc.0": {"grad_norm": ..., "grad_max": ..., "param_norm": ...,
                         "update_ratio": ..., "numel": ...}, ...},
     "activations": {"act.0": {"kind": "saturation", "fraction": 0.74, "std": 0.31}},  # some steps
     "time_profile": {"input": [...], "hidden": [...]},                                  # some steps
     "nonfinite": {"step": 12, "module": "fc.3", "tensor": "parameter gradient", ...},  # once
     "clip": {"pre": 5.1, "post": 1.0},      # steps where the user's clipping changed the gradient
     "loss_scale": 65536.0,                  # with Monitor(scaler=...)
     "skipped": true, "skip_reason": "..."   # steps a GradScaler skipped
    }

Non-finite numbers are written as the strings "nan", "inf" and "-inf" so every line stays
valid JSON; :func:`from_json_number` reads them back. Layers appear in depth order (the
order in which the model first ran them), which the verdict relies on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwatch._output import from_json_number, to_json_number
from gradwatch.errors import ConfigError
from gradwatch.monitor.nonfinite import NonFinite

if TYPE_CHECKING:
    from gradwatch.monitor.store import Store

__all__ = [
    "ActivationHistory",
    "History",
    "LayerHistory",
    "NonFinite",
    "from_json_number",
    "read_jsonl",
    "to_json_number",
]

LAYER_FIELDS = ("grad_norm", "grad_max", "param_norm", "update_ratio")


@dataclass
class LayerHistory:
    """Per-step statistics of one layer (a module that owns parameters), arrays of shape (S,).

    ``update_ratio`` is ‖Δθ‖/‖θ‖ of the optimizer step that consumed the recorded gradient
    (NaN when no optimizer was given). ``numel`` is the number of monitored parameters.
    """

    grad_norm: np.ndarray
    grad_max: np.ndarray
    param_norm: np.ndarray
    update_ratio: np.ndarray
    numel: int

    @property
    def grad_rms(self) -> np.ndarray:
        """Root-mean-square gradient entry, ‖g‖/√numel: comparable across layer sizes."""
        return self.grad_norm / math.sqrt(max(self.numel, 1))


@dataclass
class ActivationHistory:
    """Activation statistics of one activation module on the steps they were taken.

    Attributes:
        kind: "saturation" (sigmoid/tanh family: fraction of units whose derivative is
            below 1 % of its maximum) or "dead" (ReLU family: fraction of units that are
            ≤ 0 for every sample of the batch) or "none" (only the std is meaningful).
        steps: the steps measured, shape (A,).
        fraction: the saturated or dead fraction, shape (A,).
        std: standard deviation of the output, shape (A,).
    """

    kind: str
    steps: np.ndarray
    fraction: np.ndarray
    std: np.ndarray


@dataclass
class History:
    """Everything recorded, in host memory.

    Attributes:
        steps: recorded steps, shape (S,).
        global_grad_norm: ‖g‖ over all monitored parameters, shape (S,).
        loss: the loss passed to ``step`` (NaN when none), shape (S,).
        layers: layer name → :class:`LayerHistory`, in depth order.
        activations: module name → :class:`ActivationHistory`.
        time_profiles: list of (step, ‖∂L/∂u_t‖ array (T,), ‖∂L/∂h_t‖ array or None).
        nonfinite: the first non-finite value, or None.
        clip_pre, clip_post: global norm before and after the user's clipping, shape (S,);
            NaN on steps where no clipping was seen.
        skipped: whether a GradScaler skipped the step's optimizer update, shape (S,).
        loss_scale: the GradScaler's scale in force at the step (NaN without one), shape (S,).
    """

    steps: np.ndarray
    global_grad_norm: np.ndarray
    loss: np.ndarray
    layers: dict[str, LayerHistory]
    activations: dict[str, ActivationHistory] = field(default_factory=dict)
    time_profiles: list[tuple[int, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    nonfinite: NonFinite | None = None
    clip_pre: np.ndarray | None = None
    clip_post: np.ndarray | None = None
    skipped: np.ndarray | None = None
    loss_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        S = self.n_steps
        for name in ("clip_pre", "clip_post", "loss_scale"):
            if getattr(self, name) is None:
                setattr(self, name, np.full(S, np.nan))
        if self.skipped is None:
            self.skipped = np.zeros(S, dtype=bool)

    @property
    def n_steps(self) -> int:
        """Number of recorded steps S."""
        return int(self.steps.shape[0])

    def clip_rate(self, window: int = 100) -> np.ndarray:
        """Fraction of the last ``window`` recorded steps whose gradient was clipped, shape (S,).

        A step counts as clipped when its post-clip norm is below its pre-clip norm.
        """
        window = int(window)
        if window < 1:
            raise ConfigError(f"The 'window' parameter of History.clip_rate must be >= 1. Got {window} instead.")
        with np.errstate(invalid="ignore"):
            clipped = (np.asarray(self.clip_post) < np.asarray(self.clip_pre)).astype(float)
        csum = np.concatenate([[0.0], np.cumsum(clipped)])
        idx = np.arange(1, self.n_steps + 1)
        lo = np.maximum(idx - window, 0)
        rate: np.ndarray = (csum[idx] - csum[lo]) / (idx - lo)
        return rate

    def layer_matrix(self, quantity: str = "grad_norm") -> np.ndarray:
        """Stack one quantity of every layer: shape (n_layers, S), rows in depth order."""
        if quantity not in (*LAYER_FIELDS, "grad_rms"):
            raise ConfigError(
                f"The 'quantity' parameter of History.layer_matrix must be one of "
                f"{', '.join(repr(q) for q in (*LAYER_FIELDS, 'grad_rms'))}. Got {quantity!r} instead."
            )
        if not self.layers:
            return np.zeros((0, self.n_steps))
        return np.stack([getattr(lh, quantity) for lh in self.layers.values()])

    @classmethod
    def from_store(cls, store: Store) -> History:
        """A view of a :class:`~gradwatch.monitor.store.Store`: read-only arrays, no copy, no loop over steps."""
        if store.n == 0:
            return cls(steps=np.zeros(0, dtype=np.int64), global_grad_norm=np.zeros(0), loss=np.zeros(0), layers={})
        steps = store.steps
        cols = {f: store.layer_column(f) for f in LAYER_FIELDS}
        layers = {
            name: LayerHistory(
                grad_norm=cols["grad_norm"][i],
                grad_max=cols["grad_max"][i],
                param_norm=cols["param_norm"][i],
                update_ratio=cols["update_ratio"][i],
                numel=store.numels[i],
            )
            for i, name in enumerate(store.layer_names)
        }
        activations = {
            name: ActivationHistory(a.kind, steps[a.rows], np.array(a.fraction), np.array(a.std))
            for name, a in store.activations.items()
        }
        return cls(
            steps=steps,
            global_grad_norm=store.column("global_grad_norm"),
            loss=store.column("loss"),
            layers=layers,
            activations=activations,
            time_profiles=[(int(steps[r]), inputs, hidden) for r, inputs, hidden in store.time_profiles],
            nonfinite=store.nonfinite,
            clip_pre=store.column("clip_pre"),
            clip_post=store.column("clip_post"),
            skipped=store.column("skipped"),
            loss_scale=store.column("loss_scale"),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> History:
        """Rebuild a History from JSON records (as written by the JSONL sink)."""
        from gradwatch.monitor.store import Store

        return cls.from_store(Store.from_records(list(records)))


def read_jsonl(path: str | Path) -> History:
    """Read a JSONL log written by :class:`gradwatch.sinks.JSONL` into a :class:`History`.

    Raises:
        ConfigError: the file is missing, empty, or a line is not a gradwatch record.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Cannot read the log {str(p)!r}: no such file.")
    records = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{p}:{lineno} is not valid JSON ({exc.msg}).") from None
            if not isinstance(rec, dict) or "step" not in rec or "layers" not in rec:
                raise ConfigError(f"{p}:{lineno} is not a gradwatch record (needs 'step' and 'layers').")
            records.append(rec)
    if not records:
        raise ConfigError(f"The log {str(p)!r} holds no records.")
    return History.from_records(records)
