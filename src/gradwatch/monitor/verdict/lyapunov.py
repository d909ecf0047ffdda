"""Rules over the Lyapunov exponents of recurrent modules (``Monitor(lyapunov_every=...)``)."""

from __future__ import annotations

import numpy as np

from gradwatch.monitor.verdict.base import Evidence, Facts, Findings, fmt

__all__ = ["lyapunov"]


def lyapunov(f: Facts, out: Findings) -> None:
    """Exploding dynamics: λ_1 > ``lyapunov_exploding``; vanishing memory: λ_1 < −``lyapunov_vanishing``.

    Per recurrent module, both the latest measurement and the median over the measurements
    in the latest ``window`` of records must be beyond the threshold (one odd batch is not
    a finding). λ_1 is in nats per time step: a perturbation, and the gradient along the
    leading direction, scales like e^{λ_1 T} over T steps. Nothing without measurements.
    """
    measured = f.history.lyapunov
    if not measured:
        return
    th = f.th
    first_recent = int(f.history.steps[f.recent][0]) if f.n_steps else 0
    modules = dict.fromkeys(name for _, e in measured for name in e)
    for name in modules:
        series = [(step, float(e[name][0])) for step, e in measured if name in e and len(e[name])]
        finite = [(s, v) for s, v in series if np.isfinite(v)]
        if not finite:
            continue
        step, latest = finite[-1]
        recent = [v for s, v in finite if s >= first_recent] or [latest]
        typical = float(np.median(recent))
        if latest > th.lyapunov_exploding and typical > th.lyapunov_exploding:
            out.exploding.append(
                Evidence(
                    "lyapunov",
                    latest,
                    name,
                    f"λ₁ of “{name}” is {fmt(latest)} nats/step (step {step}): perturbations, and the gradient "
                    f"through time, grow ×{fmt(float(np.exp(10 * latest)))} every 10 steps",
                )
            )
            out.where_exploding.append(name)
        elif latest < -th.lyapunov_vanishing and typical < -th.lyapunov_vanishing:
            out.vanishing.append(
                Evidence(
                    "lyapunov",
                    latest,
                    name,
                    f"λ₁ of “{name}” is {fmt(latest)} nats/step (step {step}): its memory, and the gradient "
                    f"through time, shrink ×{fmt(float(np.exp(10 * latest)))} every 10 steps",
                )
            )
            out.where_vanishing.append(name)
