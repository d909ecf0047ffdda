"""The monitor's columnar store: one growing numpy array per field (and per layer).

A *row* is one recorded step. Collectors write whole columns at sync time (a few numpy
assignments per sync, never a Python loop over rows); :class:`~gradwatch.monitor.history.History`
reads them as read-only views; only :meth:`Store.records` (for the sinks, ``mon.records()``
and ``mon.last_record()``) turns rows into JSON records, in the format documented in
:mod:`gradwatch.monitor.history`. NaN stays NaN here: whether a value was measured at all is
a separate boolean column (``has_*``), because the JSON record tells "not measured" (null)
from "measured NaN" ("nan").

Layers are kept in depth order (the order in which the model first ran them), fixed when
the store is created.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gradwatch._output import from_json_number, to_json_number
from gradwatch.monitor.history import LAYER_FIELDS
from gradwatch.monitor.nonfinite import NonFinite

if TYPE_CHECKING:
    from gradwatch.monitor.lints import Lint

__all__ = ["LAYER_FIELDS", "SKIP_REASON", "Store"]

SKIP_REASON = "GradScaler found inf/NaN in the gradients; the optimizer step was skipped"

FloatArray = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64] | npt.NDArray[np.bool_] | Sequence[int] | slice
# step-level float columns, and the boolean columns that say a value was measured
_FLOATS = ("global_grad_norm", "loss", "loss_scale", "clip_pre", "clip_post")
_FLAGS = (
    "has_loss",
    "has_loss_scale",
    "has_clip",
    "has_grad_max",
    "has_param_norm",
    "has_update_ratio",
    "skipped",
    "clip_checked",
)
CLIP_RTOL = 1e-5  # a step counts as clipped when its post-clip norm is below pre · (1 − CLIP_RTOL)


class _Activation:
    """The rows at which one activation module was measured, and its two statistics."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows: list[int] = []
        self.fraction: list[float] = []
        self.std: list[float] = []


class Store:
    """Per-step statistics as growing arrays.

    Args:
        layers: layer names in depth order.
        numels: monitored parameter count of each layer (same order).
    """

    def __init__(self, layers: Sequence[str], numels: Sequence[int]) -> None:
        self.layer_names = list(layers)
        self.numels = [int(n) for n in numels]
        self.n = 0
        self.version = 0  # bumped by every write: History views are cached per version
        self._cap = 64
        L = len(self.layer_names)
        self._steps = np.zeros(self._cap, dtype=np.int64)
        self._floats = {f: np.full(self._cap, np.nan) for f in _FLOATS}
        self._flags = {f: np.zeros(self._cap, dtype=bool) for f in _FLAGS}
        self._layers = {f: np.full((L, self._cap), np.nan) for f in (*LAYER_FIELDS, "row_fraction")}
        self.roles: dict[str, str] = {}  # layer name -> role (gradwatch.monitor.roles), written in row 0's record
        self.activations: dict[str, _Activation] = {}
        self.time_profiles: list[tuple[int, FloatArray, FloatArray | None]] = []  # (row, input, hidden)
        self.lyapunov: list[tuple[int, dict[str, FloatArray]]] = []  # (row, module -> λ_1..λ_k)
        self.nonfinite: NonFinite | None = None
        self.lints: list[tuple[int, Lint]] = []  # (row whose record carries it, lint)

    # ------------------------------------------------------------------ writing
    def add_row(self, step: int) -> int:
        """Append a row for ``step`` (steps increase), every value unmeasured; return its index."""
        if self.n == self._cap:
            self._grow()
        self._steps[self.n] = step
        self.n += 1
        self.version += 1
        return self.n - 1

    def _grow(self) -> None:
        cap = 2 * self._cap

        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((*a.shape[:-1], cap), fill, dtype=a.dtype)
            out[..., : self._cap] = a
            return out

        self._steps = grown(self._steps, 0)
        self._floats = {k: grown(v, np.nan) for k, v in self._floats.items()}
        self._flags = {k: grown(v, False) for k, v in self._flags.items()}
        self._layers = {k: grown(v, np.nan) for k, v in self._layers.items()}
        self._cap = cap

    def rows_of(self, steps: Iterable[int]) -> npt.NDArray[np.int64]:
        """Row indices of recorded steps (every step must have a row)."""
        return np.searchsorted(self._steps[: self.n], np.fromiter(steps, dtype=np.int64)).astype(np.int64)

    def set(self, field: str, rows: Rows, values: npt.ArrayLike) -> None:
        """Write a step-level column at ``rows``; marks the values measured (``has_<field>``)."""
        if field in ("skipped", "clip_checked"):
            self._flags[field][rows] = values
        else:
            self._floats[field][rows] = values
        flag = "has_clip" if field in ("clip_pre", "clip_post") else f"has_{field}"
        if flag in self._flags:
            self._flags[flag][rows] = True
        self.version += 1

    def set_layers(self, field: str, rows: Rows, values: npt.ArrayLike) -> None:
        """Write a per-layer column: ``values`` of shape (len(rows), n_layers), layers in depth order."""
        self._layers[field][:, rows] = np.asarray(values).T
        if f"has_{field}" in self._flags:
            self._flags[f"has_{field}"][rows] = True
        self.version += 1

    def add_activation(self, name: str, kind: str, row: int, fraction: float, std: float) -> None:
        """Append one measurement of an activation module."""
        a = self.activations.setdefault(name, _Activation(kind))
        a.rows.append(row)
        a.fraction.append(fraction)
        a.std.append(std)
        self.version += 1

    def add_time_profile(self, row: int, inputs: FloatArray, hidden: FloatArray | None) -> None:
        """Append the time profile measured at ``row``."""
        self.time_profiles.append((row, inputs, hidden))
        self.version += 1

    def add_lyapunov(self, row: int, exponents: dict[str, FloatArray]) -> None:
        """Append the Lyapunov exponents (module name → λ_1..λ_k, nats/step) measured at ``row``."""
        self.lyapunov.append((row, exponents))
        self.version += 1

    def set_nonfinite(self, nf: NonFinite, *, refine: bool = False) -> None:
        """Note the first non-finite value (kept only the first time, unless ``refine``: a better location)."""
        if self.nonfinite is None or refine:
            self.nonfinite = nf
            self.version += 1

    def add_lint(self, lint: Lint) -> None:
        """Note a misuse lint; the newest row's record carries it."""
        self.lints.append((max(self.n - 1, 0), lint))
        self.version += 1

    def clipped(self) -> npt.NDArray[np.bool_]:
        """Whether each step's gradient was clipped: post-clip norm below pre · (1 − CLIP_RTOL), shape (n,)."""
        pre, post = self._floats["clip_pre"][: self.n], self._floats["clip_post"][: self.n]
        with np.errstate(invalid="ignore"):
            out: npt.NDArray[np.bool_] = self._flags["has_clip"][: self.n] & (post < pre * (1 - CLIP_RTOL))
        return out

    # ------------------------------------------------------------------ reading
    @property
    def steps(self) -> npt.NDArray[np.int64]:
        """Recorded steps, shape (n,)."""
        return _frozen(self._steps[: self.n])

    def column(self, field: str) -> np.ndarray:
        """A step-level column (float, or bool for ``skipped``/``has_*``), shape (n,), read-only."""
        src = self._flags if field in self._flags else self._floats
        return _frozen(src[field][: self.n])

    def layer_column(self, field: str) -> FloatArray:
        """A per-layer column, shape (n_layers, n), read-only."""
        return _frozen(self._layers[field][:, : self.n])

    # ------------------------------------------------------------------ JSON
    def records(self, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        """Rows ``start:end`` as JSON records (non-finite numbers as "nan"/"inf" strings)."""
        end = self.n if end is None else end
        if end <= start:
            return []
        rows = slice(start, end)
        layer_vals = {f: _json_rows(self._layers[f][:, rows].T) for f in LAYER_FIELDS}
        ggn = _json_list(self._floats["global_grad_norm"][rows])
        loss = _json_list(self._floats["loss"][rows])
        flags = {k: v[rows].tolist() for k, v in self._flags.items()}
        scale = _json_list(self._floats["loss_scale"][rows])
        pre, post = _json_list(self._floats["clip_pre"][rows]), _json_list(self._floats["clip_post"][rows])
        first = bisect.bisect_left(self.time_profiles, start, key=lambda p: p[0])
        profiles = {r: (i, h) for r, i, h in self.time_profiles[first:] if r < end}
        lyap = {r: e for r, e in self.lyapunov if start <= r < end}
        acts: dict[int, dict[str, Any]] = {}
        for name, a in self.activations.items():
            for j in range(bisect.bisect_left(a.rows, start), bisect.bisect_left(a.rows, end)):
                acts.setdefault(a.rows[j], {})[name] = {
                    "kind": a.kind,
                    "fraction": to_json_number(a.fraction[j]),
                    "std": to_json_number(a.std[j]),
                }
        nf = self.nonfinite
        clipped = self.clipped()[rows].tolist()
        lints: dict[int, list[dict[str, Any]]] = {}
        for r, lint in self.lints:
            if start <= r < end:
                lints.setdefault(r, []).append(lint.to_json())
        no_max = [None] * len(self.layer_names)
        row_frac = self._layers["row_fraction"][:, rows]  # embeddings only: a key where measured
        sparse_layers = np.flatnonzero(np.isfinite(row_frac).any(axis=1)).tolist()
        out = []
        for k, step in enumerate(self._steps[rows].tolist()):
            r = start + k
            pn = layer_vals["param_norm"][k] if flags["has_param_norm"][k] else no_max
            ur = layer_vals["update_ratio"][k] if flags["has_update_ratio"][k] else no_max
            gm = layer_vals["grad_max"][k] if flags["has_grad_max"][k] else no_max
            layers = {
                n: {"grad_norm": g, "grad_max": m, "param_norm": p, "update_ratio": u, "numel": c}
                for n, g, m, p, u, c in zip(
                    self.layer_names, layer_vals["grad_norm"][k], gm, pn, ur, self.numels, strict=True
                )
            }
            for i in sparse_layers:
                if np.isfinite(row_frac[i, k]):
                    layers[self.layer_names[i]]["row_fraction"] = float(row_frac[i, k])
            rec: dict[str, Any] = {
                "step": step,
                "global_grad_norm": ggn[k],
                "loss": loss[k] if flags["has_loss"][k] else None,
                "layers": layers,
            }
            if r == 0 and self.roles:
                rec["roles"] = dict(self.roles)
            if flags["has_loss_scale"][k]:
                rec["loss_scale"] = scale[k]
            if r in profiles:
                inputs, hidden = profiles[r]
                rec["time_profile"] = {
                    "input": _json_list(inputs),
                    "hidden": None if hidden is None else _json_list(hidden),
                }
            if r in lyap:
                rec["lyapunov"] = {name: _json_list(np.asarray(v)) for name, v in lyap[r].items()}
            if r in acts:
                rec["activations"] = acts[r]
            if flags["has_clip"][k]:
                rec["clip"] = {"pre": pre[k], "post": post[k]}
            if flags["clip_checked"][k]:
                rec["clipped"] = clipped[k]
            if flags["skipped"][k]:
                rec["skipped"] = True
                rec["skip_reason"] = SKIP_REASON
            if nf is not None and step in (nf.step, nf.traced_step):
                rec["nonfinite"] = nf.to_json()
            if r in lints:
                rec["lints"] = lints[r]
            out.append(rec)
        return out

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Store:
        """Rebuild a store from JSON records (as the JSONL sink writes them)."""
        from gradwatch.monitor.lints import Lint

        names: dict[str, int] = {}
        for r in records:
            for name, stats in r.get("layers", {}).items():
                names.setdefault(name, int(stats.get("numel", 0) or 0))
        store = cls(list(names), list(names.values()))
        store.roles = dict(next((r["roles"] for r in records if r.get("roles")), {}))
        index = {n: i for i, n in enumerate(names)}
        S, L = len(records), len(names)
        for r in records:
            store.add_row(int(r["step"]))
        rows = np.arange(S)
        for f in ("global_grad_norm", "loss", "loss_scale"):
            present = [i for i, r in enumerate(records) if r.get(f) is not None]
            store.set(f, present, [from_json_number(records[i][f]) for i in present])
        clipped = [i for i, r in enumerate(records) if r.get("clip")]
        store.set("clip_pre", clipped, [from_json_number(records[i]["clip"].get("pre")) for i in clipped])
        store.set("clip_post", clipped, [from_json_number(records[i]["clip"].get("post")) for i in clipped])
        store.set("skipped", rows, [bool(r.get("skipped", False)) for r in records])
        # "clipped" marks every step whose clipping was checked; logs from before it existed
        # carry "clip" only, and were checked on every step when they carry it at all
        new_format = any("clipped" in r for r in records)
        store.set("clip_checked", rows, [("clipped" in r) if new_format else bool(clipped) for r in records])
        for f in (*LAYER_FIELDS, "row_fraction"):
            m = np.full((S, L), np.nan)
            measured = np.zeros(S, dtype=bool)
            for i, r in enumerate(records):
                for name, stats in r.get("layers", {}).items():
                    v = stats.get(f)
                    if v is not None:
                        m[i, index[name]] = from_json_number(v)
                        measured[i] = True
            store.set_layers(f, rows, m)
            if f"has_{f}" in store._flags:
                store._flags[f"has_{f}"][: store.n] = measured
        for i, r in enumerate(records):
            for name, a in (r.get("activations") or {}).items():
                store.add_activation(
                    name, a.get("kind", "none"), i, from_json_number(a.get("fraction")), from_json_number(a.get("std"))
                )
            tp = r.get("time_profile")
            if tp:
                hid = tp.get("hidden")
                store.add_time_profile(
                    i,
                    np.array([from_json_number(v) for v in tp["input"]]),
                    None if hid is None else np.array([from_json_number(v) for v in hid]),
                )
            ly = r.get("lyapunov")
            if ly:
                store.add_lyapunov(i, {n: np.array([from_json_number(v) for v in vs]) for n, vs in ly.items()})
            nf = r.get("nonfinite")
            if nf:  # a later copy (at its traced step) carries the refined location
                store.set_nonfinite(NonFinite.from_json(nf), refine=nf.get("traced_step") is not None)
            for lint in r.get("lints") or []:
                store.lints.append((i, Lint.from_json(lint)))
        return store


def _frozen(a: np.ndarray) -> np.ndarray:
    view: np.ndarray = a.view()
    view.flags.writeable = False
    return view


def _json_list(a: np.ndarray) -> list[Any]:
    """A float array as a JSON-ready list; the per-value conversion only where something is non-finite."""
    values: list[Any] = a.tolist()
    if np.isfinite(a).all():
        return values
    return [to_json_number(v) for v in values]


def _json_rows(a: np.ndarray) -> list[list[Any]]:
    rows: list[list[Any]] = a.tolist()
    if np.isfinite(a).all():
        return rows
    return [[to_json_number(v) for v in row] for row in rows]
