"""Parameter norms ‖θ‖ and update/weight ratios ‖Δθ‖/‖θ‖ per layer."""

from __future__ import annotations

import numpy as np
import torch

from gradwatch.monitor import distributed
from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, StepContext
from gradwatch.monitor.store import Store

__all__ = ["Weights"]


class Weights(Collector):
    """‖θ‖ of each layer and ‖Δθ‖/‖θ‖ of the update that consumed the recorded gradient.

    Cost per measured step (every ``every`` recorded steps): one fused copy of θ into
    persistent buffers (``torch._foreach_copy_``, no allocation) and one
    ``torch._foreach_norm``; later one ``_foreach_sub_`` (the buffers become θ_old − θ_new)
    and one ``_foreach_norm``. With an optimizer, in its step pre- and post-hooks; without
    one (manual loops such as ``p.data.add_(p.grad, alpha=-lr)``), θ is snapshot when the
    step is recorded and the update is the change until the next ``Monitor.step()`` call —
    so call ``mon.step()`` before the update; the last record's ratio stays unknown (NaN).
    Host syncs: 0.

    ‖θ‖ is that of the parameters at which the gradient was computed (θ_old), whichever
    order the loop calls ``mon.step()`` and ``optimizer.step()`` in.

    Args:
        params: the monitored parameters.
        loop: the loop's state (shared with the monitor).
        every: period in recorded steps.
        has_optimizer: whether the optimizer's step hooks call this collector.
    """

    name = "weights"

    def __init__(self, params: Params, loop: Loop, every: int, *, has_optimizer: bool) -> None:
        super().__init__()
        self.params, self.loop, self.every = params, loop, every
        self.has_optimizer = has_optimizer
        self._prev: list[torch.Tensor] | None = None  # persistent buffers: θ_old, then θ_old − θ_new
        self._prev_norms: torch.Tensor | None = None
        self._snapshot_taken = False
        self._awaiting: int | None = None  # a record whose optimizer step has not run yet
        self._orphan: torch.Tensor | None = None  # an update measured before its record (optimizer-first loops)

    def _live(self) -> list[torch.Tensor]:
        return [distributed.local(p.detach()) for p in self.params.tensors]

    def begin(self) -> None:
        if self._awaiting is None:
            return
        if not self.has_optimizer:  # the update since the snapshot is the manual loop's step
            self._emit_update(self._awaiting)
            self._awaiting = None
        elif not self.loop.stepped_since_record():
            self._awaiting = None  # that optimizer step never ran (e.g. skipped by a GradScaler)

    def collect(self, ctx: StepContext) -> None:
        loop = self.loop
        if not loop.is_due(ctx.step, self.every):
            return
        if not self.has_optimizer:
            self._snapshot()
            self._awaiting = ctx.step
            if self._prev_norms is not None:  # ‖θ‖ now; the update ratio comes with the next call
                self.emit(ctx.step, param=self._prev_norms)
        elif loop.in_opt_step:
            pass  # a closure record: its update comes with the optimizer's post-hook
        elif self._orphan is not None:
            self.emit(ctx.step, both=self._orphan)
            self._orphan = None
        elif loop.optimizer_first is not True:
            self._awaiting = ctx.step
        # (optimizer-first loops with no update to attribute: that optimizer step was skipped)

    def end(self) -> None:
        if self.loop.optimizer_first is False:
            self._orphan = None

    def before_optimizer_step(self) -> None:
        # Snapshot θ only when this optimizer step belongs to a measured step: either step()
        # was already called for it, or (optimizer-first loops, and closure loops such as
        # Lightning's, where step() runs inside optimizer.step) it is about to be.
        loop = self.loop
        if loop.optimizer_first:
            if not loop.is_due(loop.calls, self.every):
                return
        elif self._awaiting is None:
            return
        self._snapshot()

    def _snapshot(self) -> None:
        with torch.no_grad():
            live = self._live()
            if self._prev is None:
                self._prev = [p.clone() for p in live]
            else:
                torch._foreach_copy_(self._prev, live)
            self._prev_norms = self.params.l2(live)
        self._snapshot_taken = True

    def _update(self) -> torch.Tensor | None:
        """[‖θ_old‖ (P), ‖θ_old − θ_now‖ (P)] since the snapshot, or None without one."""
        if not self._snapshot_taken or self._prev is None or self._prev_norms is None:
            return None
        self._snapshot_taken = False
        with torch.no_grad():
            torch._foreach_sub_(self._prev, self._live())  # now θ_old − θ_new
            return torch.cat([self._prev_norms, self.params.l2(self._prev)])

    def _emit_update(self, step: int) -> None:
        both = self._update()
        if both is not None:
            self.emit(step, both=both)

    def after_optimizer_step(self, closure_record: int | None) -> None:
        both = self._update()
        if both is None:
            return
        if closure_record is not None:
            self.emit(closure_record, both=both)
        elif self._awaiting is not None:
            self.emit(self._awaiting, both=both)
            self._awaiting = None
        else:
            self._orphan = both

    def close(self) -> None:
        self._awaiting = None  # no later step: the last record's update stays unknown

    @property
    def awaiting(self) -> int | None:
        """A record still waiting for its optimizer step's update (sinks hold it back)."""
        return self._awaiting

    def finish(self, batch: Batch, store: Store) -> None:
        P = len(self.params)
        entries = batch.get(self.name, [])
        for key in ("param", "both"):
            mine = [(s, f[key]) for s, f in entries if key in f]
            if not mine:
                continue
            R = np.stack([v for _, v in mine])
            rows = store.rows_of(s for s, _ in mine)
            theta = self.params.per_layer_l2(R[:, :P])
            store.set_layers("param_norm", rows, theta)
            if key == "both":
                with np.errstate(divide="ignore", invalid="ignore"):
                    store.set_layers("update_ratio", rows, self.params.per_layer_l2(R[:, P:]) / theta)
