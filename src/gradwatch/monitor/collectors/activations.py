"""Activation statistics: saturated or dead fraction and std of each activation module's output."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from gradwatch.monitor.collectors.base import Batch, Collector, StepContext, eager
from gradwatch.monitor.store import Store

__all__ = ["Activations", "activation_kind"]

_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid)
_RECTIFIERS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
)
_SIGMOID_EDGE = (1 - math.sqrt(0.99)) / 2
_TANH_EDGE = math.sqrt(0.99)


def activation_kind(module: nn.Module) -> str | None:
    """ "saturation", "dead", "none" (only the std is meaningful) or None (not an activation)."""
    if isinstance(module, _SATURATING):
        return "saturation"
    if isinstance(module, _RECTIFIERS):
        return "dead"
    if isinstance(module, nn.RNN):
        return "saturation" if module.nonlinearity == "tanh" else "dead"
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return "none"
    return None


def _count_beyond(y: torch.Tensor, center: float, half_width: float, buf: torch.Tensor) -> torch.Tensor:
    """[Σ sign(|y − c| − half_width), Σ(y − c), Σ(y − c)²] in 6 passes over a reused float buffer.

    The first sum is (#beyond − #within): the host turns it into #{|y − c| > half_width}
    = (n + sum) / 2 (a value exactly at the edge counts one half; edges are chosen off the
    values an activation takes). Comparison kernels that produce bool masks are several
    times slower on CPU than in-place float arithmetic, and a persistent buffer avoids fresh
    allocations. The sums are taken around the centre c, which keeps the variance free of
    cancellation.
    """
    torch.sub(y, center, out=buf)
    s1, s2 = buf.sum(), torch.linalg.vector_norm(buf) ** 2
    signs = buf.abs_().sub_(half_width).sign_().sum()
    return torch.stack([signs, s1, s2])


def raw_sums(module: nn.Module, kind: str, y: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Raw sums for one activation output: ([2·count − denominator, Σy, Σy²] on its device, denominator, n).

    The count is carried as 2·count − denominator, the form :func:`_count_beyond` yields.

    Saturated: the derivative is below 1 % of its maximum. Sigmoid: σ' = y(1 − y) < 1/400
    ⇔ |y − ½| > ½ − a with a = (1 − √0.99)/2; tanh (and tanh RNN outputs): 1 − y² < 0.01
    ⇔ |y| > √0.99; softsign: (1 − |y|)² < 0.01 ⇔ |y| > 0.9; hardtanh: at its limits.
    Dead (ReLU family): the unit's output is ≤ 0 for every sample of the batch.
    """
    y = y.detach()
    n = y.numel()
    denom = n
    if kind == "saturation":
        if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
            return _count_beyond(y, 0.5, 0.5 - _SIGMOID_EDGE, buf).float(), denom, n
        if isinstance(module, nn.Softsign):
            return _count_beyond(y, 0.0, 0.9, buf).float(), denom, n
        if isinstance(module, nn.Hardtanh):
            mid, half = (module.max_val + module.min_val) / 2, (module.max_val - module.min_val) / 2
            return _count_beyond(y, mid, half * (1 - 1e-6), buf).float(), denom, n
        return _count_beyond(y, 0.0, _TANH_EDGE, buf).float(), denom, n
    if kind == "dead":
        batch_dim = 1 if isinstance(module, nn.RNNBase) and not module.batch_first and y.dim() == 3 else 0
        if y.dim() <= 1:
            count = (y <= 0).sum()
        else:
            per_unit_max = y.movedim(batch_dim, 0).reshape(y.shape[batch_dim], -1).amax(dim=0)
            count = (per_unit_max <= 0).sum()
            denom = per_unit_max.numel()
    else:
        count = torch.full((), math.nan, device=y.device)
    signed = 2 * count.float() - denom
    return torch.stack([signed, y.sum().float(), torch.linalg.vector_norm(y).float() ** 2]), denom, n


def finish(signed: float, total: float, sq: float, denom: int, n: int) -> tuple[float, float]:
    """(fraction, std) from the raw sums [2·count − denom, Σ(y − c), Σ(y − c)²] (any centre c)."""
    var = (sq - total * total / n) / (n - 1) if n > 1 else 0.0
    return (denom + signed) / 2 / denom, math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan


class Activations(Collector):
    """Saturated (sigmoid/tanh family) or dead (ReLU family) fraction and std of each activation output.

    Cost per measured step (every ``every`` recorded steps): a forward hook per activation
    module, registered only while due; per output ~6 in-place passes over one persistent
    float32 scratch buffer and 3 reductions (no boolean masks: several times slower on CPU).
    Host syncs: 0; the fraction and std are finished on the host. Forwards under
    ``torch.no_grad()`` (evaluation) are not measured; several forwards in one step
    (accumulation) pool their sums.

    Args:
        modules: (qualified name, module, kind) of the activation modules.
        every: period in recorded steps.
    """

    name = "activations"

    def __init__(self, modules: list[tuple[str, nn.Module, str]], every: int) -> None:
        super().__init__()
        self.modules = modules
        self.every = every
        self.kinds = {name: kind for name, _, kind in modules}
        self._handles: list[RemovableHandle] = []
        self._calls: dict[str, list[tuple[torch.Tensor, int, int]]] = {}
        self._scratch: dict[str, torch.Tensor] = {}
        self._sizes: list[tuple[str, int, int]] = []  # (name, denominator, n) of each emitted entry, in order

    def arm(self, due: bool) -> None:
        if due and not self._handles:
            self._handles = [m.register_forward_hook(self._hook(name, kind)) for name, m, kind in self.modules]
        elif not due and self._handles:
            # kept registered while due step after step: re-registering costs more than the hook
            self.close()

    def _hook(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled():
                return  # evaluation passes do not describe training
            y = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(y, PackedSequence):
                y = y.data
            if torch.is_tensor(y) and y.numel() > 0:
                buf = self._scratch.get(name)
                if buf is None or buf.shape != y.shape or buf.device != y.device:
                    buf = self._scratch[name] = torch.empty(y.shape, dtype=torch.float32, device=y.device)
                self._calls.setdefault(name, []).append(raw_sums(module, kind, y, buf))

        return eager(hook)

    def collect(self, ctx: StepContext) -> None:
        for name, calls in self._calls.items():
            # several forwards in one step (accumulation): pool the raw sums
            raw = calls[0][0] if len(calls) == 1 else torch.stack([c[0] for c in calls]).sum(dim=0)
            self.emit(ctx.step, **{name: raw})
            self._sizes.append((name, sum(c[1] for c in calls), sum(c[2] for c in calls)))
        self._calls.clear()

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        sizes, self._sizes = self._sizes[: len(entries)], self._sizes[len(entries) :]
        rows = store.rows_of(s for s, _ in entries)
        for (_, fields), (name, denom, n), row in zip(entries, sizes, rows, strict=True):
            count, total, sq = (float(v) for v in fields[name])
            store.add_activation(name, self.kinds[name], int(row), *finish(count, total, sq, denom, n))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
