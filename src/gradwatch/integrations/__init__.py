"""Drop-in adapters for trainers (each an optional extra; they import the monitor only).

- :mod:`gradwatch.integrations.lightning` — ``GradwatchCallback`` for Lightning 2.x
  (``pip install "gradwatch[lightning]"``).
- :mod:`gradwatch.integrations.hf` — ``GradwatchCallback`` for the Hugging Face
  ``Trainer`` (``pip install "gradwatch[hf]"``).

The TensorBoard and W&B sinks (:mod:`gradwatch.sinks`) work from both: pass ``sinks=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradwatch.errors import ConfigError
from gradwatch.monitor import History, Monitor, Verdict
from gradwatch.monitor.sinks import flat_scalars

__all__ = ["close_monitor", "flat_metrics", "require"]


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or fail with the install command that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f'This integration needs the {module!r} package: pip install "gradwatch[{extra}]".') from None


def flat_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """One monitor record as ``{"gradwatch/...": float}``, the shape loggers take."""
    return flat_scalars(record)


def close_monitor(mon: Monitor) -> tuple[History, Verdict]:
    """The end of a fit: the monitor's history and verdict, then close it (hooks off, sinks flushed) whatever happens."""
    try:
        return mon.history, mon.verdict()
    finally:
        mon.close()
