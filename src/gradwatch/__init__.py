"""gradwatch: see, explain and fix vanishing and exploding gradients in PyTorch models.

The public API is re-exported here; nothing else lives in this module.
"""

from importlib.metadata import PackageNotFoundError, version

from gradwatch import theory
from gradwatch.errors import ConfigError, GradwatchError, OutputError

try:
    __version__ = version("gradwatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["ConfigError", "GradwatchError", "OutputError", "__version__", "theory"]
