"""The AMP GradScaler: the loss scale in force, steps it skipped, and whether gradients are scaled now."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, Shadows, StepContext
from gradwatch.monitor.store import Store

__all__ = ["AmpScaler"]


class AmpScaler(Collector):
    """Loss scale and skipped steps of a ``torch.amp.GradScaler``; 1/scale for the other collectors.

    Cost per recorded step: a copy of the 1-element scale tensor; per ``scaler.update()``
    one ``stack`` of the found-inf flags. No pass over any gradient; host syncs: 0.

    It shadows ``scaler.update`` and ``scaler.scale`` with instance attributes (removed at
    :meth:`close`): ``update`` tells which step the scaler skipped and that the gradients are
    now unscaled; ``scale`` (called before each backward) that they are scaled again.

    Args:
        scaler: the GradScaler.
        optimizer: the optimizer it steps (its state is kept per optimizer).
        params: the monitored parameters (for their device).
        loop: the loop's state (shared with the monitor).
    """

    name = "amp"

    def __init__(
        self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer, params: Params, loop: Loop
    ) -> None:
        super().__init__()
        self.scaler, self.optimizer, self.params, self.loop = scaler, optimizer, params, loop
        self.updated = False  # scaler.update() ran since the last scaler.scale(): gradients unscaled
        self.call_since_update = False  # a step() call in this scaler iteration (scale() … update())
        self._skip_next: torch.Tensor | None = None
        self._skip_now: torch.Tensor | None = None
        self._scale_used: torch.Tensor | None = None
        self._shadows = Shadows()
        self._shadows.add(scaler, "update", self._before_update)
        self._shadows.add(scaler, "scale", self._before_scale)

    def _before_update(self, *args: Any, **kwargs: Any) -> None:
        self._on_update()
        if self.scaler._scale is not None:  # the scale this iteration's gradients were computed with
            self._scale_used = self.scaler._scale.detach().reshape(1).clone()

    def _before_scale(self, *args: Any, **kwargs: Any) -> None:
        # a new iteration: its gradients will be scaled, and no step() call belongs to it yet
        self.updated = False
        self.call_since_update = False

    def _stage(self) -> Any:
        from torch.amp.grad_scaler import OptState

        state = self.scaler._per_optimizer_states.get(id(self.optimizer))
        return OptState.READY if state is None else state["stage"]

    def inverse_scale(self) -> torch.Tensor | None:
        """1/scale while the gradients are still scaled, else None.

        The gradients are scaled from backward until ``unscale_`` (explicit, or inside
        ``scaler.step``); after ``scaler.update`` they stay unscaled until the next backward.
        """
        from torch.amp.grad_scaler import OptState

        scaler = self.scaler
        if not scaler.is_enabled() or scaler._scale is None:
            return None
        if self._stage() is not OptState.READY or self.updated:
            return None
        return scaler._scale.double().reciprocal().to(self.params.device)

    def _on_update(self) -> None:
        state = self.scaler._per_optimizer_states.get(id(self.optimizer))
        found = list((state or {}).get("found_inf_per_device", {}).values())
        self.updated = True
        if not found:
            return  # scaler.step(optimizer) was not called this iteration
        flag = torch.stack([f.reshape(()).to(self.params.device, torch.float32) for f in found]).sum()
        if self.call_since_update:  # mon.step() ran before scaler.update() in this iteration
            if self.loop.last_call_recorded and self.loop.last_record is not None:
                self.emit(self.loop.last_record, skip=flag.reshape(1))
        else:  # mon.step() comes after scaler.update(): the flag is for the next call
            self._skip_next = flag
        self.call_since_update = False

    def skip_pending(self) -> bool:
        """Whether a scaler.update() ran since the last record (a skipped step looks like accumulation)."""
        return self._skip_next is not None or not self.call_since_update

    def begin(self) -> None:
        self._skip_now, self._skip_next = self._skip_next, None
        self.call_since_update = True

    def collect(self, ctx: StepContext) -> None:
        if self._skip_now is not None:
            self.emit(ctx.step, skip=self._skip_now.reshape(1))
        if self.updated and self._scale_used is not None:
            self.emit(ctx.step, scale=self._scale_used)
        elif self.scaler.is_enabled() and self.scaler._scale is not None:
            self.emit(ctx.step, scale=self.scaler._scale.detach().reshape(1).clone())

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        for key in ("scale", "skip"):
            mine = [(s, float(f[key][0])) for s, f in entries if key in f]
            if mine:
                rows = store.rows_of(s for s, _ in mine)
                vals = np.array([v for _, v in mine])
                if key == "scale":
                    store.set("loss_scale", rows, vals)
                else:
                    store.set("skipped", rows[vals > 0], True)

    def close(self) -> None:
        self._shadows.remove()
