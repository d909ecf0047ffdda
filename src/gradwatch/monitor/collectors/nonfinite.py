"""Non-finite origin: the first NaN/Inf, and where it came from."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params
from gradwatch.monitor.collectors.grads import GradNorms
from gradwatch.monitor.nonfinite import NonFinite, NonFiniteTracer
from gradwatch.monitor.store import Store

__all__ = ["NonFiniteOrigin"]


class NonFiniteOrigin(Collector):
    """The first NaN/Inf of the run: step, module, tensor (and parameter).

    Cost: none of its own for parameter gradients (it reads the per-parameter max |g| — or
    the L2 norms without ``grad_max`` — that :class:`GradNorms` moves to the host anyway).
    With ``trace=True``, a forward pre-hook and forward hook on every leaf module and a
    tensor hook per output and input: per tensor one ``amax`` and one ``amin`` (cheaper than
    a boolean ``isfinite`` mask on CPU). Host syncs: 0, unless :meth:`finite_now` is asked
    (``on_nonfinite="warn"``/``"raise"``: one boolean per step).

    Args:
        grads: the gradient collector whose rows it reads.
        params: the monitored parameters.
        loop: the loop's state (for the step each flag belongs to).
        model: the model (its leaf modules are traced).
        trace: also check forward outputs and gradients w.r.t. module outputs and inputs.
    """

    name = "nonfinite"

    def __init__(self, grads: GradNorms, params: Params, loop: Loop, model: nn.Module, *, trace: bool) -> None:
        super().__init__()
        self.grads, self.params = grads, params
        self.tracer: NonFiniteTracer | None = None
        if trace:
            leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
            self.tracer = NonFiniteTracer(leaves, lambda: loop.calls)
            self.tracer.attach()
        self._flags: list[tuple[int, int, str, str]] = []

    def take(self) -> list[tuple[int, dict[str, torch.Tensor]]]:
        flags = self.tracer.take() if self.tracer is not None else []
        self._flags += [f[:4] for f in flags]
        return [(f[0], {"span": f[4].reshape(1)}) for f in flags]

    def finite_now(self) -> bool:
        """Whether this step's gradients (and traced tensors) are finite: one host sync."""
        row = self.grads.last_row
        finite = torch.isfinite(row).all() if row is not None else torch.ones((), dtype=torch.bool)
        if self.tracer is not None:
            for *_, span in self.tracer.flags:
                finite = finite & torch.isfinite(span.to(finite.device))
        return bool(finite)  # one boolean sync per step: the price of "warn" and "raise"

    def finish(self, batch: Batch, store: Store) -> None:
        spans = batch.get(self.name, [])
        flags, self._flags = self._flags[: len(spans)], self._flags[len(spans) :]
        if store.nonfinite is not None:
            return
        candidates: list[tuple[int, float, NonFinite]] = []
        for (step, seq, name, kind), (_, f) in zip(flags, spans, strict=True):
            if not math.isfinite(float(f["span"][0])):
                candidates.append((step, seq, NonFinite(step, name, kind)))
        for step, f in batch.get(self.grads.name, []):
            pmax = self.grads.per_param_max(f["row"])
            bad = np.flatnonzero(~np.isfinite(pmax))
            if bad.size:
                j = int(bad[0])
                value = "nan" if math.isnan(pmax[j]) else "inf"
                layer = self.params.layers[int(self.params.owner[j])].name
                nf = NonFinite(step, layer, "parameter gradient", self.params.names[j], value)
                # parameter gradients come after every forward/backward flag of their step
                candidates.append((step, math.inf, nf))
                break  # later steps cannot come first
        if candidates:
            store.set_nonfinite(min(candidates, key=lambda c: (c[0], c[1]))[2])

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.detach()
