"""The monitor: hooks, statistics, verdict and sinks (torch only).

- :class:`~gradwatch.monitor.monitor.Monitor` — attach to a model, ``step()`` per optimizer step.
- :func:`~gradwatch.monitor.timeline.time_profile` — ‖∂L/∂u_t‖ for every time step.
- :func:`~gradwatch.monitor.verdict.verdict` — from statistics to a diagnosis.
- :mod:`~gradwatch.monitor.sinks` — JSONL, CSV, TensorBoard, W&B.
"""

from gradwatch.errors import GradwatchWarning, NonFiniteError
from gradwatch.monitor import sinks
from gradwatch.monitor.config import MonitorConfig
from gradwatch.monitor.history import History, NonFinite, read_jsonl
from gradwatch.monitor.monitor import Layer, Monitor
from gradwatch.monitor.store import Store
from gradwatch.monitor.timeline import TimeProfile, time_profile, track_hidden
from gradwatch.monitor.verdict import Advice, Event, Evidence, Thresholds, Verdict, verdict

__all__ = [
    "Advice",
    "Event",
    "Evidence",
    "GradwatchWarning",
    "History",
    "Layer",
    "Monitor",
    "MonitorConfig",
    "NonFinite",
    "NonFiniteError",
    "Store",
    "Thresholds",
    "TimeProfile",
    "Verdict",
    "read_jsonl",
    "sinks",
    "time_profile",
    "track_hidden",
    "verdict",
]
