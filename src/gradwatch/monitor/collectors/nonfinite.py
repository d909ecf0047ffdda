"""Non-finite origin: the first NaN/Inf, whether the forward or the backward pass made it, and where."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, StepContext
from gradwatch.monitor.collectors.grads import GradNorms
from gradwatch.monitor.nonfinite import NonFinite, NonFiniteTracer
from gradwatch.monitor.store import Store

__all__ = ["AUTO_TRACE_CALLS", "NonFiniteOrigin"]

AUTO_TRACE_CALLS = 200  # how many Monitor.step() calls auto-armed hooks wait for a NaN/Inf to recur

Flag = tuple[int, int, str, str]  # (step, call order, module, tensor kind)


def _value(x: float) -> str:
    return "nan" if math.isnan(x) else "inf"


class NonFiniteOrigin(Collector):
    """The first NaN/Inf of the run: step, origin (forward/backward), module, tensor, parameter.

    Cost when everything is finite: none of its own. At each sync it reads, on the host, the
    loss and the per-parameter max |g| (or L2 norms without ``grad_max``) that :class:`Loss`
    and :class:`GradNorms` move there anyway: a non-finite loss is a forward origin; a finite
    loss with non-finite gradients a backward one, located at the deepest layer whose gradient
    is non-finite (a backward NaN reaches every layer before the op that made it, none after).
    Steps a GradScaler skipped are its normal operation, not a non-finite event.

    Tracing (:class:`NonFiniteTracer`: per leaf module, a forward pre-hook and forward hook, a
    tensor hook per output and input, one ``amax`` and one ``amin`` per tensor) runs always
    with ``trace=True``; with ``trace="auto"`` (the default) it is armed only once a
    non-finite value has been seen (at the sync that finds it, at once with
    ``on_nonfinite="warn"/"raise"``) and until the value recurs — then its module and tensor
    are recorded (``traced_step``) — or for :data:`AUTO_TRACE_CALLS` calls. A recurrence that
    starts from non-finite weights (the optimizer applied a NaN update) is not an origin:
    tracing then stops without a location. Host syncs: 0, unless :meth:`finite_now` is asked
    (``on_nonfinite="warn"``/``"raise"``: one boolean per step).

    Args:
        grads: the gradient collector whose rows it reads.
        params: the monitored parameters.
        loop: the loop's state (for the step each flag belongs to).
        model: the model (its leaf modules are traced).
        trace: True (always), "auto" (after the first non-finite value) or False (never).
        undecided: the step whose GradScaler skip flag has not arrived yet (or None).
        call_order: the modules (layers and leaves) in the order the first forward ran them
            (the monitor's :class:`~gradwatch.monitor.roles.CallCounter` learns it).
    """

    name = "nonfinite"

    def __init__(
        self,
        grads: GradNorms,
        params: Params,
        loop: Loop,
        model: nn.Module,
        *,
        trace: bool | str,
        undecided: Callable[[], int | None] = lambda: None,
        call_order: Callable[[], Sequence[str]] = list,
    ) -> None:
        super().__init__()
        self.grads, self.params, self.loop = grads, params, loop
        self.mode = trace
        self.undecided = undecided
        self.tracer: NonFiniteTracer | None = None
        leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
        self._replay_step: int | None = None  # the record a replayed forward belongs to
        if trace is not False:
            self.tracer = NonFiniteTracer(
                leaves,
                lambda: loop.calls if self._replay_step is None else self._replay_step,
                check_params=trace == "auto",
            )
            if trace is True:
                self.tracer.attach()
        self._own = {n for n, m in leaves if type(m).__module__.split(".")[0] != "torch" and not m._parameters}
        self._call_order = call_order
        self._flags: list[Flag] = []
        self._auto_until: int | None = None  # loop.calls at which the auto-armed hooks are dropped
        self._auto_done = False  # the auto-armed hooks located a recurrence, or gave up: never again
        self._loss: torch.Tensor | None = None
        self._carry: list[tuple[int, np.ndarray, float | None]] = []  # rows waiting for their skip flag
        # CPU models, "auto": the last forward's inputs (references), to replay a forward that made a NaN loss
        self._model = model
        self._inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._replayed = False
        self._input_handle = (
            model.register_forward_pre_hook(self._keep_inputs, with_kwargs=True)
            if trace == "auto" and params.device.type == "cpu"
            else None
        )

    def take(self) -> list[tuple[int, dict[str, torch.Tensor]]]:
        flags = self.tracer.take() if self.tracer is not None else []
        self._flags += [f[:4] for f in flags]
        return [(f[0], {"span": f[4].reshape(1)}) for f in flags]

    def _keep_inputs(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._inputs = (args, kwargs)

    def collect(self, ctx: StepContext) -> None:
        self._loss = ctx.loss
        inputs, self._inputs = self._inputs, None  # hold the batch no longer than one step
        loss = ctx.loss
        if (
            inputs is not None
            and loss is not None
            and not self._replayed
            and loss.device.type == "cpu"
            and self.loop.optimizer_first is not True  # the weights are still those of that forward
            and not bool(np.isfinite(loss.detach().float().numpy()).all())  # host memory: no device sync
        ):
            self._replay(ctx.step, inputs)

    def _replay(self, step: int, inputs: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        """Run the forward that made a non-finite loss again, traced, to name the module that made it.

        Only once per run, on a CPU model, before the optimizer applies the non-finite update
        (after it every forward is non-finite from the first layer on). Training is unchanged:
        no gradient, the RNG state (dropout) and every buffer (batch-norm statistics) restored.
        """
        self._replayed = True
        tracer, model = self.tracer, self._model
        if tracer is None or tracer.attached:
            return  # always-on tracing already saw that forward
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self._replay_step = step
        tracer.attach()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                model(*inputs[0], **inputs[1])
        except Exception:  # a replay that fails is no location, never a crash of training
            pass
        finally:
            tracer.detach()
            self._replay_step = None
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)

    def arm(self, due: bool) -> None:
        if self._auto_until is not None and self.loop.calls >= self._auto_until:
            self._disarm()

    def _arm_auto(self) -> None:
        if self.mode == "auto" and self.tracer is not None and not self.tracer.attached and not self._auto_done:
            self.tracer.attach()
            self._auto_until = self.loop.calls + AUTO_TRACE_CALLS

    def _disarm(self) -> None:
        if self.mode == "auto" and self.tracer is not None:
            self.tracer.detach()
        self._auto_until = None
        self._auto_done = True

    def finite_now(self) -> bool:
        """Whether this step's loss and gradients (and traced tensors) are finite: one host sync."""
        row = self.grads.last_row
        finite = torch.isfinite(row).all() if row is not None else torch.ones((), dtype=torch.bool)
        if self._loss is not None:
            finite = finite & torch.isfinite(self._loss.to(finite.device)).all()
        if self.tracer is not None:
            for *_, span in self.tracer.flags:
                finite = finite & torch.isfinite(span.to(finite.device))
        ok = bool(finite)  # one boolean sync per step: the price of "warn" and "raise"
        if not ok:
            self._arm_auto()
        return ok

    # ------------------------------------------------------------------ at sync
    def finish(self, batch: Batch, store: Store) -> None:
        spans = batch.get(self.name, [])
        flags, self._flags = self._flags[: len(spans)], self._flags[len(spans) :]
        bad_flags = [
            (flag, float(f["span"][0]))
            for flag, (_, f) in zip(flags, spans, strict=True)
            if not math.isfinite(float(f["span"][0]))
        ]
        nf = store.nonfinite
        if nf is None:
            numeric = self._first_numeric(batch, store)
            skipped = set(store.steps[store.column("skipped")].tolist()) if bad_flags else set()
            origins = [(fl, v) for fl, v in bad_flags if fl[3] != "parameter" and fl[0] not in skipped]
            traced = min(origins, default=None, key=lambda c: c[0][:2])
            located = traced is not None and (numeric is None or traced[0][0] <= numeric.step)
            if traced is not None and located:
                (step, _, module, kind), _span = traced
                value = numeric.value if numeric is not None and numeric.step == step else "nan/inf"
                nf = NonFinite(step, module, kind, value=value, origin=NonFinite.origin_of(kind))
                nf = replace(nf, traced_step=step) if self._replayed and self.mode == "auto" else nf
            else:
                nf = numeric
            if nf is not None:
                store.set_nonfinite(nf)
                if self.mode == "auto" and not located:
                    self._arm_auto()
                elif self.mode == "auto":
                    self._auto_done = True  # the replayed forward named the module: nothing to wait for
        else:
            self._carry = []  # the first one is known: later rows need no decision
            if self._auto_until is not None and bad_flags:
                self._refine(nf, bad_flags, store)

    def _refine(self, nf: NonFinite, bad_flags: list[tuple[Flag, float]], store: Store) -> None:
        """Name the module and tensor of the first recurrence the auto-armed hooks saw."""
        (step, _, module, kind), _span = min(bad_flags, key=lambda c: c[0][:2])
        self._disarm()  # one recurrence is enough: the hooks cost time on every step
        origin = NonFinite.origin_of(kind)
        if kind == "parameter" or (nf.origin is not None and origin != nf.origin):
            return  # non-finite weights (or another event): not where the first value came from
        store.set_nonfinite(
            replace(nf, module=module, tensor=kind, parameter=None, origin=origin, traced_step=step), refine=True
        )

    def _first_numeric(self, batch: Batch, store: Store) -> NonFinite | None:
        """The first step of this batch (and carried rows) whose loss or gradients are non-finite."""
        losses = {s: float(f["loss"][0]) for s, f in batch.get("loss", [])}
        entries = self._carry + [(s, f["row"], losses.get(s)) for s, f in batch.get(self.grads.name, [])]
        self._carry = []
        if entries and entries[-1][0] == self.undecided():
            self._carry = [entries.pop()]  # its skip flag comes with the next scaler.update()
        if not entries:
            return None
        pmax = np.stack([self.grads.per_param_max(row) for _, row, _ in entries])
        loss = np.array([0.0 if v is None else v for _, _, v in entries])
        bad = ~(np.isfinite(pmax).all(axis=1) & np.isfinite(loss))
        if bad.any():
            bad &= ~store.column("skipped")[store.rows_of(s for s, _, _ in entries)]  # a GradScaler's job
        if not bad.any():
            return None
        i = int(np.flatnonzero(bad)[0])
        step, _, loss_value = entries[i]
        return self._locate(step, pmax[i], loss_value, store)

    def _locate(self, step: int, pmax: np.ndarray, loss: float | None, store: Store) -> NonFinite:
        if loss is not None and not math.isfinite(loss):
            return NonFinite(step, "", "loss", value=_value(loss), origin="forward")
        params = self.params
        bad = ~np.isfinite(pmax)
        depth = {name: i for i, name in enumerate(store.layer_names)}
        layer_of = [params.layers[int(o)].name for o in params.owner]
        # the deepest layer whose gradient is non-finite, and its first non-finite parameter
        j = max(np.flatnonzero(bad).tolist(), key=lambda k: (depth[layer_of[k]], -k))
        value = _value(float(pmax[j]))
        # a forward NaN reaches every gradient; a backward one leaves the layers after it finite
        with_grad = [k for k in range(len(pmax)) if bad[k] or pmax[k] != 0]
        output_side = max(with_grad, key=lambda k: depth[layer_of[k]])
        if loss is None and bad[output_side]:
            return NonFinite(step, "", "parameter gradient", value=value, origin=None)
        source = self._sole_own_module_after(layer_of[j], set(layer_of))
        if source is not None:  # the backward of a module of the user's own, right after that layer
            return NonFinite(step, source, "gradient w.r.t. input", params.names[j], value, "backward")
        return NonFinite(step, layer_of[j], "parameter gradient", params.names[j], value, "backward")

    def _sole_own_module_after(self, layer: str, layers: set[str]) -> str | None:
        """The one parameter-free module of the user's own (not ``torch.nn``'s) that ran between
        ``layer`` and the next layer with parameters in the first forward pass, if there is exactly one.

        torch's own parameter-free modules (activations, dropout, pooling) do not turn finite
        gradients into NaN; a hand-written distance, norm or ``where`` often does.
        """
        order = list(self._call_order())
        if layer not in order:
            return None
        between = []
        for name in order[order.index(layer) + 1 :]:
            if name in layers:
                break
            between.append(name)
        own = [n for n in between if n in self._own]
        return own[0] if len(own) == 1 else None

    def close(self) -> None:
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None
        self._inputs = None
        if self.tracer is not None:
            self.tracer.detach()
        self._auto_until = None
