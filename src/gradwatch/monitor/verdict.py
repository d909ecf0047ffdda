"""From recorded statistics to a verdict: vanishing, exploding, nonfinite or healthy.

The rules read a :class:`~gradwatch.monitor.history.History` (live or loaded from a JSONL
log), summarize the most recent ``window`` fraction of recorded steps by medians, and
apply these tests, in this order of precedence:

1. **nonfinite** — a NaN/Inf was recorded anywhere (forward output, a gradient).
2. **exploding** — any of:
   - over depth: the RMS gradient of the first layer exceeds the last layer's by more
     than ``exploding_ratio`` (gradients grow toward the input);
   - over time: ‖∂L/∂u_0‖ exceeds ‖∂L/∂u_{T−1}‖ by more than ``time_exploding_ratio``;
   - over training: the global gradient norm grew by more than ``growth_ratio`` from the
     first window to the last;
   - in size: the global ‖g‖/‖θ‖ exceeds ``relative_grad_high``.
3. **vanishing** — any of:
   - over depth: the first layer's RMS gradient is below ``vanishing_ratio`` of the largest
     layer's;
   - over time: ‖∂L/∂u_0‖ is below ``time_vanishing_ratio`` of the largest ‖∂L/∂u_t‖;
   - saturation: an activation module has more than ``saturation_high`` of its units
     saturated (σ′ < 1 % of its maximum) or dead (ReLU: zero for the whole batch).
4. **healthy** otherwise.

RMS gradients (‖g‖/√numel) are compared rather than norms, so that layers of different
sizes compare fairly. The verdict's advice names remedies by their registry names (data,
not imports: the monitor does not depend on gradwatch.remedies).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gradwatch import _checks, _remedy_catalog
from gradwatch.monitor.history import History

__all__ = ["STATUSES", "Advice", "Evidence", "Thresholds", "Verdict", "verdict"]

STATUSES = ("exploding", "healthy", "nonfinite", "vanishing")


@dataclass(frozen=True)
class Thresholds:
    """The numbers the verdict's rules compare against (see the module docstring)."""

    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    time_vanishing_ratio: float = 1e-3
    time_exploding_ratio: float = 1e3
    growth_ratio: float = 1e3
    relative_grad_high: float = 1e3
    saturation_high: float = 0.9
    saturation_note: float = 0.5
    update_ratio_high: float = 1.0
    window: float = 0.2

    def __post_init__(self) -> None:
        owner = "Thresholds"
        for name in ("vanishing_ratio", "time_vanishing_ratio"):
            _checks.interval(getattr(self, name), name, owner, 0, 1, low_open=True, high_open=True)
        for name in ("exploding_ratio", "time_exploding_ratio", "growth_ratio"):
            _checks.interval(getattr(self, name), name, owner, 1, low_open=True)
        _checks.interval(self.relative_grad_high, "relative_grad_high", owner, 0, low_open=True)
        _checks.interval(self.update_ratio_high, "update_ratio_high", owner, 0, low_open=True)
        for name in ("saturation_high", "saturation_note", "window"):
            _checks.interval(getattr(self, name), name, owner, 0, 1, low_open=True)


@dataclass(frozen=True)
class Evidence:
    """One measured fact behind a verdict.

    Attributes:
        quantity: what was measured (e.g. "depth_ratio", "time_ratio", "saturation").
        value: the number.
        where: the layer, module or time steps it concerns.
        sentence: the fact in words, with the number.
    """

    quantity: str
    value: float
    where: str
    sentence: str


@dataclass(frozen=True)
class Advice:
    """A remedy (by its registry name) and why it fits this verdict."""

    remedy: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The monitor's diagnosis: status, where, evidence in numbers, and advice."""

    status: str
    where: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    advice: tuple[Advice, ...]

    def __str__(self) -> str:
        where = ""
        if self.where:
            shown = ", ".join(self.where[:6]) + (", …" if len(self.where) > 6 else "")
            where = f" in {shown}"
        lines = [f"{self.status}{where}"]
        lines += [f"  - {e.sentence}" for e in self.evidence]
        if self.advice:
            lines.append("  try:")
            lines += [f"  * {a.remedy}: {a.reason}" for a in self.advice]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite values as strings)."""
        d = asdict(self)
        d["where"], d["evidence"], d["advice"] = list(d["where"]), list(d["evidence"]), list(d["advice"])
        for e in d["evidence"]:
            v = e["value"]
            if isinstance(v, float) and not math.isfinite(v):
                e["value"] = str(v)
        return d


def _finite_median(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def _q(name: str) -> str:
    return f"“{name}”" if name else "(model)"


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def _advise(*names: str) -> tuple[Advice, ...]:
    # remedies by registry name, with the catalog's advice sentence (data: no remedies import)
    return tuple(Advice(n, _remedy_catalog.advice(n)) for n in names)


def verdict(history: History, thresholds: Thresholds | None = None) -> Verdict:
    """Diagnose gradient flow from a :class:`History`.

    Args:
        history: what a monitor recorded (``mon.history``) or a JSONL log read back.
        thresholds: the rules' numbers; defaults to ``Thresholds()``.

    Returns:
        A :class:`Verdict`. With no recorded steps it is "healthy" with evidence saying so.
    """
    th = thresholds or Thresholds()
    if history.nonfinite is not None:
        nf = history.nonfinite
        ev = Evidence("nonfinite", math.nan, nf.module, str(nf))
        first_module = next(iter(history.layers), None)
        names = ["clip_grad_norm", "lr:lower", "amp:grad_scaler"]
        if nf.tensor == "forward output" and nf.module in ("", first_module):
            names.insert(0, "data:check")
        return Verdict("nonfinite", (nf.module or "(model)",), (ev,), _advise(*names))

    S = history.n_steps
    if S == 0:
        return Verdict("healthy", (), (Evidence("steps", 0.0, "", "no step recorded yet"),), ())
    n_win = max(1, math.ceil(th.window * S))
    recent = slice(S - n_win, S)
    names = list(history.layers)
    sequence = bool(history.time_profiles)
    saturating = {n: a for n, a in history.activations.items() if a.kind == "saturation"}
    dead = {n: a for n, a in history.activations.items() if a.kind == "dead"}

    exploding: list[Evidence] = []
    vanishing: list[Evidence] = []
    notes: list[Evidence] = []
    where_exp: list[str] = []
    where_van: list[str] = []

    # depth: per-step ratios between layers, summarized over the first and the latest window
    # (a sigmoid net can vanish at initialization and then stall with every gradient ~0).
    R = history.layer_matrix("grad_rms")
    if len(names) >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            top = np.max(np.where(np.isfinite(R), R, -np.inf), axis=0)
            top[~np.isfinite(top)] = np.nan
            first_top = R[0] / top
            first_last = R[0] / R[-1]
        windows = {"at the start of training": slice(0, n_win), "recently": recent}
        for phase, win in windows.items():
            r_ft = _finite_median(first_top[win])
            r_fl = _finite_median(first_last[win])
            if np.isfinite(r_fl) and r_fl > th.exploding_ratio and phase == "recently":
                exploding.append(
                    Evidence(
                        "depth_ratio",
                        r_fl,
                        names[0],
                        f"layer {_q(names[0])}'s RMS gradient is {_fmt(r_fl)}× layer {_q(names[-1])}'s ({phase})",
                    )
                )
                med = np.array([_finite_median(R[i, win]) for i in range(len(names))])
                where_exp += [n for n, v in zip(names, med, strict=True) if v > math.sqrt(th.exploding_ratio) * med[-1]]
            if np.isfinite(r_ft) and r_ft < th.vanishing_ratio and not vanishing:
                med = np.array([_finite_median(R[i, win]) for i in range(len(names))])
                i_top = int(np.nanargmax(med))
                vanishing.append(
                    Evidence(
                        "depth_ratio",
                        r_ft,
                        names[0],
                        f"layer {_q(names[0])}'s RMS gradient is {_fmt(r_ft)} of layer {_q(names[i_top])}'s ({phase}, "
                        f"median over {n_win} recorded steps)",
                    )
                )
                cut = math.sqrt(th.vanishing_ratio) * med[i_top]
                where_van += [n for n, v in zip(names, med, strict=True) if np.isfinite(v) and v < cut]
    if names and np.all(np.nan_to_num(R[:, recent], nan=1.0) == 0.0):
        vanishing.append(Evidence("grad_norm", 0.0, "all layers", "every layer's gradient is exactly zero (recently)"))
        where_van += names

    # time
    if sequence:
        step, prof, _ = history.time_profiles[-1]
        p = np.asarray(prof, dtype=float)
        if p.size >= 2 and np.all(np.isfinite(p)) and p.max() > 0:
            last = p[-1] if p[-1] > 0 else p.max()
            r_exp = float(p[0] / last)
            r_van = float(p[0] / p.max())
            if r_exp > th.time_exploding_ratio:
                exploding.append(
                    Evidence(
                        "time_ratio",
                        r_exp,
                        "t=0",
                        f"‖∂L/∂u_t‖ at t=0 is {_fmt(r_exp)}× that at t={p.size - 1} (step {step})",
                    )
                )
                where_exp.append(f"time steps t < {int(np.argmax(p < math.sqrt(th.time_exploding_ratio) * last))}")
            elif r_van < th.time_vanishing_ratio:
                k = int(np.argmax(p >= math.sqrt(th.time_vanishing_ratio) * p.max()))
                vanishing.append(
                    Evidence(
                        "time_ratio",
                        r_van,
                        "t=0",
                        f"‖∂L/∂u_t‖ at t=0 is {_fmt(r_van)} of its largest value (step {step}); "
                        f"it falls below {_fmt(math.sqrt(th.time_vanishing_ratio))} of it for t < {k}",
                    )
                )
                where_van.append(f"time steps t < {k}")

    # float32 overflow: a finite max |g| but an infinite norm means ‖g‖ > ~1.8e19
    for n, lh in history.layers.items():
        over = np.isposinf(lh.grad_norm[recent]) & np.isfinite(lh.grad_max[recent])
        if over.any():
            exploding.append(
                Evidence(
                    "overflow",
                    float(over.mean()),
                    n,
                    f"layer {_q(n)}'s gradient norm overflowed float32 (> 1.8e19) on {int(over.sum())} recent steps",
                )
            )
            where_exp.append(n)

    # growth and size
    g = history.global_grad_norm
    if 2 * n_win + 1 <= S:
        first, last = _finite_median(g[:n_win]), _finite_median(g[recent])
        if first > 0 and last / first > th.growth_ratio:
            exploding.append(
                Evidence(
                    "growth",
                    last / first,
                    "global",
                    f"the global gradient norm grew {_fmt(last / first)}× during training",
                )
            )
    pn = np.sqrt(np.nansum(history.layer_matrix("param_norm")[:, recent] ** 2, axis=0))
    rel = _finite_median(g[recent] / np.where(pn > 0, pn, np.nan))
    if np.isfinite(rel) and rel > th.relative_grad_high:
        exploding.append(Evidence("relative_grad", rel, "global", f"the global ‖g‖/‖θ‖ is {_fmt(rel)}"))

    # saturation and dead units
    for kind_map, word in ((saturating, "saturated"), (dead, "dead (zero for the whole batch)")):
        for n, a in kind_map.items():
            f = _finite_median(a.fraction[-max(1, math.ceil(th.window * a.fraction.size)) :])
            if not np.isfinite(f):
                continue
            ev = Evidence(a.kind, f, n, f"{f:.0%} of {_q(n)}'s units are {word}")
            if f > th.saturation_high:
                vanishing.append(ev)
                where_van.append(n)
            elif f > th.saturation_note:
                notes.append(ev)

    # update ratios (evidence only: their size follows the learning rate as much as the gradient)
    for n, lh in history.layers.items():
        u = _finite_median(lh.update_ratio[recent])
        if np.isfinite(u) and u > th.update_ratio_high:
            notes.append(Evidence("update_ratio", u, n, f"updates of {_q(n)} are {_fmt(u)}× its weights' norm"))

    if exploding:
        fixes = ["clip_grad_norm", "lr:lower"]
        fixes += ["spectral_radius<1", "init:orthogonal"] if sequence else ["batchnorm", "residual"]
        return Verdict(
            "exploding",
            tuple(dict.fromkeys(where_exp)) or ("global",),
            tuple(exploding + notes),
            _advise(*fixes),
        )
    if vanishing:
        remedies: list[str] = []
        if sequence:
            remedies += ["lstm", "init:orthogonal", "pascanu_regularizer"]
        if saturating or not sequence:
            remedies += ["relu"]
        if any(a.kind == "saturation" for a in history.activations.values()) and not sequence:
            remedies += ["init:kumar", "init:yilmaz_poli"]
        if not sequence:
            remedies += ["batchnorm", "residual"]
        if dead:
            remedies += ["leaky_relu"]
        return Verdict("vanishing", tuple(dict.fromkeys(where_van)), tuple(vanishing + notes), _advise(*remedies))
    summary = Evidence("steps", float(S), "", f"{S} recorded steps; gradient flow within thresholds")
    return Verdict("healthy", (), (summary, *notes), ())
