"""The Monitor: gradient flow of any PyTorch model, every step, at almost no cost.

Usage (docs/monitor.md): ``mon = gw.Monitor(model, opt, log="run.jsonl")``, then
``mon.step(loss)`` after each ``loss.backward()``, and ``mon.verdict()``.

How it works: the monitor only orchestrates. It wires hooks (the optimizer's step pre- and
post-hooks, one-shot module hooks that learn the depth order, a GradScaler's shadows) and
runs a list of collectors (:mod:`gradwatch.monitor.collectors`), one per statistic family,
each with its own period and documented cost. Collectors leave small tensors on the device;
every ``sync_every`` records the monitor moves all of them to the host in one transfer and
each collector writes its columns into the :class:`~gradwatch.monitor.store.Store`.
``history`` is a view of the store; only sinks turn rows into JSON.

It never changes training (bitwise-identical losses and parameters, tested); only
:meth:`Monitor.clip_grad_norm_` writes gradients, exactly as torch's clipping does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from typing_extensions import Unpack

from gradwatch.errors import GradwatchError, GradwatchWarning, NonFiniteError
from gradwatch.monitor import distributed
from gradwatch.monitor.collectors.base import Accumulation, Loop, Params, StepContext, loss_tensor
from gradwatch.monitor.collectors.chain import build_chain
from gradwatch.monitor.config import (
    Layer,
    MonitorConfig,
    MonitorOptions,
    check_objects,
    depth_order,
    make_config,
    select_layers,
)
from gradwatch.monitor.history import History, NonFinite
from gradwatch.monitor.roles import CallCounter, layer_roles
from gradwatch.monitor.sinks import JSONL, Sink, close_at_exit
from gradwatch.monitor.store import Store
from gradwatch.monitor.verdict import Thresholds, Verdict, verdict

__all__ = ["GradwatchWarning", "Layer", "Monitor", "MonitorConfig", "NonFiniteError"]


class Monitor:
    """Record per-layer gradient flow of a model at every optimizer step.

    Args:
        model: the ``nn.Module`` being trained.
        optimizer: when given, its steps are hooked to measure the update/weight ratio
            ‖Δθ‖/‖θ‖ and the post-clip norm.
        sinks: where records go (see :mod:`gradwatch.monitor.sinks`).
        log: shorthand for ``sinks=[JSONL(log)]`` (appended to any ``sinks``).
        scaler: the ``torch.amp.GradScaler`` of a mixed-precision loop: norms are then those
            of the *unscaled* gradient wherever ``mon.step()`` is called, records carry
            ``"loss_scale"``, and skipped steps ``"skipped": true``. Fused optimizers that
            unscale inside their step: call ``mon.step()`` before ``scaler.step``.
        config: a :class:`MonitorConfig` (every option documented there).
        **options: any field of :class:`MonitorConfig` (``every=``, ``sync_every=``,
            ``weights_every=``, ``activations_every=``, ``clip=``, ...), overriding ``config``.

    Raises:
        ConfigError: no parameter requires grad, a filter matches nothing, a parameter is
            out of range, or a scaler without an optimizer.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        sinks: Sequence[Sink] | None = None,
        log: str | Path | None = None,
        scaler: torch.amp.GradScaler | None = None,
        config: MonitorConfig | None = None,
        **options: Unpack[MonitorOptions],
    ) -> None:
        cfg = make_config(config, options)
        modules = check_objects(model, optimizer, scaler, cfg.profile_module)
        self.config, self.model, self.optimizer, self.scaler = cfg, model, optimizer, scaler
        self.thresholds = cfg.thresholds or Thresholds()
        self.layers = select_layers(model, cfg)
        self._params = Params(self.layers, modules)
        self._loop = Loop(every=cfg.every)
        self._sinks: list[Sink] = list(sinks or []) + ([JSONL(log)] if log is not None else [])
        if not cfg.sinks_on_all_ranks and distributed.rank() != 0:
            for sink in self._sinks:
                sink.close()
            self._sinks = []
        self._store: Store | None = None  # created at the first record, when the depth order is known
        self._history: tuple[int, History] | None = None
        self._written = 0
        self._closed = False
        self._accumulation = Accumulation(cfg.accumulation_steps) if cfg.accumulation_steps > 1 else None
        # depth order (the order in which layers first run), loop cells, and where parameter-free
        # modules ran between layers (for the non-finite origin), learnt until the first record
        watched = {layer.name: modules[layer.name] for layer in self.layers}
        watched.update((n, m) for n, m in modules.items() if not list(m.children()))
        self._calls = CallCounter(model, list(watched.items()))
        self._chain = build_chain(cfg, model, optimizer, scaler, self._params, self._loop, lambda: self._calls.order)
        self._roles = layer_roles(model, [layer.name for layer in self.layers])
        self._handles = []
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
            self._handles.append(optimizer.register_step_post_hook(self._after_optimizer_step))
        self._chain.arm(self._loop)
        close_at_exit(self)  # a crash keeps the records: open monitors are closed at interpreter exit

    def _before_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        loop = self._loop
        loop.in_opt_step = True
        if loop.optimizer_first is None:
            loop.optimizer_first = loop.calls == 0
        self._chain.before_optimizer_step()

    def _after_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        loop = self._loop
        loop.opt_steps += 1
        loop.in_opt_step = False
        closure_record, loop.closure_record = loop.closure_record, None
        self._chain.after_optimizer_step(closure_record)

    # ------------------------------------------------------------------ the hot path
    def step(self, loss: torch.Tensor | float | None = None, *, clip: torch.Tensor | float | None = None) -> None:
        """Record the current gradients (call after ``backward()``, before or after ``optimizer.step()``).

        Args:
            loss: the step's loss, recorded as is (a tensor stays on the device).
            clip: in a loop that clips before calling ``step()`` (manual loops need no optimizer),
                the total norm ``clip_grad_norm_`` returned: the record's pre-clip norm; its
                post-clip norm is the one read now (misuses: :mod:`gradwatch.monitor.lints`).

        Raises:
            NonFiniteError: with ``on_nonfinite="raise"``, when a NaN/Inf is found.
            GradwatchError: after ``close()``.
        """
        if self._closed:
            raise GradwatchError("Monitor.step() called after close(): create a new Monitor.")
        loop, cfg = self._loop, self.config
        loss_t = loss_tensor(loss)
        if self._accumulation is not None:
            ready, loss_t = self._accumulation.add(loss_t)
            if not ready:
                return
        ctx = StepContext(loop.calls, loss_t, self._chain.inverse_scale())
        self._chain.begin()
        loop.last_call_recorded = False
        if self._store is None and self._calls.order:
            self._fix_depth_order()
        if ctx.step % cfg.every == 0:
            if all(p.grad is None for p in self._params.tensors):
                warnings.warn(
                    "Monitor.step() found no gradient on any monitored parameter: call loss.backward() "
                    "before mon.step() (nothing was recorded for this step).",
                    GradwatchWarning,
                    stacklevel=2,
                )
            else:
                self._record(ctx)
                if clip is not None:
                    self._chain.clip.report(ctx.step, loss_tensor(clip, "clip"))  # type: ignore[arg-type]
        loop.calls += 1
        self._chain.end()
        self._chain.arm(loop)
        if loop.last_call_recorded:
            if cfg.on_nonfinite != "record" and not self._chain.nonfinite.finite_now():
                self._raise_nonfinite()
            if len(self._chain.grads.outbox) >= cfg.sync_every:
                self._sync()

    def _record(self, ctx: StepContext) -> None:
        loop = self._loop
        self._fix_depth_order()
        assert self._store is not None
        self._store.add_row(ctx.step)
        loop.opt_steps_at_record = loop.opt_steps
        loop.last_record = ctx.step
        loop.last_call_recorded = True
        self._chain.collect(ctx)
        if loop.in_opt_step:
            loop.closure_record = ctx.step  # its update and post-clip norm come with the post-hook

    def read_grads(self) -> None:
        """Read the gradients now; the next :meth:`step` records this reading.

        For loops whose only hook after backward comes after clipping (the Hugging Face
        Trainer): call this right after backward, and ``step()`` later. The norms are then
        those of the gradient before clipping, and the post-clip norm is still measured
        when the optimizer steps. Costs what ``step()`` would.
        """
        if self._closed:
            raise GradwatchError("Monitor.read_grads() called after close(): create a new Monitor.")
        self._chain.grads.staged = self._chain.grads.read(self._chain.inverse_scale())
        self._chain.clip.stage()

    def clip_grad_norm_(
        self,
        max_norm: float,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = False,
        foreach: bool | None = None,
    ) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_(monitored parameters, ...)`` with the norms this step measured.

        Call it right after :meth:`step` (with AMP, after ``scaler.unscale_(opt)`` too): the
        total norm comes from the step's reading and ``torch.nn.utils.clip_grads_with_norm_``
        scales the gradients, so they are read once, not twice; the clip is recorded (pre/post).
        Without a usable reading (step not recorded, gradients changed since, a norm other than
        2 or inf, sharded parameters) the norm is measured as torch does. Same arguments and
        return value (the total norm before clipping, a 0-d tensor) as torch's.
        """
        return self._chain.clip.clip_grad_norm_(self._chain.grads, max_norm, norm_type, error_if_nonfinite, foreach)

    def grad_norm(self, norm_type: float = 2.0) -> torch.Tensor | None:
        """The total norm of the monitored ``.grad`` as it is now, from this step's reading, or None.

        A 0-d device tensor (no pass over the gradients, no host sync), equal to
        ``torch.nn.utils.get_total_norm``'s; None when the reading is not usable (see
        :meth:`clip_grad_norm_`). For ``clip_grads_with_norm_`` or ``after_backward(params, norm)``.
        """
        measured = self._chain.clip.total_norm(self._chain.grads, float(norm_type))
        return None if measured is None else measured[0]

    def _raise_nonfinite(self) -> None:
        self._sync()
        nf = self.first_nonfinite
        message = f"gradwatch: {nf}" if nf is not None else "gradwatch: a NaN/Inf was recorded"
        if self.config.on_nonfinite == "raise":
            raise NonFiniteError(message)
        warnings.warn(message, GradwatchWarning, stacklevel=3)

    # ------------------------------------------------------------------ syncing
    def _fix_depth_order(self) -> None:
        if self._store is not None:
            return
        order = depth_order(self.layers, self._calls.order)
        self._params.depth_order = np.asarray(order, dtype=np.int64)
        layers = [self.layers[i] for i in order]
        self._store = Store([x.name for x in layers], [x.numel for x in layers])
        self._store.roles = self._calls.roles(self._roles)
        self._calls.stop()  # it has done its job

    def _sync(self) -> None:
        """Move every collector's pending device tensors to the host in one transfer; fill the store."""
        if self._store is not None:
            self._chain.sync(self._params.device, self._store)
        self._write_sinks(final=False)

    def _write_sinks(self, final: bool) -> None:
        end = 0 if self._store is None else self._store.n
        if not final and end > self._written and self._chain.newest_incomplete(self._loop, self.optimizer is not None):
            end -= 1
        if end > self._written and self._sinks and self._store is not None:
            batch = self._store.records(self._written, end)
            for sink in self._sinks:
                sink.write(batch)
        self._written = max(self._written, end)

    # ------------------------------------------------------------------ results
    @property
    def store(self) -> Store | None:
        """The columnar store of everything recorded (syncs first); None before the first record."""
        self._sync()
        return self._store

    @property
    def history(self) -> History:
        """Everything recorded so far, as read-only numpy views of the store (syncs first)."""
        store = self.store
        if store is None:
            return History.from_store(Store([], []))
        if self._history is None or self._history[0] != store.version:
            self._history = (store.version, History.from_store(store))
        return self._history[1]

    @property
    def first_nonfinite(self) -> NonFinite | None:
        """The first NaN/Inf recorded (step, origin "forward"/"backward", module, tensor), or None (syncs first)."""
        store = self.store
        return None if store is None else store.nonfinite

    def verdict(self, thresholds: Thresholds | None = None, *, chance_loss: float | None = None) -> Verdict:
        """Diagnose the recorded gradient flow (status, where, evidence, advice, events); see ``gw.verdict``."""
        return verdict(self.history, thresholds or self.thresholds, chance_loss=chance_loss)

    def records(self) -> list[dict[str, Any]]:
        """The JSON records so far (what the JSONL sink writes), built from the store (syncs first)."""
        store = self.store
        return [] if store is None else store.records()

    def last_record(self) -> dict[str, Any] | None:
        """The newest JSON record (syncs first), or None before the first; the others are not built."""
        store = self.store
        return None if store is None or store.n == 0 else store.records(store.n - 1)[0]

    def summary(self) -> Any:
        """A rich Table: per layer, the latest and median gradient norm, max |g|, update ratio."""
        from gradwatch.monitor.plot import summary_table

        return summary_table(self.history, {layer.name: layer.module_type for layer in self.layers})

    def plot(self, path: str | Path) -> Path:
        """Write the gradient-flow figure (``gradwatch.monitor.plot.history_figure``) with the verdict's events (PNG)."""
        from gradwatch.monitor.plot import plot_history

        return plot_history(self.history, path, verdict=self.verdict())

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Remove every hook, flush the records to the sinks and close them (idempotent)."""
        if self._closed:
            return
        try:
            self._calls.stop()
            for h in self._handles:
                h.remove()
            self._handles = []
            self._chain.close()
            self._sync()
            self._write_sinks(final=True)
        finally:
            for sink in self._sinks:
                sink.close()
            self._closed = True

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Monitor({type(self.model).__name__}, layers={len(self.layers)}, steps={self._loop.calls})"
