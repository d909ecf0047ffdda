"""Lyapunov exponents λ_1..λ_k of each recurrent module, along the trajectory of its last input."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradwatch import _lyapunov
from gradwatch.errors import ConfigError, GradwatchWarning
from gradwatch.monitor.collectors.base import Batch, Collector, StepContext
from gradwatch.monitor.store import Store

__all__ = ["SAMPLES", "Lyapunov", "recurrent_modules"]

SAMPLES = 4
"""Sequences of the batch measured (the first ones): the exponents are averaged over them."""

_FUSED = (nn.RNN, nn.GRU, nn.LSTM)


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The fused recurrent modules (``nn.RNN``/``nn.GRU``/``nn.LSTM``, unidirectional) of ``model``, by name."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _FUSED) and not m.bidirectional and m.weight_hh_l0.dtype in (torch.float32, torch.float64)
    ]


class Lyapunov(Collector):
    """λ_1 ≥ … ≥ λ_k (nats per time step) of every fused recurrent module, every ``every`` recorded steps.

    The module's input and initial state come from the training forward itself: on a due
    step a forward hook keeps a reference to the (detached) input of the module's last call;
    at ``mon.step()`` the exponents are computed from it with the module's current weights,
    under ``torch.no_grad``, by the QR method of :func:`gradwatch._lyapunov.qr_lyapunov`
    (random orthonormal start, the first T/10 steps not counted). State: all layers' h (and
    for an LSTM, then all layers' c) concatenated; see :mod:`gradwatch._lyapunov`.

    Cost per measured step and module: k forward-mode evaluations of the cell and one
    (n × k) QR per time step, on the first :data:`SAMPLES` sequences of the batch; about
    k/2 forward passes of those sequences (docs/benchmarks.md: "Lyapunov collector"). No
    backward, no effect on training. Host syncs: 0 (the exponents stay on the device until
    the monitor's sync).

    Hand-written cells called once per time step are not measured here (a forward hook sees
    one step, not the trajectory); use :func:`gradwatch.remedies.flossing.lyapunov_exponents`.

    Args:
        modules: (name, module) of the fused recurrent modules to measure.
        every: period in recorded steps.
        k: exponents per module (capped at the module's state size).
    """

    name = "lyapunov"

    def __init__(self, modules: list[tuple[str, nn.Module]], every: int, k: int) -> None:
        super().__init__()
        self.modules, self.every, self.k = modules, every, k
        self._handles: list[RemovableHandle] = []
        self._seen: dict[str, tuple[torch.Tensor, Any]] = {}
        self._warned = False

    def arm(self, due: bool) -> None:
        self.close()
        if due:
            for name, module in self.modules:
                self._handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            x = args[0] if args else kwargs.get("input")
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            if not torch.is_tensor(x):  # a PackedSequence is not measured
                return
            h0: Any = None
            if torch.is_tensor(hx):
                h0 = hx.detach()
            elif isinstance(hx, tuple):
                h0 = tuple(t.detach() for t in hx)
            self._seen[name] = (x.detach(), h0)  # the last call wins

        return hook

    def collect(self, ctx: StepContext) -> None:
        seen, self._seen = self._seen, {}
        fields: dict[str, torch.Tensor] = {}
        for name, module in self.modules:
            if name not in seen:
                continue
            x, hx = seen[name]
            try:
                fields[name] = _exponents(module, x, hx, self.k)
            except ConfigError as e:  # an input we cannot replay: say so once, keep monitoring
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"Monitor: no Lyapunov exponents for {name!r}: {e}", GradwatchWarning, stacklevel=2)
        if fields:
            self.emit(ctx.step, **fields)

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        for row, (_, fields) in zip(store.rows_of(s for s, _ in entries), entries, strict=True):
            store.add_lyapunov(int(row), dict(fields))


def _exponents(module: nn.Module, x: torch.Tensor, hx: Any, k: int) -> torch.Tensor:
    """λ_1..λ_k (descending, mean over the first SAMPLES sequences) of ``module`` on input ``x``."""
    rec = _lyapunov.recurrence(module)
    with torch.no_grad():
        seq, s0 = _lyapunov.sequence_inputs(module, x, hx, rec)
        seq, s0 = seq[:, :SAMPLES], s0[:SAMPLES]
        T, B, n = int(seq.shape[0]), int(seq.shape[1]), rec.state_size
        kk = min(k, n)
        gen = torch.Generator().manual_seed(0)
        q0 = torch.linalg.qr(torch.randn(n, kk, generator=gen, dtype=torch.float64))[0]
        q0 = q0.to(seq.device, seq.dtype).expand(B, n, kk)
        run = _lyapunov.qr_lyapunov(rec.step, s0, q0, seq, warmup=T // 10 if T >= 2 else 0)
        lam = torch.sort(run.exponents, dim=-1, descending=True).values.mean(dim=0)
    return lam.to(torch.float64)
