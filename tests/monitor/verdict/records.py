"""Building JSON records (the JSONL format) for constructed histories: each rule tested on known numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import gradwatch as gw
from gradwatch._output import to_json_number


def records(
    grad: Mapping[str, Sequence[float]],
    *,
    loss: Sequence[float] | None = None,
    param: Mapping[str, Sequence[float]] | None = None,
    update: Mapping[str, Sequence[float]] | None = None,
    grad_max: Mapping[str, Sequence[float]] | None = None,
    numel: Mapping[str, int] | None = None,
    roles: Mapping[str, str] | None = None,
    row_fraction: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """One record per step from per-layer series; NaN in ``param``/``update``/``row_fraction`` means
    "not measured" (null), NaN elsewhere is a measured NaN. The global norm is computed from the layers."""
    names = list(grad)
    S = len(grad[names[0]])
    out = []
    for t in range(S):
        layers = {}
        for n in names:
            stats: dict[str, Any] = {
                "grad_norm": to_json_number(grad[n][t]),
                "grad_max": to_json_number(grad_max[n][t] if grad_max else float(grad[n][t]) / 10),
                "param_norm": None,
                "update_ratio": None,
                "numel": (numel or {}).get(n, 100),
            }
            for key, series in (("param_norm", param), ("update_ratio", update), ("row_fraction", row_fraction)):
                if series and n in series and not math.isnan(series[n][t]):
                    stats[key] = to_json_number(series[n][t])
            layers[n] = stats
        with np.errstate(invalid="ignore", over="ignore"):
            g = float(np.sqrt(np.sum(np.square([float(grad[n][t]) for n in names]))))
        rec: dict[str, Any] = {"step": t, "global_grad_norm": to_json_number(g), "layers": layers}
        rec["loss"] = None if loss is None else to_json_number(loss[t])
        if t == 0 and roles:
            rec["roles"] = dict(roles)
        out.append(rec)
    return out


def history(grad: Mapping[str, Sequence[float]], **kw: Any) -> gw.History:
    """A History from per-layer series (see :func:`records`)."""
    return gw.History.from_records(records(grad, **kw))


def noisy(level: float, S: int, sigma: float = 0.2, seed: int = 0) -> np.ndarray:
    """A positive series with log-normal noise of ``sigma`` (natural-log units) around ``level``."""
    rng = np.random.default_rng(seed)
    return level * np.exp(sigma * rng.standard_normal(S))
