"""Gradient norms and max |g| per layer, the global norm, and the loss."""

from __future__ import annotations

import math

import numpy as np
import torch

from gradwatch.monitor.collectors.base import Batch, Collector, Params, StepContext, global_l2, unscaled
from gradwatch.monitor.store import Store

__all__ = ["GradNorms", "Loss"]


class GradNorms(Collector):
    """‖g‖₂ and max |g| of every layer, and the global ‖g‖₂, at every recorded step.

    Cost per recorded step: reads every gradient once for the L2 norms
    (``torch._foreach_norm``: one fused kernel per device and dtype) and, with
    ``grad_max``, once more for max |g| (CUDA: one fused ``ord=inf`` kernel; CPU:
    one ``aminmax`` per parameter, because the ``ord=inf`` path allocates |g| there
    and is ~30× slower). Host syncs: 0. At sync: per-parameter rows are grouped into layers
    and the global norm in numpy. Under FSDP2 the per-parameter values are all-reduced
    (see :mod:`gradwatch.monitor.distributed`).

    Args:
        params: the monitored parameters.
        grad_max: also measure max |g|.
    """

    name = "grads"

    def __init__(self, params: Params, *, grad_max: bool = True) -> None:
        super().__init__()
        self.params = params
        self.grad_max = grad_max
        self.staged: torch.Tensor | None = None  # a reading taken by Monitor.read_grads()
        self.last_row: torch.Tensor | None = None  # this step's row, for the non-finite check and clipping

    def read(self, inv_scale: torch.Tensor | None) -> torch.Tensor:
        """Per parameter: [‖g‖₂ (P), max |g| (P)] (or just ‖g‖₂) in one small device tensor."""
        params = self.params
        grads = params.grads()
        with torch.no_grad():
            local = params.locals(grads)
            l2 = params.stack(torch._foreach_norm(local))
            if params.sharded is not None:
                l2 = params.sharded.l2(l2)
            if not self.grad_max:
                return unscaled(l2, inv_scale)
            if params.device.type == "cuda" and params.uniform:
                top = params.stack(torch._foreach_norm(local, ord=math.inf))
            else:
                zero = params.zero  # an empty local shard has no max: 0 is neutral for max |g|
                lo_hi = [torch.aminmax(g) if g.numel() else (zero, zero) for g in local]  # one pass each
                lo, hi = params.stack([m for m, _ in lo_hi]), params.stack([m for _, m in lo_hi])
                # NaN must win, as it does in max |g|: torch.maximum propagates NaN.
                top = torch.maximum(hi, lo.neg())
            if params.sharded is not None:
                top = params.sharded.amax(top)
            return unscaled(torch.cat([l2, top]), inv_scale)

    def collect(self, ctx: StepContext) -> None:
        row, self.staged = (self.staged if self.staged is not None else self.read(ctx.inv_scale)), None
        self.last_row = row
        self.emit(ctx.step, row=row)

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        if not entries:
            return
        P = len(self.params)
        R = np.stack([f["row"] for _, f in entries])
        rows = store.rows_of(s for s, _ in entries)
        store.set_layers("grad_norm", rows, self.params.per_layer_l2(R[:, :P]))
        store.set("global_grad_norm", rows, global_l2(R[:, :P]))
        if self.grad_max:
            store.set_layers("grad_max", rows, self.params.per_layer_max(R[:, P:]))

    def per_param_max(self, host_row: np.ndarray) -> np.ndarray:
        """max |g| per parameter from a host row (the L2 norms without grad_max: exact for NaN)."""
        P = len(self.params)
        return host_row[P:] if self.grad_max else host_row[:P]


class Loss(Collector):
    """The loss passed to ``Monitor.step(loss)``: no pass over anything, host syncs = 0."""

    name = "loss"

    def collect(self, ctx: StepContext) -> None:
        if ctx.loss is not None:
            self.emit(ctx.step, loss=ctx.loss)

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        if entries:
            store.set("loss", store.rows_of(s for s, _ in entries), [float(f["loss"][0]) for _, f in entries])
