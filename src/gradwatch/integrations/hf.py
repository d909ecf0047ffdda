"""Hugging Face ``Trainer``: ``GradwatchCallback`` — the monitor as a ``TrainerCallback``.

Usage::

    from gradwatch.integrations.hf import GradwatchCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    cb = GradwatchCallback().attach(trainer)   # first in line, so every logger sees its numbers
    trainer.train()
    print(cb.verdict)

Where it reads: the Trainer clips gradients *before* its first callback after backward
(``on_pre_optimizer_step``), so the callback reads the gradient at the end of the
backward pass (an autograd end-of-backward callback queued from parameter hooks) with
:meth:`Monitor.read_grads`; the reading of the last micro-batch — the accumulated,
unclipped gradient — becomes the optimizer step's record (with :meth:`GradwatchCallback.attach`,
the other micro-batches' backward passes are not read at all), and the monitor's optimizer
hook adds the post-clip norm (``"clip"``). Records are added to the Trainer's logs in
``on_log`` (so ``report_to`` loggers and ``trainer.state.log_history`` get them when the
callback is first in line: use :meth:`GradwatchCallback.attach`), go to any ``sinks=``,
and the verdict is printed (main process) and kept in ``callback.verdict`` at the end.

Mixed precision with fp16 (a GradScaler): :meth:`GradwatchCallback.attach` hands the
accelerator's scaler to the monitor; without ``attach``, pass ``scaler=trainer.accelerator.scaler``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradwatch.integrations import close_monitor, flat_metrics, require
from gradwatch.monitor import Monitor, Verdict
from gradwatch.monitor.sinks import Sink

transformers = require("transformers", "hf")
_TrainerCallback: Any = transformers.TrainerCallback  # a runtime import: type checkers see the base class as Any

__all__ = ["GradwatchCallback"]


class GradwatchCallback(_TrainerCallback):
    """Attach a :class:`gradwatch.Monitor` to the model a Hugging Face ``Trainer`` trains.

    Args:
        sinks: extra sinks (JSONL, TensorBoard, W&B, ...).
        log_to_trainer: add the latest record's ``gradwatch/...`` numbers to the Trainer's
            logs at each logging step (default True).
        **monitor_kwargs: any other :class:`~gradwatch.Monitor` argument.

    Attributes:
        monitor, verdict, history: as for the Lightning callback.
    """

    def __init__(
        self, *, sinks: Sequence[Sink] | None = None, log_to_trainer: bool = True, **monitor_kwargs: Any
    ) -> None:
        self.sinks = list(sinks or [])
        self.log_to_trainer = bool(log_to_trainer)
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self.verdict: Verdict | None = None
        self.history: Any = None
        self._hooks: list[Any] = []
        self._queued = False
        self._trainer: Any = None
        self._gradient_state: Any = None  # accelerate's GradientState, known through attach()

    def attach(self, trainer: Any) -> GradwatchCallback:
        """Put this callback first among the trainer's callbacks (its numbers reach every logger).

        It also remembers the trainer, so that under fp16 mixed precision the monitor gets the
        accelerator's GradScaler (``scaler=``) without being told.
        """
        trainer.callback_handler.callbacks.insert(0, self)
        self._trainer = trainer
        return self

    # ------------------------------------------------------------------ reading gradients
    def _param_hook(self, _: torch.Tensor) -> None:
        if self._queued:
            return
        # Under gradient accumulation only the last micro-batch's gradient becomes the record:
        # the Trainer sets the accelerator's sync_gradients before each micro-batch, so the
        # other backward passes are not read at all (each reading costs a full pass over the
        # gradients). Without attach() the trainer is unknown: every backward is read.
        gradient_state = self._gradient_state
        if gradient_state is not None and not gradient_state.sync_gradients:
            return
        self._queued = True
        torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)

    def _end_of_backward(self) -> None:
        self._queued = False
        if self.monitor is not None:
            self.monitor.read_grads()

    # ------------------------------------------------------------------ TrainerCallback
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kw: Any):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        kwargs: dict[str, Any] = {"sync_every": max(1, int(args.logging_steps)) if args.logging_steps >= 1 else 50}
        accelerator = getattr(self._trainer, "accelerator", None)
        scaler = getattr(accelerator, "scaler", None)
        gradient_state = getattr(accelerator, "gradient_state", None)
        self._gradient_state = gradient_state if hasattr(gradient_state, "sync_gradients") else None
        if scaler is not None and isinstance(inner, torch.optim.Optimizer):
            kwargs["scaler"] = scaler
        kwargs.update(self.monitor_kwargs)
        self.monitor = Monitor(
            model, inner if isinstance(inner, torch.optim.Optimizer) else None, sinks=self.sinks, **kwargs
        )
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._param_hook) for p in model.parameters() if p.requires_grad
        ]

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any):
        if self.monitor is not None:
            self.monitor.step()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any):
        if not self.log_to_trainer or self.monitor is None or logs is None or "loss" not in logs:
            return
        last = self.monitor.last_record()  # not records(): a copy of every record per log step
        if last is None:
            return
        metrics = flat_metrics(last)
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._gradient_state = None
        mon, self.monitor = self.monitor, None
        if mon is None:
            return
        self.history, self.verdict = close_monitor(mon)
        if state.is_world_process_zero:
            print(f"gradwatch verdict: {self.verdict}")
