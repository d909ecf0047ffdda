"""gradwatch: see, explain and fix vanishing and exploding gradients in PyTorch models.

The public API is re-exported here; nothing else lives in this module.
"""

from importlib.metadata import PackageNotFoundError, version

from gradwatch import monitor, sinks, theory
from gradwatch.errors import ConfigError, GradwatchError, OutputError
from gradwatch.monitor import (
    GradwatchWarning,
    History,
    Monitor,
    NonFinite,
    NonFiniteError,
    Thresholds,
    TimeProfile,
    Verdict,
    read_jsonl,
    time_profile,
    track_hidden,
    verdict,
)

try:
    __version__ = version("gradwatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "ConfigError",
    "GradwatchError",
    "GradwatchWarning",
    "History",
    "Monitor",
    "NonFinite",
    "NonFiniteError",
    "OutputError",
    "Thresholds",
    "TimeProfile",
    "Verdict",
    "__version__",
    "monitor",
    "read_jsonl",
    "sinks",
    "theory",
    "time_profile",
    "track_hidden",
    "verdict",
]
