"""gradwatch: see, explain and fix vanishing and exploding gradients in PyTorch models.

The public API is re-exported here; nothing else lives in this module. Everything but the
exceptions is loaded on first use (PEP 562), so ``import gradwatch`` imports neither torch
nor matplotlib: ``gw.Monitor``, ``gw.models.mlp(...)`` or ``from gradwatch import Monitor``
import what they need when they are first reached.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradwatch.errors import ConfigError, GradwatchError, GradwatchWarning, NonFiniteError, OutputError

if TYPE_CHECKING:
    from gradwatch import (
        diagnose,
        experiments,
        integrations,
        models,
        monitor,
        remedies,
        report,
        reproduce,
        sinks,
        tasks,
        theory,
    )
    from gradwatch.monitor import (
        Event,
        History,
        Monitor,
        MonitorConfig,
        NonFinite,
        Thresholds,
        TimeProfile,
        Verdict,
        read_jsonl,
        time_profile,
        track_hidden,
    )
    from gradwatch.monitor.verdict import verdict  # not via gradwatch.monitor: mypy takes the name for the submodule

    __version__: str
    """The installed distribution's version, read from its metadata (pyproject.toml's ``version``)."""

_SUBPACKAGES = frozenset(
    {
        "diagnose",
        "experiments",
        "integrations",
        "models",
        "monitor",
        "remedies",
        "report",
        "reproduce",
        "sinks",
        "tasks",
        "theory",
    }
)
# the monitor's names re-exported here
_FROM_MONITOR = frozenset(
    {
        "Event",
        "History",
        "Monitor",
        "MonitorConfig",
        "NonFinite",
        "Thresholds",
        "TimeProfile",
        "Verdict",
        "read_jsonl",
        "time_profile",
        "track_hidden",
        "verdict",
    }
)

__all__ = [
    "ConfigError",
    "Event",
    "GradwatchError",
    "GradwatchWarning",
    "History",
    "Monitor",
    "MonitorConfig",
    "NonFinite",
    "NonFiniteError",
    "OutputError",
    "Thresholds",
    "TimeProfile",
    "Verdict",
    "__version__",
    "diagnose",
    "experiments",
    "integrations",
    "models",
    "monitor",
    "read_jsonl",
    "remedies",
    "report",
    "reproduce",
    "sinks",
    "tasks",
    "theory",
    "time_profile",
    "track_hidden",
    "verdict",
]


def __getattr__(name: str) -> Any:
    """Import a subpackage or a re-exported name on first access, then keep it (PEP 562)."""
    if name in _SUBPACKAGES:
        value: Any = importlib.import_module(f"gradwatch.{name}")
    elif name in _FROM_MONITOR:
        value = getattr(importlib.import_module("gradwatch.monitor"), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module 'gradwatch' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"
