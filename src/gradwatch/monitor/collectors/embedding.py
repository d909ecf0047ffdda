"""Embedding rows: the fraction of an embedding's rows that received gradient in a step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gradwatch.monitor import distributed
from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, StepContext
from gradwatch.monitor.store import Store

__all__ = ["EmbeddingRows"]


class EmbeddingRows(Collector):
    """Fraction of each embedding weight's rows whose gradient is non-zero (the tokens the batch used).

    A language model's batch touches a few hundred of its tens of thousands of rows; the RMS
    gradient over all rows is diluted by the untouched ones (``LayerHistory.grad_rms`` divides
    by the touched rows instead). Cost per measured step (every ``every`` recorded steps): one
    row-wise norm over each embedding gradient (``torch.linalg.vector_norm(g, dim=1)``: one
    pass, a (rows,) buffer) and a ``count_nonzero``. Host syncs: 0. Sparse gradients read NaN.

    Args:
        params: the monitored parameters.
        weights: indices (into ``params.tensors``) of the embeddings' weight matrices.
        loop: the loop's state.
        every: period in recorded steps.
    """

    name = "embedding_rows"

    def __init__(self, params: Params, weights: Sequence[int], loop: Loop, every: int) -> None:
        super().__init__()
        self.params, self.weights, self.loop, self.every = params, list(weights), loop, every

    def collect(self, ctx: StepContext) -> None:
        if not self.loop.is_due(ctx.step, self.every):
            return
        fractions = []
        with torch.no_grad():
            for i in self.weights:
                g = self.params.tensors[i].grad
                if g is None or g.is_sparse or g.dim() != 2 or g.shape[0] == 0:
                    fractions.append(torch.full((), float("nan"), device=self.params.device))
                    continue
                g = distributed.local(g)
                touched = torch.count_nonzero(torch.linalg.vector_norm(g, dim=1))
                fractions.append((touched.double() / g.shape[0]).to(self.params.device))
        self.emit(ctx.step, fraction=torch.stack(fractions))

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        if not entries:
            return
        L = len(self.params.layers)
        values = np.full((len(entries), L), np.nan)
        layer_of = [int(self.params.owner[i]) for i in self.weights]
        values[:, layer_of] = np.stack([f["fraction"] for _, f in entries])
        rows = store.rows_of(s for s, _ in entries)
        store.set_layers("row_fraction", rows, values[:, self.params.depth_order])
