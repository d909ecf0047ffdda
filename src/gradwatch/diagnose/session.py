"""Global torch hooks that find the models a script trains and its training steps, unmodified.

A :class:`Session` is active while a user's script runs. It patches five entry points
(restored on exit) and registers torch's global optimizer hooks:

- ``nn.Module.__call__``: the first call of a module that has trainable (initialized)
  parameters, made with autograd on, outside any other such call and outside a backward
  pass (gradient checkpointing re-runs blocks there), is the forward of a *model*: the
  session attaches a :class:`~gradwatch.monitor.Monitor` to it right there, before its
  forward runs (so the monitor's forward hooks see the first step), and a post-accumulate
  hook on each of its parameters that marks the model as *reached* by a backward. Later
  calls inside that forward pass straight through (one attribute test each).
- ``torch.optim.Optimizer.__init__``: optimizers are remembered when made, so that a
  model's monitor gets the optimizer that holds its parameters (update ratios, post-clip
  norm) even though the script never hands it to us.
- ``torch.amp.GradScaler.__init__``: a scaler made before the model's first forward goes to
  its monitor (norms of the unscaled gradient), and recorded losses are divided by its scale.
- ``torch.Tensor.backward`` and ``torch.autograd.backward``: the loss is the tensor
  ``backward`` is called on (unknown when it is not a scalar), and the end of ``backward``
  is where the gradient of every model that backward reached is read — before the script
  clips it. A backward that does not reach a model (a discriminator's loss on a detached
  fake, a target network's output) does not touch that model's record. In a loop with no
  optimizer object (``p.data.add_(p.grad, …)``) every backward that reaches a model is a
  training step of it.
- ``torch.optim`` global step pre-/post-hooks: a step of an optimizer that holds a
  model's parameters records that model's step (``mon.step``) and counts it; the remedies
  being tried (:mod:`gradwatch.diagnose.tweaks`) act once per step of *any* optimizer, on
  the parameters it holds. Closures (``optimizer.step(closure)``: Lightning, L-BFGS) record
  at the end of the backward inside the closure — the first evaluation of each step (L-BFGS
  evaluates several times per step) — and the remedies act on that evaluation only.

After ``max_steps`` steps (or ``max_seconds`` from the first model's first forward) the
session raises :class:`StopScript` — a ``BaseException``, so a script's ``except Exception``
does not swallow it — right after the last step's update (without an optimizer: at the
next forward of a watched model or the next backward), and the script ends there.

A failure inside the session's own hooks never surfaces as the script's error: a model the
monitor cannot attach to is left unwatched and the reason kept in :attr:`Session.problems`.
"""

from __future__ import annotations

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
        losses: the loss of each step (0-d tensors; None where the loss was not a scalar: unknown).
        history, verdict: filled when the session ends.
    """

    name: str
    model: nn.Module
    monitor: Monitor
    optimizer: torch.optim.Optimizer | None = None
    steps: int = 0
    losses: list[torch.Tensor | None] = field(default_factory=list)
    history: History | None = None
    verdict: Verdict | None = None
    reached: bool = False
    pending_loss: torch.Tensor | None = None
    recorded: bool = False  # this optimizer step was recorded (by a closure's first evaluation)
    hooks: list[Any] = field(default_factory=list)

    @property
    def params(self) -> list[torch.Tensor]:
        """The model's trainable parameters."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss_curve(self) -> list[float | None]:
        """The loss of every counted step as floats (one host transfer); None where unknown."""
        known = [t for t in self.losses if t is not None]
        if not known:
            return [None] * len(self.losses)
        values = iter(torch.stack([t.float().cpu() for t in known]).tolist())
        return [None if t is None else float(next(values)) for t in self.losses]


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _uninitialized(module: nn.Module) -> bool:
    """Whether a lazy module inside ``module`` has not made its parameters yet (they appear at its first forward)."""
    return any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters())


def _param_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def _held(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def _scalar(t: Any) -> torch.Tensor | None:
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        return t.detach().reshape(())
    return None


class Session:
    """Watch every model a script trains, count its steps, apply ``tweaks``, stop after a limit.

    Args:
        max_steps: stop after this many training steps (None: no limit).
        max_seconds: stop at the first step that ends this many seconds after the first
            model's first forward (None: no limit).
        tweaks: remedies applied from outside the script (once per optimizer step, or per
            backward without an optimizer).
        log_dir: where each model's JSONL log goes (``run.jsonl``, ``run-2.jsonl``, …); None
            keeps records in memory only.
        monitor_options: extra :class:`~gradwatch.monitor.MonitorConfig` fields.

    Attributes:
        watched: the models found, in the order of their first forward.
        problems: what went wrong inside the session's own hooks (a model left unwatched).
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
        self.problems: list[str] = []
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
        self._tweaked: set[int] = set()  # ids of the optimizers whose step the tweaks already acted on
        self._loss: torch.Tensor | None = None
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ install / remove
    def __enter__(self) -> Session:
        try:
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
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
        for w in self.watched:
            for h in w.hooks:
                h.remove()
            try:
                w.history, w.verdict = w.monitor.history, w.monitor.verdict()
            except Exception as e:  # one model's failure must not lose the others
                self.problems.append(f"{w.name}: the verdict failed: {type(e).__name__}: {e}")
            finally:
                w.monitor.close()

    def _restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def _patch(self, owner: Any, attr: str, wrap: Callable[[Any], Any]) -> None:
        original = getattr(owner, attr)
        setattr(owner, attr, wrap(original))
        self._undo.append(lambda: setattr(owner, attr, original))

    # ------------------------------------------------------------------ models
    def _wrap_call(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def __call__(module: nn.Module, *args: Any, **kwargs: Any) -> Any:  # noqa: N807 — it replaces nn.Module.__call__
            if session._in_model or session._in_backward or not torch.is_grad_enabled() or module in session._passive:
                return original(module, *args, **kwargs)
            w = session._roots.get(module)
            if w is None:
                if not _trainable(module):
                    session._passive.add(module)  # a loss module or a wrapper: look inside it
                    return original(module, *args, **kwargs)
                if _uninitialized(module):  # lazy modules: watch from the call after they made their weights
                    return original(module, *args, **kwargs)
                w = session._attach(module)
                if w is None:
                    return original(module, *args, **kwargs)
            elif session.stop_reason is not None:
                raise StopScript(session.stop_reason)  # a loop without an optimizer: its last update is done
            session._in_model = True
            try:
                return original(module, *args, **kwargs)
            finally:
                session._in_model = False

        return __call__

    def _attach(self, model: nn.Module) -> Watched | None:
        """Watch ``model`` (None when the monitor cannot: the model is then left alone, the reason kept)."""
        same = sum(type(w.model) is type(model) for w in self.watched)
        name = type(model).__name__ + (f"#{same + 1}" if same else "")
        try:
            for t in self.tweaks:
                t.attach(model)
            optimizer = self._optimizer_for(model)
            w = Watched(name, model, self._monitor(model, optimizer, len(self.watched) + 1), optimizer)
        except Exception as e:  # our failure, not the script's: leave the model unwatched and say why
            self.problems.append(f"{name}: not watched ({type(e).__name__}: {e})")
            self._passive.add(model)
            return None
        if self.started_at is None:
            self.started_at = time.perf_counter()

        def reached(_: torch.Tensor) -> None:
            w.reached = True

        w.hooks = [p.register_post_accumulate_grad_hook(reached) for p in w.params]
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
            if opt is not None and any(id(p) in ids for p in _held(opt)):
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
        held = {id(p) for p in _held(opt)}
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
        self._tweak(opt)

    def _after_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._stepping.discard(id(opt))
        if id(opt) in self._tweaked:
            self._tweaked.discard(id(opt))
            for t in self.tweaks:
                t.after_update(opt)
        mine = [w for w in self.watched if w.optimizer is opt]
        for w in mine:
            w.steps += 1
            w.losses.append(w.pending_loss if w.pending_loss is not None or w.recorded else self._loss)
            w.pending_loss, w.recorded = None, False
        if mine:
            self._check_limits()

    def _tweak(self, opt: torch.optim.Optimizer | None, params: Sequence[torch.Tensor] | None = None) -> None:
        """Run the tweaks once for this optimizer step (or backward, without an optimizer)."""
        if not self.tweaks:
            return
        if opt is not None:
            if id(opt) in self._tweaked:
                return  # a closure evaluated again within the same step (L-BFGS)
            self._tweaked.add(id(opt))
            params = _held(opt)
        for t in self.tweaks:
            t.before_update(params or [], opt)

    # ------------------------------------------------------------------ backward
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if session._in_backward:
                return original(tensors, *args, **kwargs)
            if session.stop_reason is not None:
                raise StopScript(session.stop_reason)  # a loop without an optimizer: its last update is done
            for w in session.watched:
                w.reached = False
            session._in_backward = True
            try:
                out = original(tensors, *args, **kwargs)
            finally:
                session._in_backward = False
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
            session._end_of_backward(_scalar(first))
            return out

        return backward

    def _end_of_backward(self, loss: torch.Tensor | None) -> None:
        self.backward_calls += 1
        scaler = self._scaler() if self._scalers else None
        scale = getattr(scaler, "_scale", None)
        if loss is not None and isinstance(scale, torch.Tensor):
            loss = loss / scale.reshape(())  # the loss backward saw is scaler.scale(loss): record the loss itself
        self._loss = loss
        manual: list[Watched] = []
        for w in self.watched:
            if not w.reached:
                continue  # this backward did not reach the model: its record is not touched
            if w.optimizer is not None and id(w.optimizer) in self._stepping:
                if not w.recorded:  # the first evaluation of the closure in this step (L-BFGS makes several)
                    w.recorded, w.pending_loss = True, loss
                    w.monitor.step(loss)
                self._tweak(w.optimizer)
            elif w.optimizer is not None:
                w.pending_loss = loss
                w.monitor.read_grads()  # before the script clips; mon.step() comes with optimizer.step()
            else:
                w.monitor.step(loss)
                w.steps += 1
                w.losses.append(loss)
                manual.append(w)
        if manual:
            if self.tweaks:
                self._tweak(None, [p for w in manual for p in w.params])
            self._check_limits(raise_now=False)

    # ------------------------------------------------------------------ limits
    def _check_limits(self, raise_now: bool = True) -> None:
        steps = self.steps
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
