"""Rules over time steps: ‖∂L/∂u_t‖ of the latest time profile, from t = 0 to T − 1."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.monitor.verdict.base import Evidence, Facts, Findings, fmt

__all__ = ["time_steps"]


def time_steps(f: Facts, out: Findings) -> None:
    """Exploding: ‖∂L/∂u_0‖ exceeds ‖∂L/∂u_{T−1}‖ by ``time_exploding_ratio``.
    Vanishing: ‖∂L/∂u_0‖ is below ``time_vanishing_ratio`` of the largest ‖∂L/∂u_t‖.

    Read from the latest profile (``Monitor(time_profile_every=...)``); nothing without one.
    """
    if not f.history.time_profiles:
        return
    th = f.th
    step, prof, _ = f.history.time_profiles[-1]
    p = np.asarray(prof, dtype=float)
    if p.size < 2 or not np.all(np.isfinite(p)) or p.max() <= 0:
        return
    last = p[-1] if p[-1] > 0 else p.max()
    r_exp, r_van = float(p[0] / last), float(p[0] / p.max())
    if r_exp > th.time_exploding_ratio:
        out.exploding.append(
            Evidence(
                "time_ratio", r_exp, "t=0", f"‖∂L/∂u_t‖ at t=0 is {fmt(r_exp)}× that at t={p.size - 1} (step {step})"
            )
        )
        out.where_exploding.append(f"time steps t < {int(np.argmax(p < math.sqrt(th.time_exploding_ratio) * last))}")
    elif r_van < th.time_vanishing_ratio:
        k = int(np.argmax(p >= math.sqrt(th.time_vanishing_ratio) * p.max()))
        out.vanishing.append(
            Evidence(
                "time_ratio",
                r_van,
                "t=0",
                f"‖∂L/∂u_t‖ at t=0 is {fmt(r_van)} of its largest value (step {step}); "
                f"it falls below {fmt(math.sqrt(th.time_vanishing_ratio))} of it for t < {k}",
            )
        )
        out.where_vanishing.append(f"time steps t < {k}")
