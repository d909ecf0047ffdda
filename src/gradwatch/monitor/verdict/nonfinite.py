"""Non-finite values, from the recorded numbers as well as the monitor's flag, and float32 overflow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradwatch.monitor.history import NonFinite
from gradwatch.monitor.verdict.base import Event, Evidence, Facts, Findings, q
from gradwatch.monitor.verdict.stats import first_true

__all__ = ["NonFiniteFinding", "nonfinite", "overflow"]


@dataclass(frozen=True)
class NonFiniteFinding:
    """The first non-finite value of the run.

    Attributes:
        event: the ``nonfinite`` event (step, layer, sentence).
        where: the module ("(model)" for the loss or the model itself).
        origin: "forward", "backward" or None (unknown).
        at_input: the first non-finite value is a forward output of the model's first layer
            (the input batch itself may hold it).
    """

    event: Event
    where: str
    origin: str | None
    at_input: bool


def _bad_layers(f: Facts) -> np.ndarray:
    """(L, S): a layer's gradient norm is NaN, or infinite while its max |g| is not known finite.

    An infinite norm with a finite max |g| is a float32 overflow of the norm (‖g‖ > ~1.8e19): a
    huge gradient, not a non-finite one (:func:`overflow`).
    """
    G, M = f.history.layer_matrix("grad_norm"), f.history.layer_matrix("grad_max")
    P = f.history.layer_matrix("param_norm")
    bad: np.ndarray = np.isnan(G) | (np.isinf(G) & ~np.isfinite(M)) | np.isinf(P)
    return bad


def _origin(nf: NonFinite | None, loss_bad: bool, loss_known: bool) -> str | None:
    origin = getattr(nf, "origin", None) if nf is not None else None
    if origin is not None:
        return str(origin)
    if loss_bad:  # a non-finite loss: the forward pass made it
        return "forward"
    if nf is not None and nf.tensor in ("forward output", "loss"):
        return "forward"
    if nf is not None and nf.tensor.startswith("gradient w.r.t."):
        return "backward"
    return "backward" if loss_known else None


def nonfinite(f: Facts) -> NonFiniteFinding | None:
    """The first NaN/Inf: in the loss passed to ``step``, any layer's gradient norm, any ‖θ‖, or the
    monitor's own flag (``history.nonfinite``), whichever step comes first.

    Steps a GradScaler skipped are left out: overflowing there is how loss scaling works.
    """
    h = f.history
    ok = ~np.asarray(h.skipped, dtype=bool)
    loss = np.asarray(h.loss, dtype=float)
    has_loss = np.asarray(h.has_loss, dtype=bool)
    loss_bad = has_loss & ~np.isfinite(loss)
    bad = _bad_layers(f) if f.names else np.zeros((0, f.n_steps), dtype=bool)
    row = first_true(ok & (loss_bad | bad.any(axis=0) | np.isnan(h.global_grad_norm)))
    nf = h.nonfinite
    if nf is not None:
        r = f.record_index(nf.step)
        if r < f.n_steps and h.steps[r] == nf.step and not ok[r]:
            nf = None  # the scaler skipped that step
    if row is None and nf is None:
        return None
    if nf is not None and (row is None or nf.step <= int(h.steps[row])):
        r = min(f.record_index(nf.step), f.n_steps - 1)
        origin = _origin(nf, bool(loss_bad[r]) if h.steps[r] == nf.step else False, bool(has_loss[r]))
        first_layer = f.names[0] if f.names else ""
        at_input = nf.tensor == "forward output" and nf.module in ("", first_layer)
        where = nf.module or "(model)"
        event = Event(nf.step, "nonfinite", nf.module or None, float("nan"), float("nan"), str(nf))
        return NonFiniteFinding(event, where, origin, at_input)
    assert row is not None
    step = int(h.steps[row])
    layers = [f.names[i] for i in np.flatnonzero(bad[:, row])] if bad.size else []
    origin = _origin(None, bool(loss_bad[row]), bool(has_loss[row]))
    if loss_bad[row]:
        layer, sentence = None, f"the loss is {loss[row]} at step {step}: made in the forward pass"
    elif layers:
        # a backward NaN reaches every layer before its source and none after: the deepest is nearest
        layer = layers[-1]
        sentence = f"the gradient (or weight) norm of {q(layer)} is non-finite at step {step}" + (
            f", and of {len(layers) - 1} layers before it" if len(layers) > 1 else ""
        )
    else:
        layer, sentence = None, f"the global gradient norm is NaN at step {step}"
    event = Event(step, "nonfinite", layer, float(loss[row]) if loss_bad[row] else float("nan"), float("nan"), sentence)
    return NonFiniteFinding(event, layer or "(model)", origin, False)


def overflow(f: Facts, out: Findings) -> None:
    """Exploding: a layer's ‖g‖ overflowed float32 (infinite) while its max |g| stayed finite (recently)."""
    ok = ~np.asarray(f.history.skipped, dtype=bool)[f.recent]
    for name, lh in f.history.layers.items():
        over = np.isposinf(lh.grad_norm[f.recent]) & np.isfinite(lh.grad_max[f.recent]) & ok
        if over.any():
            out.exploding.append(
                Evidence(
                    "overflow",
                    float(over.mean()),
                    name,
                    f"layer {q(name)}'s gradient norm overflowed float32 (> 1.8e19) on {int(over.sum())} recent steps",
                )
            )
            out.where_exploding.append(name)
