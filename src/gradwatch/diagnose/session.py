"""Global torch hooks that find the models a script trains and its training steps, unmodified.

A :class:`Session` is active while a user's script runs. It patches five entry points
(restored on exit) and registers torch's global optimizer hooks:

- ``nn.Module.__call__``: the first call of a module that has trainable parameters, made
  with autograd on and outside any other such call, is the forward of a *model*: the
  session attaches a :class:`~gradwatch.monitor.Monitor` to it right there, before its
  forward runs (so the monitor's forward hooks see the first step). Later calls inside that
  forward pass straight through (one attribute test each).
- ``torch.optim.Optimizer.__init__``: optimizers are remembered when made, so that a
  model's monitor gets the optimizer that holds its parameters (update ratios, post-clip
  norm) even though the script never hands it to us.
- ``torch.amp.GradScaler.__init__``: a scaler made before the model's first forward goes to
  its monitor (norms of the unscaled gradient), and recorded losses are divided by its scale.
- ``torch.Tensor.backward`` and ``torch.autograd.backward``: the loss is the tensor
  ``backward`` is called on, and the end of ``backward`` is where the gradient is read —
  before the script clips it. In a loop with no optimizer object (``p.data.add_(p.grad, …)``)
  every backward is a training step.
- ``torch.optim`` global step pre-/post-hooks: a step of an optimizer that holds a
  model's parameters records that model's step (``mon.step``), runs the remedies being
  tried (:mod:`gradwatch.diagnose.tweaks`) and counts it. Closures (Lightning's
  ``optimizer.step(closure)``) record at the end of the backward inside the closure.

After ``max_steps`` steps (or ``max_seconds`` from the first model's first forward) the
session raises :class:`StopScript` — a ``BaseException``, so a script's ``except Exception``
does not swallow it — right after the last step's update, and the script ends there.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from gradwatch.monitor import Monitor
from gradwatch.monitor.history import History
from gradwatch.monitor.verdict import Verdict

__all__ = ["Session", "StopScript", "Tweak", "Watched"]


class StopScript(BaseException):
    """Ends the user's script after its last diagnosed step (not an ``Exception``: scripts catch those)."""


class Tweak(Protocol):
    """A remedy applied from outside the script (see :mod:`gradwatch.diagnose.tweaks`)."""

    def attach(self, model: nn.Module) -> None:
        """Change the model before its first forward (initializations, activations)."""

    def before_update(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        """Act on the gradients (or the optimizer) after they were recorded, before the update."""

    def after_update(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Undo what ``before_update`` changed on the optimizer."""


@dataclass(eq=False)
class Watched:
    """A model the script trains, with its monitor and what the session saw of it.

    Attributes:
        name: the model's class name (with ``#2`` … for a second model of the same class).
        model: the module.
        monitor: its monitor (closed when the session ends).
        optimizer: the optimizer that holds its parameters, if any.
        steps: training steps counted (optimizer steps, or backward calls without an optimizer).
        losses: the loss of each step (0-d tensors, NaN when the loss was not a scalar).
        history, verdict: filled when the session ends.
    """

    name: str
    model: nn.Module
    monitor: Monitor
    optimizer: torch.optim.Optimizer | None = None
    steps: int = 0
    losses: list[torch.Tensor] = field(default_factory=list)
    history: History | None = None
    verdict: Verdict | None = None
    forwarded: bool = False
    pending_loss: torch.Tensor | None = None

    @property
    def params(self) -> list[torch.Tensor]:
        """The model's trainable parameters."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss_curve(self) -> list[float]:
        """The loss of every counted step as floats (one host transfer)."""
        if not self.losses:
            return []
        return [float(x) for x in torch.stack([t.float().cpu() for t in self.losses]).tolist()]


_NAN = torch.tensor(math.nan)


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _param_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def _scalar(t: Any) -> torch.Tensor:
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        return t.detach().reshape(())
    return _NAN


class Session:
    """Watch every model a script trains, count its steps, apply ``tweaks``, stop after a limit.

    Args:
        max_steps: stop after this many training steps (None: no limit).
        max_seconds: stop at the first step that ends this many seconds after the first
            model's first forward (None: no limit).
        tweaks: remedies applied from outside the script (applied to every model).
        log_dir: where each model's JSONL log goes (``run.jsonl``, ``run-2.jsonl``, …); None
            keeps records in memory only.
        monitor_options: extra :class:`~gradwatch.monitor.MonitorConfig` fields.
    """

    def __init__(
        self,
        *,
        max_steps: int | None = None,
        max_seconds: float | None = None,
        tweaks: Sequence[Tweak] = (),
        log_dir: Path | None = None,
        monitor_options: dict[str, Any] | None = None,
    ) -> None:
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.tweaks = list(tweaks)
        self.log_dir = log_dir
        self.monitor_options = dict(monitor_options or {})
        self.watched: list[Watched] = []
        self.backward_calls = 0
        self.stop_reason: str | None = None
        self.started_at: float | None = None
        self._roots: weakref.WeakKeyDictionary[nn.Module, Watched] = weakref.WeakKeyDictionary()
        self._passive: weakref.WeakSet[nn.Module] = weakref.WeakSet()
        self._optimizers: list[weakref.ref[torch.optim.Optimizer]] = []
        self._scalers: list[weakref.ref[torch.amp.GradScaler]] = []
        self._in_model = False
        self._in_backward = False
        self._stepping: set[int] = set()  # ids of the optimizers inside step() now (closures run there)
        self._loss: torch.Tensor = _NAN
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ install / remove
    def __enter__(self) -> Session:
        self._patch(nn.Module, "__call__", self._wrap_call)
        self._patch(torch.optim.Optimizer, "__init__", self._remembering(self._optimizers))
        self._patch(torch.amp.GradScaler, "__init__", self._remembering(self._scalers))
        self._patch(torch.Tensor, "backward", self._wrap_backward)
        self._patch(torch.autograd, "backward", self._wrap_backward)
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        for handle in (
            register_optimizer_step_pre_hook(self._before_step),
            register_optimizer_step_post_hook(self._after_step),
        ):
            self._undo.append(handle.remove)
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        for w in self.watched:
            self._finish(w)

    def _patch(self, owner: Any, attr: str, wrap: Callable[[Any], Any]) -> None:
        original = getattr(owner, attr)
        setattr(owner, attr, wrap(original))
        self._undo.append(lambda: setattr(owner, attr, original))

    def _finish(self, w: Watched) -> None:
        mon = w.monitor
        try:
            w.history, w.verdict = mon.history, mon.verdict()
        finally:
            mon.close()

    # ------------------------------------------------------------------ models
    def _wrap_call(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def __call__(module: nn.Module, *args: Any, **kwargs: Any) -> Any:  # noqa: N807 — it replaces nn.Module.__call__
            if session._in_model or not torch.is_grad_enabled() or module in session._passive:
                return original(module, *args, **kwargs)
            w = session._roots.get(module)
            if w is None:
                if not _trainable(module):
                    session._passive.add(module)  # a loss module or a wrapper: look inside it
                    return original(module, *args, **kwargs)
                w = session._attach(module)
            w.forwarded = True
            session._in_model = True
            try:
                return original(module, *args, **kwargs)
            finally:
                session._in_model = False

        return __call__

    def _attach(self, model: nn.Module) -> Watched:
        if self.started_at is None:
            self.started_at = time.perf_counter()
        for t in self.tweaks:
            t.attach(model)
        optimizer = self._optimizer_for(model)
        index = len(self.watched) + 1
        same = sum(type(w.model) is type(model) for w in self.watched)
        name = type(model).__name__ + (f"#{same + 1}" if same else "")
        w = Watched(name, model, self._monitor(model, optimizer, index), optimizer)
        self.watched.append(w)
        self._roots[model] = w
        return w

    def _monitor(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, index: int) -> Monitor:
        log = None
        if self.log_dir is not None:
            log = self.log_dir / ("run.jsonl" if index == 1 else f"run-{index}.jsonl")
            log.unlink(missing_ok=True)
        scaler = self._scaler() if optimizer is not None else None
        return Monitor(model, optimizer, log=log, scaler=scaler, **self.monitor_options)

    def _scaler(self) -> torch.amp.GradScaler | None:
        """The GradScaler in use (the latest enabled one made), or None."""
        for ref in reversed(self._scalers):
            scaler = ref()
            if scaler is not None and scaler.is_enabled():
                return scaler
        return None

    def _optimizer_for(self, model: nn.Module) -> torch.optim.Optimizer | None:
        ids = _param_ids(model)
        for ref in reversed(self._optimizers):
            opt = ref()
            if opt is not None and any(id(p) in ids for g in opt.param_groups for p in g["params"]):
                return opt
        return None

    # ------------------------------------------------------------------ optimizers
    @staticmethod
    def _remembering(made: list[weakref.ref[Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A patch for a class's ``__init__`` that remembers (weakly) every object it makes in ``made``."""

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def __init__(obj: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 — it replaces a class's __init__
                original(obj, *args, **kwargs)
                made.append(weakref.ref(obj))

            return __init__

        return wrap

    def _watched_by(self, opt: torch.optim.Optimizer) -> list[Watched]:
        mine = [w for w in self.watched if w.optimizer is opt]
        if mine:
            return mine
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        for w in self.watched:
            if w.optimizer is None and any(id(p) in held for p in w.model.parameters()):
                # made after the model's first forward: start its monitor again with the optimizer
                index = self.watched.index(w) + 1
                w.monitor.close()
                w.monitor, w.optimizer, w.steps, w.losses = self._monitor(w.model, opt, index), opt, 0, []
                mine.append(w)
        return mine

    def _before_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
        if closure is not None:
            self._stepping.add(id(opt))  # the closure's backward records the step
            return
        for w in self._watched_by(opt):
            w.monitor.step(w.pending_loss if w.pending_loss is not None else self._loss)
            self._tweak_before(w, opt)

    def _after_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._stepping.discard(id(opt))
        mine = [w for w in self.watched if w.optimizer is opt]
        for w in mine:
            for t in self.tweaks:
                t.after_update(opt)
            w.steps += 1
            w.losses.append(w.pending_loss if w.pending_loss is not None else self._loss)
            w.pending_loss = None
        if mine:
            self._check_limits()

    def _tweak_before(self, w: Watched, opt: torch.optim.Optimizer | None) -> None:
        if self.tweaks:
            params = w.params
            for t in self.tweaks:
                t.before_update(params, opt)

    # ------------------------------------------------------------------ backward
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if session._in_backward:
                return original(tensors, *args, **kwargs)
            if session.stop_reason is not None:
                raise StopScript(session.stop_reason)  # a loop without an optimizer: its last update is done
            session._in_backward = True
            try:
                out = original(tensors, *args, **kwargs)
            finally:
                session._in_backward = False
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
            session._end_of_backward(_scalar(first))
            return out

        return backward

    def _end_of_backward(self, loss: torch.Tensor) -> None:
        self.backward_calls += 1
        scaler = self._scaler() if self._scalers else None
        scale = getattr(scaler, "_scale", None)
        if isinstance(scale, torch.Tensor):
            loss = loss / scale.reshape(())  # the loss backward saw is scaler.scale(loss): record the loss itself
        self._loss = loss
        manual_steps = False
        for w in self.watched:
            if not w.forwarded:
                continue
            w.forwarded = False
            if w.optimizer is not None and id(w.optimizer) in self._stepping:
                w.pending_loss = loss
                w.monitor.step(loss)
                self._tweak_before(w, w.optimizer)
            elif w.optimizer is not None:
                w.pending_loss = loss
                w.monitor.read_grads()  # before the script clips; mon.step() comes with optimizer.step()
            else:
                w.monitor.step(loss)
                self._tweak_before(w, None)
                w.steps += 1
                w.losses.append(loss)
                manual_steps = True
        if manual_steps:
            self._check_limits(raise_now=False)

    # ------------------------------------------------------------------ limits
    def _check_limits(self, raise_now: bool = True) -> None:
        steps = max((w.steps for w in self.watched), default=0)
        if self.max_steps is not None and steps >= self.max_steps:
            self.stop_reason = f"stopped after {steps} steps"
        elif (
            self.max_seconds is not None
            and self.started_at is not None
            and time.perf_counter() - self.started_at >= self.max_seconds
        ):
            self.stop_reason = f"stopped after {self.max_seconds:g} s ({steps} steps)"
        if self.stop_reason is not None and raise_now:
            raise StopScript(self.stop_reason)

    @property
    def steps(self) -> int:
        """Training steps done (the most of any model)."""
        return max((w.steps for w in self.watched), default=0)
