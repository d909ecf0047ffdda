"""``gradwatch.sinks``: where monitor records go (re-exported from gradwatch.monitor.sinks)."""

from gradwatch.monitor.sinks import CSV, JSONL, Sink, SinkClosedError, TensorBoard, WandB

__all__ = ["CSV", "JSONL", "Sink", "SinkClosedError", "TensorBoard", "WandB"]
