"""Lightning 2.x: ``GradwatchCallback`` — the monitor on a ``Trainer`` with no change to the model.

Usage::

    from gradwatch.integrations.lightning import GradwatchCallback
    cb = GradwatchCallback()
    L.Trainer(callbacks=[cb], gradient_clip_val=1.0, accumulate_grad_batches=4).fit(model, data)
    print(cb.verdict)

Where it reads: Lightning's ``on_before_optimizer_step`` runs once per optimizer step,
after gradient accumulation, after the precision plugin has unscaled AMP gradients and
*before* gradient clipping, so the recorded norms are those of the full, unclipped,
unscaled gradient; the monitor's optimizer hook then sees the clipped one (``"clip"``
in the record when Lightning clipped). Every record goes to any ``sinks=`` given and to
``callback.history``; the trainer's loggers (``trainer.loggers``) get the records of the
steps Lightning itself logs (every ``log_every_n_steps``-th, as ``gradwatch/...``
scalars: one ``log_metrics`` call of a TensorBoard logger costs about a training step of
a small model, so every record there would double the step). The verdict is printed
(rank 0) and kept in ``callback.verdict`` at the end of ``fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradwatch import _checks
from gradwatch.integrations import close_monitor, flat_metrics, require
from gradwatch.monitor import Monitor, Verdict
from gradwatch.monitor.sinks import Record, Sink

L = require("lightning.pytorch", "lightning")
_Callback: Any = L.Callback  # a runtime import: type checkers see the base class as Any

__all__ = ["GradwatchCallback"]


class _TrainerLoggers:
    """A sink that forwards every ``every``-th record to the trainer's loggers (Lightning's own logging steps)."""

    def __init__(self, trainer: Any, every: int) -> None:
        self.trainer = trainer
        self.every = every

    def write(self, records: Sequence[Record]) -> None:
        for rec in records:
            if (rec["step"] + 1) % self.every:  # Lightning logs after steps every-1, 2·every-1, ...
                continue
            metrics = flat_metrics(rec)
            for logger in self.trainer.loggers:
                logger.log_metrics(metrics, step=rec["step"])

    def close(self) -> None:
        return None


class GradwatchCallback(_Callback):
    """Attach a :class:`gradwatch.Monitor` to the module Lightning trains.

    Args:
        sinks: extra sinks (JSONL, TensorBoard, W&B, ...) besides the trainer's loggers.
        log_to_trainer: forward records to ``trainer.loggers`` (default True).
        log_every_n_steps: forward every this many records to ``trainer.loggers``; default:
            the trainer's ``log_every_n_steps`` (1: every record). Sinks and ``history``
            get every record whatever this is.
        sync_every: host transfers every this many records; default: the trainer's
            ``log_every_n_steps``.
        **monitor_kwargs: any other :class:`~gradwatch.Monitor` argument (``include``,
            ``activations_every``, ``thresholds``, ...).

    Attributes:
        monitor: the live monitor during ``fit`` (None before).
        verdict: the verdict at the end of ``fit`` (None before).
        history: the recorded history at the end of ``fit``.
    """

    def __init__(
        self,
        *,
        sinks: Sequence[Sink] | None = None,
        log_to_trainer: bool = True,
        log_every_n_steps: int | None = None,
        sync_every: int | None = None,
        **monitor_kwargs: Any,
    ) -> None:
        super().__init__()
        self.sinks = list(sinks or [])
        self.log_to_trainer = bool(log_to_trainer)
        self.log_every_n_steps = (
            None
            if log_every_n_steps is None
            else _checks.positive_int(log_every_n_steps, "log_every_n_steps", "GradwatchCallback")
        )
        self.sync_every = sync_every
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self.verdict: Verdict | None = None
        self.history: Any = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = trainer.optimizers
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        sinks = list(self.sinks)
        every = self.log_every_n_steps or int(trainer.log_every_n_steps)
        if self.log_to_trainer and trainer.loggers and every > 0:  # log_every_n_steps=0: Lightning logs nothing
            sinks.append(_TrainerLoggers(trainer, every))
        self.monitor = Monitor(
            pl_module,
            optimizers[0] if len(optimizers) == 1 else None,
            sinks=sinks,
            sync_every=self.sync_every or max(1, int(trainer.log_every_n_steps)),
            scaler=scaler if len(optimizers) == 1 else None,
            **self.monitor_kwargs,
        )

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.monitor is not None:
            self.monitor.step()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish(trainer, quiet=True)

    def _finish(self, trainer: Any, quiet: bool = False) -> None:
        mon, self.monitor = self.monitor, None
        if mon is None:
            return
        self.history, self.verdict = close_monitor(mon)
        if not quiet and trainer.is_global_zero:
            print(f"gradwatch verdict: {self.verdict}")
