"""Clipping: the global norm before and after the user's clipping, and clipping with measured norms."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, StepContext, global_l2
from gradwatch.monitor.collectors.grads import GradNorms
from gradwatch.monitor.store import CLIP_RTOL, Store

__all__ = ["Clipping", "Versions", "versions"]

Versions = list[tuple[int, int]]


def versions(grads: Sequence[torch.Tensor | None]) -> Versions:
    """Identity and version counter of each gradient: they change when it is modified or replaced."""
    return [(-1, -1) if g is None else (id(g), g._version) for g in grads]


class Clipping(Collector):
    """The global ‖g‖ the optimizer consumes, when it differs from the one recorded (the user clipped).

    Cost: per recorded step, the version counters of the gradients (no pass over them); in
    the optimizer's step pre-hook, only when a version changed, one ``torch._foreach_norm``
    of the gradients. When the user clips with :meth:`gradwatch.Monitor.clip_grad_norm_`,
    nothing is read again: the post-clip norm is computed from the recorded one. Host
    syncs: 0.

    Where it is measured (``clip_checked``): monitor-first loops with an optimizer (every
    record), :meth:`gradwatch.Monitor.clip_grad_norm_`, and ``Monitor.step(loss, clip=total)``
    (manual loops: ``total`` is what ``clip_grad_norm_`` returned, the record reads the
    clipped gradient). Elsewhere clipping is unknown, and ``History.clip_rate`` is NaN.

    Args:
        params: the monitored parameters.
        loop: the loop's state (shared with the monitor).
        mode: None: record pre/post only where the gradient changed; True: on every step
            where both were measured.
        inverse_scale: returns 1/scale while AMP gradients are still scaled (else None).
    """

    name = "clip"

    def __init__(
        self,
        params: Params,
        loop: Loop,
        mode: bool | None,
        inverse_scale: Callable[[], torch.Tensor | None],
    ) -> None:
        super().__init__()
        self.params, self.loop, self.mode = params, loop, mode
        self.inverse_scale = inverse_scale
        self.recorded_versions: Versions = []  # of the gradient the last record read
        self.staged_versions: Versions = []  # of the gradient Monitor.read_grads() read
        self.staged = False
        self._measured: int | None = None  # the last step whose post-clip norm is queued
        self.scaled_at_reading = False  # the recorded gradient was still AMP-scaled when read
        self.on_clip: Callable[[bool, bool], None] | None = None  # (scaled, reported): the misuse lints

    def stage(self) -> None:
        """Note the versions of the gradient that ``Monitor.read_grads()`` just read."""
        self.staged, self.staged_versions = True, versions(self.params.grads())
        self.scaled_at_reading = self.inverse_scale() is not None

    def collect(self, ctx: StepContext) -> None:
        if not self.staged:
            self.scaled_at_reading = ctx.inv_scale is not None
        if self.staged:
            self.recorded_versions, self.staged = self.staged_versions, False
        else:
            self.recorded_versions = versions(self.params.grads())

    def _post(self, step: int) -> None:
        """Queue the post-clip norms of ``step``'s record (nothing when the gradient is unchanged)."""
        self._measured = step
        grads = self.params.grads()
        if versions(grads) == self.recorded_versions:
            self.emit(step)  # unchanged: post = pre
        else:
            self.emit(step, post=self.params.l2(grads, self.inverse_scale()))

    def record_clip(self, step: int, post_norm: torch.Tensor | None) -> None:
        """Queue the post-clip global L2 norm of a clipping done with measured norms (no pass over g).

        ``None`` (an L∞ clip): the L2 norm after it is read when the optimizer steps.
        """
        if post_norm is None:
            return
        self._measured = step
        self.recorded_versions = versions(self.params.grads())
        if self.mode is not False:
            self.emit(step, post_norm=post_norm.reshape(1))

    def report(self, step: int, total: torch.Tensor) -> None:
        """Note a clip reported by ``Monitor.step(loss, clip=total)``.

        ``total`` is the norm ``clip_grad_norm_`` returned (before clipping); the record just
        read the clipped gradient, so its global norm is the post-clip one.
        """
        inv = self.inverse_scale()
        if self.on_clip is not None:
            self.on_clip(inv is not None, True)
        self._measured = step
        self.recorded_versions = versions(self.params.grads())
        if self.mode is not False:
            pre = total if inv is None else total.double() * inv.to(total.device)  # the record is unscaled
            self.emit(step, pre_norm=pre.reshape(1))

    def before_optimizer_step(self) -> None:
        loop = self.loop
        if (
            self.mode is not False
            and loop.optimizer_first is False
            and loop.last_record is not None
            and not loop.stepped_since_record()
            and self._measured != loop.last_record
        ):
            self._post(loop.last_record)  # the gradient the optimizer is about to consume

    def after_optimizer_step(self, closure_record: int | None) -> None:
        if closure_record is not None and self.mode is not False:
            # step() ran inside optimizer.step (a closure), before the clipping that followed
            # it: the optimizer leaves .grad as it consumed it, so read the post-clip norm now
            self._post(closure_record)

    def _reading(self, grads: GradNorms, norm_type: float) -> torch.Tensor | None:
        """The unscaled per-parameter norms this step's record read, if they are those of ``.grad`` now."""
        loop, params = self.loop, self.params
        row = grads.last_row
        if (
            row is None
            or not loop.last_call_recorded
            or loop.stepped_since_record()
            or params.sharded is not None
            or norm_type not in (2.0, math.inf)
            or (norm_type == math.inf and not grads.has_max(row))
        ):
            return None
        now = versions(params.grads())
        if any(v == (-1, -1) for v in now):
            return None  # torch leaves parameters without a gradient out of the norm
        if now != self.recorded_versions:
            # scaler.unscale_ since the reading (one in-place multiply by 1/scale of each
            # gradient) leaves the recorded, already unscaled, norms exact (scales are powers of 2)
            unscaled_since = self.scaled_at_reading and self.inverse_scale() is None
            bumped = [(i, v + 1) for i, v in self.recorded_versions]
            if not (unscaled_since and now == bumped):
                return None
        P = len(params)
        return row[:P] if norm_type == 2.0 else row[P:]

    def total_norm(self, grads: GradNorms, norm_type: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(norm of ``.grad`` as it is now, the same unscaled) from the recorded reading, or None."""
        reading = self._reading(grads, norm_type)
        if reading is None:
            return None
        unscaled_total = torch.linalg.vector_norm(reading, norm_type)
        inv = self.inverse_scale()
        return (
            unscaled_total if inv is None else (unscaled_total.double() / inv).to(unscaled_total.dtype)
        ), unscaled_total

    def clip_grad_norm_(
        self, grads: GradNorms, max_norm: float, norm_type: float, error_if_nonfinite: bool, foreach: bool | None
    ) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the monitored parameters, from the recorded norms."""
        norm_type = float(norm_type)
        tensors = [p for p in self.params.tensors if p.grad is not None]
        inv = self.inverse_scale()  # not None: .grad is still scaled, and so is torch's norm
        if self.on_clip is not None:
            self.on_clip(inv is not None, False)
        measured = self.total_norm(grads, norm_type)
        total: torch.Tensor
        unscaled_total: torch.Tensor
        if measured is not None:
            total, unscaled_total = measured
        else:
            total = torch.nn.utils.get_total_norm(
                [g for p in tensors if (g := p.grad) is not None], norm_type, False, foreach
            )
            unscaled_total = total if inv is None else (total.double() * inv).to(total.dtype)
        if error_if_nonfinite and bool(torch.logical_or(total.isnan(), total.isinf())):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot "
                "be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
                "`error_if_nonfinite=False`"
            )
        torch.nn.utils.clip_grads_with_norm_(tensors, max_norm, total, foreach)
        if self.loop.last_call_recorded and self.loop.last_record is not None:
            # clip_grads_with_norm_ multiplies by min(max_norm / (total + 1e-6), 1): so does the record
            coef = torch.clamp(max_norm / (total.double() + 1e-6), max=1.0)
            self.record_clip(self.loop.last_record, unscaled_total.double() * coef if norm_type == 2.0 else None)
        return total

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        if not entries:
            return
        rows = store.rows_of(s for s, _ in entries)
        recorded = store.column("global_grad_norm")[rows]
        # a reported clip (step(clip=total)) carries the pre-clip norm and the record is post-clip
        pre = np.array(
            [float(f["pre_norm"][0]) if "pre_norm" in f else p for (_, f), p in zip(entries, recorded, strict=True)]
        )
        post = np.array(
            [
                float(global_l2(f["post"])) if "post" in f else float(f["post_norm"][0]) if "post_norm" in f else p
                for (_, f), p in zip(entries, recorded, strict=True)
            ]
        )
        store.set("clip_checked", rows, True)
        with np.errstate(invalid="ignore", over="ignore"):
            changed = ~((post == pre) | (np.abs(post - pre) <= CLIP_RTOL * np.maximum(np.abs(pre), 1e-30)))
        keep = np.ones_like(changed) if self.mode else changed
        store.set("clip_pre", rows[keep], pre[keep])
        store.set("clip_post", rows[keep], post[keep])
