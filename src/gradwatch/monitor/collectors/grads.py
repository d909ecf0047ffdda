"""Gradient norms and max |g| per layer, the global norm, and the loss."""

from __future__ import annotations

import math

import numpy as np
import torch

from gradwatch.monitor.collectors.base import Batch, Collector, Params, StepContext, global_l2, unscaled
from gradwatch.monitor.store import Store

__all__ = ["GradNorms", "Loss"]


class GradNorms(Collector):
    """‖g‖₂ of every layer and the global ‖g‖₂ at every recorded step; max |g| every ``max_every``-th (CPU).

    Cost per recorded step: reads every gradient once for the L2 norms
    (``torch._foreach_norm``: one fused kernel per device and dtype) and, on max |g| steps,
    once more (CUDA: one fused ``ord=inf`` kernel; CPU: one ``aminmax`` per parameter,
    because the ``ord=inf`` path allocates |g| there and is ~30× slower; on an 8×256 MLP the
    max pass costs as much as the norms and all the bookkeeping together, hence its period).
    Host syncs: 0. At sync: per-parameter rows are grouped into layers and the global norm
    in numpy. Under FSDP2 the per-parameter values are all-reduced (see
    :mod:`gradwatch.monitor.distributed`).

    Args:
        params: the monitored parameters.
        max_every: period of max |g| in recorded steps (1: every one; None: never).
    """

    name = "grads"

    def __init__(self, params: Params, *, max_every: int | None = 10) -> None:
        super().__init__()
        self.params = params
        self.max_every = max_every
        self._readings = 0  # recorded readings so far: the max |g| period counts them
        self.staged: torch.Tensor | None = None  # a reading taken by Monitor.read_grads()
        self.last_row: torch.Tensor | None = None  # this step's row, for the non-finite check and clipping

    def read(self, inv_scale: torch.Tensor | None) -> torch.Tensor:
        """Per parameter: [‖g‖₂ (P), max |g| (P)] on max |g| steps, else [‖g‖₂ (P)]: one small device tensor."""
        params = self.params
        grads = params.grads()
        with torch.no_grad():
            local = params.locals(grads)
            l2 = params.stack(params.norms(local))
            if params.sharded is not None:
                l2 = params.sharded.l2(l2)
            if not self._max_due(l2):
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
            return unscaled(torch.cat([l2, top.to(l2.dtype)]), inv_scale)

    def _max_due(self, l2: torch.Tensor) -> bool:
        """Whether this reading measures max |g|: on its period, on CUDA always, or when a norm is not finite.

        On CUDA the max is one fused kernel, so it is read at every step. On a CPU it costs
        a full pass, hence the period; but a float32 L2 norm overflows to Inf above ~1.8e19
        while every element is finite, so a non-finite norm is settled by the max of that
        very step (a CPU tensor is host memory: reading it is no device sync).
        """
        if self.max_every is None:
            return False
        if self._readings % self.max_every == 0 or self.params.device.type == "cuda":
            return True
        return self.params.device.type == "cpu" and not bool(np.isfinite(l2.float().numpy()).all())

    def has_max(self, row: torch.Tensor | np.ndarray) -> bool:
        """Whether a reading (device or host row) holds max |g| after the L2 norms."""
        return int(row.shape[0]) == 2 * len(self.params)

    def collect(self, ctx: StepContext) -> None:
        row, self.staged = (self.staged if self.staged is not None else self.read(ctx.inv_scale)), None
        self._readings += 1
        self.last_row = row
        self.emit(ctx.step, row=row)

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        if not entries:
            return
        P = len(self.params)
        R = np.stack([f["row"][:P] for _, f in entries])
        rows = store.rows_of(s for s, _ in entries)
        store.set_layers("grad_norm", rows, self.params.per_layer_l2(R))
        store.set("global_grad_norm", rows, global_l2(R))
        with_max = [(s, f["row"][P:]) for s, f in entries if self.has_max(f["row"])]
        if with_max:
            max_rows = store.rows_of(s for s, _ in with_max)
            store.set_layers("grad_max", max_rows, self.params.per_layer_max(np.stack([m for _, m in with_max])))

    def per_param_max(self, host_row: np.ndarray) -> np.ndarray:
        """max |g| per parameter from a host row (the L2 norms on other steps: exact for NaN)."""
        P = len(self.params)
        return host_row[P:] if self.has_max(host_row) else host_row[:P]


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
