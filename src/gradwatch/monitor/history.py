"""What the monitor recorded, as plain numpy arrays, and the JSON record format.

One *record* is one recorded optimizer step. The JSON form of a record (what the JSONL
sink writes, one per line, and what ``gradwatch show`` reads back) is::

    {"step": 12, "global_grad_norm": 0.83, "loss": 0.41,
     "layers": {"fc.0": {"grad_norm": ..., "grad_max": ..., "param_norm": ...,
                         "update_ratio": ..., "numel": ...}, ...},
     "roles": {"emb": "embedding", "fc.0": "linear", ...},  # the first record only
     "activations": {"act.0": {"kind": "saturation", "fraction": 0.74, "std": 0.31}},  # some steps
     "time_profile": {"input": [...], "hidden": [...]},                                  # some steps
     "lyapunov": {"rnn": [0.02, -0.11, -0.3]},   # λ_1..λ_k per recurrent module, nats/step; some steps
     "nonfinite": {"step": 12, "module": "fc.3", "tensor": "parameter gradient", ...},  # once
     "clip": {"pre": 5.1, "post": 1.0},      # steps where the user's clipping changed the gradient
     "clipped": true,                        # every step whose clipping was measured
     "lints": [{"step": 12, "kind": "clip_after_step", "message": "..."}],  # misuse lints
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
    from gradwatch.monitor.lints import Lint
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
    (without an optimizer: the change of θ until the next ``Monitor.step()`` call; NaN where
    not measured). ``numel`` is the number of monitored parameters.
    ``role`` is what the layer is (:data:`gradwatch.monitor.roles.ROLES`; "" when unknown,
    as in logs written before roles were recorded). ``row_fraction`` (embeddings only; NaN
    elsewhere and on steps not measured) is the fraction of the weight's rows whose gradient
    is non-zero: the tokens the batch used.
    """

    grad_norm: np.ndarray
    grad_max: np.ndarray
    param_norm: np.ndarray
    update_ratio: np.ndarray
    numel: int
    role: str = ""
    row_fraction: np.ndarray | None = None

    @property
    def grad_rms(self) -> np.ndarray:
        """Root-mean-square gradient entry, ‖g‖/√numel: comparable across layer sizes.

        For an embedding whose ``row_fraction`` was measured, the mean runs over the rows that
        received gradient (numel × the median measured fraction): the rows a batch never
        touches would otherwise dilute it by their number.
        """
        n = float(max(self.numel, 1))
        rf = self.row_fraction
        if rf is not None and np.isfinite(rf).any():
            frac = float(np.nanmedian(rf))
            n = max(n * frac, 1.0) if frac > 0 else n
        return self.grad_norm / math.sqrt(n)


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
        has_loss: whether a loss was passed at the step, shape (S,) (default: where ``loss``
            is not NaN): a NaN loss that was passed is non-finite, one never passed is unknown.
        layers: layer name → :class:`LayerHistory`, in depth order.
        activations: module name → :class:`ActivationHistory`.
        time_profiles: list of (step, ‖∂L/∂u_t‖ array (T,), ‖∂L/∂h_t‖ array or None).
        lyapunov: list of (step, {module name: λ_1..λ_k array (k,)}), nats per time step
            (``Monitor(lyapunov_every=...)``).
        nonfinite: the first non-finite value, or None.
        clip_pre, clip_post: global norm before and after the user's clipping, shape (S,);
            NaN on steps where no clipping was seen.
        skipped: whether a GradScaler skipped the step's optimizer update, shape (S,).
        loss_scale: the GradScaler's scale in force at the step (NaN without one), shape (S,).
        clip_checked: whether the step's clipping was measured at all, shape (S,) (default:
            where ``clip_pre`` is known).
        lints: the misuse lints issued (:class:`gradwatch.monitor.lints.Lint`), in order.
    """

    steps: np.ndarray
    global_grad_norm: np.ndarray
    loss: np.ndarray
    layers: dict[str, LayerHistory]
    activations: dict[str, ActivationHistory] = field(default_factory=dict)
    time_profiles: list[tuple[int, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    nonfinite: NonFinite | None = None
    lyapunov: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)
    clip_pre: np.ndarray | None = None
    clip_post: np.ndarray | None = None
    skipped: np.ndarray | None = None
    loss_scale: np.ndarray | None = None
    clip_checked: np.ndarray | None = None
    lints: list[Lint] = field(default_factory=list)
    has_loss: np.ndarray | None = None

    @property
    def roles(self) -> dict[str, str]:
        """Layer name → role ("" when unknown), in depth order."""
        return {name: lh.role for name, lh in self.layers.items()}

    def __post_init__(self) -> None:
        S = self.n_steps
        for name in ("clip_pre", "clip_post", "loss_scale"):
            if getattr(self, name) is None:
                setattr(self, name, np.full(S, np.nan))
        if self.skipped is None:
            self.skipped = np.zeros(S, dtype=bool)
        if self.has_loss is None:
            self.has_loss = ~np.isnan(np.asarray(self.loss, dtype=float))
        if self.clip_checked is None:
            self.clip_checked = ~np.isnan(np.asarray(self.clip_pre))

    @property
    def n_steps(self) -> int:
        """Number of recorded steps S."""
        return int(self.steps.shape[0])

    def clip_rate(self, window: int = 100) -> np.ndarray:
        """Fraction of the last ``window`` recorded steps that were clipped, among those measured, shape (S,).

        A step counts as clipped when its post-clip norm is below its pre-clip norm by more than
        a relative 1e-5 — for ``torch.nn.utils.clip_grad_norm_``, exactly when the total norm
        exceeded ``max_norm``. NaN where no step of the window had its clipping measured
        (clipping unknown is not "never clipped").
        """
        from gradwatch.monitor.store import CLIP_RTOL

        window = int(window)
        if window < 1:
            raise ConfigError(f"The 'window' parameter of History.clip_rate must be >= 1. Got {window} instead.")
        checked = np.asarray(self.clip_checked, dtype=bool)
        with np.errstate(invalid="ignore"):
            clipped = checked & (np.asarray(self.clip_post) < np.asarray(self.clip_pre) * (1 - CLIP_RTOL))
        idx = np.arange(1, self.n_steps + 1)
        lo = np.maximum(idx - window, 0)
        n_clipped = np.concatenate([[0], np.cumsum(clipped)])
        n_checked = np.concatenate([[0], np.cumsum(checked)])
        measured = n_checked[idx] - n_checked[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate: np.ndarray = np.where(measured > 0, (n_clipped[idx] - n_clipped[lo]) / measured, np.nan)
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
        row_fraction = store.layer_column("row_fraction")
        layers = {
            name: LayerHistory(
                grad_norm=cols["grad_norm"][i],
                grad_max=cols["grad_max"][i],
                param_norm=cols["param_norm"][i],
                update_ratio=cols["update_ratio"][i],
                numel=store.numels[i],
                role=store.roles.get(name, ""),
                row_fraction=row_fraction[i],
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
            lyapunov=[(int(steps[r]), dict(e)) for r, e in store.lyapunov],
            nonfinite=store.nonfinite,
            clip_pre=store.column("clip_pre"),
            clip_post=store.column("clip_post"),
            skipped=store.column("skipped"),
            loss_scale=store.column("loss_scale"),
            clip_checked=store.column("clip_checked"),
            lints=[lint for _, lint in store.lints],
            has_loss=store.column("has_loss"),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> History:
        """Rebuild a History from JSON records (as written by the JSONL sink)."""
        from gradwatch.monitor.store import Store

        return cls.from_store(Store.from_records(list(records)))


def read_jsonl(path: str | Path) -> History:
    """Read a JSONL log written by :class:`gradwatch.sinks.JSONL` into a :class:`History`.

    Every record is checked before any is used (:func:`check_record`): a field of the
    wrong type, a negative norm or count, or a number too large for a float is named with
    its line, so a bad log is refused instead of read as a (healthy) run.

    Raises:
        ConfigError: the path is missing, a folder or not a regular file (a device such as
            /dev/zero), the file is not UTF-8 text or holds no records, or a line is not a
            valid gradwatch record.
    """
    from gradwatch import _checks

    p = _checks.readable_file(path, "log")
    records = []
    try:
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                rec = parse_line(line, p, lineno)
                if rec is not None:
                    records.append(rec)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Cannot read the log {str(p)!r}: it is not UTF-8 text (byte {exc.start} of a line)."
        ) from None
    if not records:
        raise ConfigError(f"The log {str(p)!r} holds no records.")
    try:
        return History.from_records(records)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # what check_record does not cover
        raise ConfigError(f"The log {str(p)!r} is not a valid gradwatch log ({type(exc).__name__}: {exc}).") from None


def parse_line(line: str, path: str | Path, lineno: int) -> dict[str, Any] | None:
    """Parse and check one line of a JSONL log: the record, or None for a blank line.

    The one check of :func:`read_jsonl`, shared with readers that follow a growing log
    (``gradwatch watch``).

    Raises:
        ConfigError: the line is not JSON, not a gradwatch record, or fails
            :func:`check_record`; the message names ``path:lineno``.
    """
    if not line.strip():
        return None
    try:
        rec = json.loads(line, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{lineno} is not valid JSON ({exc.msg}).") from None
    except OverflowError as exc:
        raise ConfigError(f"{path}:{lineno} holds {exc}.") from None
    if not isinstance(rec, dict) or "step" not in rec or "layers" not in rec:
        raise ConfigError(f"{path}:{lineno} is not a gradwatch record (needs 'step' and 'layers').")
    problem = check_record(rec)
    if problem is not None:
        raise ConfigError(f"{path}:{lineno}: {problem}.")
    return rec


_MAX_INT = 2**63 - 1  # steps and counts are stored as int64
_NONFINITE = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # "1e999" in a log is no measurement: refuse it instead of reading inf
        raise OverflowError(f'the number {text}, too large for a float (a number must fit one; "inf" is written so)')
    return value


def _number(value: Any, *, low: float = -math.inf, high: float = math.inf) -> bool:
    """A JSON number (or "nan"/"inf"/"-inf") that is NaN or within [low, high]."""
    if isinstance(value, str) and value.lower() in _NONFINITE:
        value = float(value)
    huge_int = isinstance(value, int) and abs(value) > 1e300  # a JSON integer no float can hold
    if isinstance(value, bool) or not isinstance(value, (int, float)) or huge_int:
        return False
    return math.isnan(value) or low <= value <= high


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT


_NORM = 'a number >= 0 (or "nan", "inf")'


def check_record(rec: Mapping[str, Any]) -> str | None:
    """What is wrong with one JSON record of the monitor's log, or None when it is valid.

    Checks the fields documented at the top of this module: ``step`` and ``numel`` are
    integers in [0, 2**63 − 1]; norms, maxima, ratios, clip norms and time profiles are
    numbers >= 0 (or "nan"/"inf", measured non-finite values) or null; fractions lie in
    [0, 1]; the loss is any number; flags are true/false; tables are objects. Unknown keys
    are allowed (newer writers may add some).
    """

    def bad(what: str, valid: str, value: Any) -> str:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
        return f"{what} must be {valid}. Got {shown} instead"

    if not _count(rec["step"]):
        return bad("'step'", f"an integer in [0, {_MAX_INT}]", rec["step"])
    layers = rec["layers"]
    if not isinstance(layers, dict):
        return bad("'layers'", "an object {layer name: {statistic: value}}", layers)
    for name, stats in layers.items():
        if not isinstance(stats, dict):
            return bad(f"layer {name!r}", "an object {statistic: value}", stats)
        for key in ("grad_norm", "grad_max", "param_norm", "update_ratio"):
            if stats.get(key) is not None and not _number(stats[key], low=0):
                return bad(f"the {key!r} of layer {name!r}", _NORM, stats[key])
        if stats.get("row_fraction") is not None and not _number(stats["row_fraction"], low=0, high=1):
            return bad(f"the 'row_fraction' of layer {name!r}", "a number in [0, 1]", stats["row_fraction"])
        if stats.get("numel") is not None and not _count(stats["numel"]):
            return bad(f"the 'numel' of layer {name!r}", f"an integer in [0, {_MAX_INT}]", stats["numel"])
    for key, low in (("global_grad_norm", 0.0), ("loss", -math.inf), ("loss_scale", 0.0)):
        if rec.get(key) is not None and not _number(rec[key], low=low):
            return bad(f"{key!r}", _NORM if low == 0 else "a number", rec[key])
    for key in ("clipped", "skipped"):
        if key in rec and not isinstance(rec[key], bool):
            return bad(f"{key!r}", "true or false", rec[key])
    clip = rec.get("clip")
    if clip is not None:
        if not isinstance(clip, dict):
            return bad("'clip'", "an object {pre, post}", clip)
        for key in ("pre", "post"):
            if clip.get(key) is not None and not _number(clip[key], low=0):
                return bad(f"the clip {key!r} norm", _NORM, clip[key])
    for key in ("activations", "time_profile", "nonfinite", "roles", "lyapunov"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return bad(f"{key!r}", "an object", rec[key])
    for name, act in (rec.get("activations") or {}).items():
        if not isinstance(act, dict) or not isinstance(act.get("kind", ""), str):
            return bad(f"activation {name!r}", "an object {kind, fraction, std}", act)
        if act.get("fraction") is not None and not _number(act["fraction"], low=0, high=1):
            return bad(f"the 'fraction' of activation {name!r}", "a number in [0, 1]", act["fraction"])
        if act.get("std") is not None and not _number(act["std"], low=0):
            return bad(f"the 'std' of activation {name!r}", _NORM, act["std"])
    profile = rec.get("time_profile") or {}
    for key in ("input", "hidden"):
        values = profile.get(key)
        if (key == "input" and profile and values is None) or (
            values is not None and (not isinstance(values, list) or not all(_number(v, low=0) for v in values))
        ):
            return bad(f"the time profile's {key!r}", "a list of numbers >= 0", values)
    for name, values in (rec.get("lyapunov") or {}).items():
        if not isinstance(values, list) or not all(_number(v) for v in values):
            return bad(f"the Lyapunov exponents of {name!r}", "a list of numbers", values)
    nf = rec.get("nonfinite")
    if nf is not None and (not _count(nf.get("step")) or not _count(nf.get("traced_step", 0) or 0)):
        return bad("the 'nonfinite' step", f"an integer in [0, {_MAX_INT}]", nf.get("step"))
    lints = rec.get("lints")
    if lints is not None and (
        not isinstance(lints, list) or not all(isinstance(x, dict) and _count(x.get("step")) for x in lints)
    ):
        return bad("'lints'", "a list of objects with an integer 'step'", lints)
    return None
