"""Misuse lints: training-loop mistakes the monitor can see, each warned once, naming the fix.

Each lint is a :class:`~gradwatch.errors.GradwatchWarning` pointing at the user's line, and a
:class:`Lint` record (``history.lints``; ``"lints"`` in the JSONL record of the step it was
noticed at), so ``gradwatch show`` and the verdict can list it. The kinds:

- ``clip_scaled`` — clipping the gradients while a GradScaler still has them multiplied by
  the loss scale (before ``scaler.unscale_``): ``max_norm`` is compared with the scaled norm.
- ``clip_after_step`` — clipping (or changing) the gradient after ``optimizer.step()``:
  the optimizer already consumed the unclipped gradient.
- ``no_zero_grad`` — ``.grad`` never reset between steps: the same tensors grow in place
  (their version counters rise, no ``optimizer.zero_grad()`` ran) and ‖g‖ keeps growing.
- ``step_per_micro_batch`` — ``mon.step()`` called several times per optimizer step without
  ``accumulation_steps``.
- ``fp16_norm_overflow`` — float16 gradients whose L2 norm exceeds float16's range (65504)
  although every element is finite: ``clip_grad_norm_`` computes it in float16 and gets inf.
- ``clip_inf`` — a clipping whose total norm was inf: every gradient was scaled by 0.

Cost: host-side bookkeeping only — gradient version counters (no pass over any tensor) at
each record and around the optimizer's ``step`` and ``zero_grad`` and the scaler's
``unscale_`` (instance-attribute shadows, removed by ``close``), and checks on the host rows
at each sync. Host syncs: 0.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradwatch.errors import GradwatchWarning
from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, Shadows, StepContext
from gradwatch.monitor.collectors.clipping import Clipping, Versions, versions
from gradwatch.monitor.collectors.grads import GradNorms
from gradwatch.monitor.store import Store

__all__ = ["FP16_MAX", "LINT_KINDS", "Lint", "Lints"]

LINT_KINDS = (
    "clip_after_step",
    "clip_inf",
    "clip_scaled",
    "fp16_norm_overflow",
    "no_zero_grad",
    "step_per_micro_batch",
)
FP16_MAX = 65504.0
NO_ZERO_GRAD_STEPS = 5  # consecutive records of a gradient growing in place before the lint
_INTERNAL = tuple(
    os.path.join(d, "")
    for m in (sys.modules["gradwatch"], torch)
    if m.__file__
    for d in {os.path.dirname(m.__file__), str(Path(m.__file__).resolve().parent)}
)


@dataclass(frozen=True)
class Lint:
    """A misuse of the training loop, noticed at ``step``.

    Attributes:
        step: the record it concerns (or the newest record when it was noticed).
        kind: one of :data:`LINT_KINDS`.
        message: what is wrong, with its numbers, and the line to change.
    """

    step: int
    kind: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The lint as an entry of a record's ``"lints"`` list."""
        return {"step": self.step, "kind": self.kind, "message": self.message}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Lint:
        """Read a ``"lints"`` entry back."""
        return cls(int(obj["step"]), str(obj["kind"]), str(obj.get("message", "")))

    def __str__(self) -> str:
        return self.message


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside gradwatch and torch (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def _grew(now: Versions, before: Versions) -> bool:
    """Whether every gradient is the same tensor as before, modified in place since."""
    pairs = [(n, b) for n, b in zip(now, before, strict=True) if n != (-1, -1) or b != (-1, -1)]
    return bool(pairs) and all(n[0] == b[0] and n[1] > b[1] for n, b in pairs)


class Lints(Collector):
    """Watch the loop for the misuses in :data:`LINT_KINDS`; warn once per kind and record it.

    Args:
        params: the monitored parameters.
        loop: the loop's state (shared with the monitor).
        grads: the gradient collector (its host rows are checked at sync).
        clip: the clipping collector (the gradient versions of the last record).
        optimizer: its ``zero_grad`` is shadowed (None: manual loops).
        scaler: an enabled GradScaler whose ``unscale_`` is shadowed, or None.
        recorded_this_iteration: whether a ``mon.step()`` ran in the scaler's current iteration.
        skip_pending: whether a GradScaler skipped a step since the last record.
        accumulation: ``Monitor(accumulation_steps=k > 1)`` is on.
    """

    name = "lints"

    def __init__(
        self,
        params: Params,
        loop: Loop,
        grads: GradNorms,
        clip: Clipping,
        optimizer: torch.optim.Optimizer | None,
        scaler: torch.amp.GradScaler | None,
        *,
        recorded_this_iteration: Callable[[], bool] = lambda: False,
        skip_pending: Callable[[], bool] = lambda: False,
        accumulation: bool = False,
    ) -> None:
        super().__init__()
        self.params, self.loop, self.grads, self.clip = params, loop, grads, clip
        self.optimizer = optimizer
        self.has_optimizer = optimizer is not None
        self.recorded_this_iteration, self.skip_pending = recorded_this_iteration, skip_pending
        self.accumulation = accumulation
        self.issued: set[str] = set()
        self._pending: list[Lint] = []
        self._fp16 = np.array([p.dtype == torch.float16 for p in params.tensors])
        self._after_step: Versions | None = None  # gradient versions at the optimizer's post-hook
        self._zeroed = False  # optimizer.zero_grad() ran since the last record
        self._prev: tuple[Versions, int] | None = None  # (versions, optimizer steps) at the last record
        self._run: list[int] = []  # consecutive records whose gradient kept growing in place
        self._shadows = Shadows()
        if optimizer is not None:
            self._shadows.add(optimizer, "zero_grad", self._on_zero_grad)
        if scaler is not None:
            self._shadows.add(scaler, "unscale_", self._on_unscale)

    def issue(self, kind: str, step: int | None, message: str) -> None:
        """Warn ``message`` at the user's line, once per kind, and record it at the next sync."""
        if kind in self.issued:
            return
        self.issued.add(kind)
        when = self.loop.last_record if step is None else step
        self._pending.append(Lint(0 if when is None else when, kind, message))
        warnings.warn(f"gradwatch: {message}", GradwatchWarning, stacklevel=_user_stacklevel())

    # ------------------------------------------------------------------ the loop's events
    def before_call(self) -> None:
        """At each ``Monitor.step()`` call, before any collector's ``begin()``."""
        if not self.accumulation and self.loop.repeated_call() and not self.skip_pending():
            self.issue(
                "step_per_micro_batch",
                None,
                "Monitor.step() was called twice with no optimizer step in between: with gradient "
                "accumulation, call it once per optimizer step (after the last micro-batch) or pass "
                "Monitor(accumulation_steps=k); otherwise each micro-batch's partial gradient is a record.",
            )

    def collect(self, ctx: StepContext) -> None:
        now, steps = self.clip.recorded_versions, self.loop.opt_steps
        prev, self._prev = self._prev, (now, steps)
        stepped = not self.has_optimizer or (prev is not None and steps != prev[1])
        if prev is not None and stepped and not self._zeroed and _grew(now, prev[0]):
            self._run = [*self._run[-49:], ctx.step] if self._run else [ctx.step]
        else:
            self._run = [ctx.step]
        self._zeroed = False

    def after_optimizer_step(self, closure_record: int | None) -> None:
        self._after_step = versions(self.params.grads())

    def _on_zero_grad(self, *args: Any, **kwargs: Any) -> None:
        if self.loop.in_opt_step:
            return  # a closure re-computing the gradient inside optimizer.step
        self._zeroed = True
        after, self._after_step = self._after_step, None
        if after is not None and versions(self.params.grads()) != after:
            self.clipped_after_step()

    def clipped_after_step(self) -> None:
        """The gradient was clipped (or changed) after the optimizer consumed it."""
        self.issue(
            "clip_after_step",
            None,
            "the gradient was clipped (or changed) after optimizer.step(): the optimizer had already "
            "used the unclipped gradient, so the clipping changed nothing. Call clip_grad_norm_(...) "
            "between loss.backward() and optimizer.step() (with a GradScaler: after scaler.unscale_(optimizer)).",
        )

    def _on_unscale(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        clip, loop = self.clip, self.loop
        if (
            optimizer is self.optimizer
            and self.recorded_this_iteration()
            and loop.last_call_recorded
            and clip.scaled_at_reading
            and versions(self.params.grads()) != clip.recorded_versions
        ):
            self.clipped_scaled()

    def clipped_scaled(self) -> None:
        """The gradient was clipped (or changed) while still multiplied by the GradScaler's scale."""
        self.issue(
            "clip_scaled",
            None,
            "the gradient was clipped (or changed) before scaler.unscale_(optimizer), while it was still "
            "multiplied by the loss scale: max_norm was compared with the scaled norm, so the gradient is "
            "clipped to max_norm / scale. Call scaler.unscale_(optimizer) before clip_grad_norm_(...).",
        )

    def on_clip(self, scaled: bool, reported: bool) -> None:
        """A clip through ``mon.clip_grad_norm_`` (or reported by ``step(clip=...)``).

        ``scaled``: the gradient is still AMP-scaled. A reported clip happened before the
        ``step()`` call, so whether it preceded ``optimizer.step()`` is not known.
        """
        loop = self.loop
        if scaled:
            self.clipped_scaled()
        if not reported and self.has_optimizer and (loop.optimizer_first or loop.stepped_since_record()):
            self.clipped_after_step()

    # ------------------------------------------------------------------ at sync
    def finish(self, batch: Batch, store: Store) -> None:
        self._check_fp16(batch)
        self._check_clip_inf(batch, store)
        self._check_accumulating(store)
        for lint in self._pending:
            store.add_lint(lint)
        self._pending = []

    def _check_fp16(self, batch: Batch) -> None:
        if "fp16_norm_overflow" in self.issued or not self._fp16.any():
            return
        P = len(self.params)
        for step, f in batch.get(self.grads.name, []):
            if not self.grads.has_max(f["row"]):
                continue  # max |g| not read at this step: finite elements cannot be told
            l2, top = f["row"][:P][self._fp16], f["row"][P:][self._fp16]
            with np.errstate(over="ignore", invalid="ignore"):
                total = float(np.sqrt(np.sum(l2 * l2)))
            if np.isfinite(top).all() and not total <= FP16_MAX:
                self.issue(
                    "fp16_norm_overflow",
                    step,
                    f"at step {step} the L2 norm of the float16 gradients ({total:.4g}) exceeds float16's "
                    f"largest value {FP16_MAX:g} although every element is finite (max |g| {float(top.max()):.4g}): "
                    "torch.nn.utils.clip_grad_norm_ computes it in float16, returns inf and scales every "
                    "gradient to 0. Keep float32 weights (torch.autocast with a GradScaler), or compute the "
                    "norm of float32 copies: torch.nn.utils.get_total_norm([p.grad.float() for p in params]).",
                )
                return

    def _check_clip_inf(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.clip.name, [])
        if "clip_inf" in self.issued or not entries:
            return
        rows = store.rows_of(s for s, _ in entries)
        pre, post = store.column("clip_pre")[rows], store.column("clip_post")[rows]
        # clip_grad_norm_ scales by max_norm / (total + 1e-6): zero (or NaN) only for an infinite total,
        # which the clip's own norm can reach (float16) even where the monitor's float64 sum does not
        with np.errstate(invalid="ignore"):
            zeroed = (pre == math.inf) | ((post == 0) & (pre > 0)) | (np.isnan(post) & ~np.isnan(pre))
        hit = np.flatnonzero(store.column("clip_checked")[rows] & zeroed)
        if hit.size:
            step = entries[int(hit[0])][0]
            self.issue(
                "clip_inf",
                step,
                f"clip_grad_norm_ returned inf at step {step}: every gradient was multiplied by "
                "max_norm / inf = 0 (NaN where an entry was inf), so that update did nothing or wrote NaN. "
                "Skip steps whose norm is not finite (clip_grad_norm_(..., error_if_nonfinite=True) raises "
                "instead; a GradScaler skips them), and find where the inf comes from.",
            )

    def _check_accumulating(self, store: Store) -> None:
        run = self._run
        if "no_zero_grad" in self.issued or len(run) < NO_ZERO_GRAD_STEPS or store.n == 0:
            return
        synced = [s for s in run if s <= int(store.steps[-1])]
        norms = store.column("global_grad_norm")[store.rows_of(synced)]
        if len(norms) < NO_ZERO_GRAD_STEPS or not np.isfinite(norms).all():
            return
        rising = float(np.mean(np.diff(norms) > 0))
        if rising >= 0.75 and norms[-1] >= 1.5 * norms[0]:
            self.issue(
                "no_zero_grad",
                synced[-1],
                f"gradients accumulate across steps: .grad is never reset, so each backward adds to the "
                f"last (the same tensors grew in place over steps {synced[0]}–{synced[-1]}, ‖g‖ "
                f"{norms[0]:.3g} → {norms[-1]:.3g}). Call optimizer.zero_grad() (or model.zero_grad()) "
                "once per step, after optimizer.step().",
            )

    def close(self) -> None:
        self._shadows.remove()
