"""The exceptions gradwatch raises.

::

    GradwatchError                       every error gradwatch raises on purpose
     ├── ConfigError (ValueError)        a parameter outside its valid range or set
     ├── OutputError (OSError)           a path gradwatch was asked to write cannot be written
     ├── NonFiniteError (FloatingPointError)  Monitor.step(on_nonfinite="raise") met a NaN/Inf
     └── SinkClosedError                 a sink was written after it was closed

    GradwatchWarning (UserWarning)       a recoverable problem gradwatch noticed (it keeps going)

The command line turns any ``GradwatchError`` into one red line and exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "ConfigError",
    "GradwatchError",
    "GradwatchWarning",
    "NonFiniteError",
    "OutputError",
    "SinkClosedError",
    "check_writable",
]


class GradwatchError(Exception):
    """Base class of every error that gradwatch raises on purpose."""


class ConfigError(GradwatchError, ValueError):
    """A parameter is outside its valid range or set of choices."""


class OutputError(GradwatchError, OSError):
    """A path that gradwatch was asked to write cannot be written."""


class NonFiniteError(GradwatchError, FloatingPointError):
    """Raised by ``Monitor.step`` with ``on_nonfinite="raise"`` when a NaN/Inf is recorded."""


class SinkClosedError(GradwatchError):
    """A sink was written after it was closed."""


class GradwatchWarning(UserWarning):
    """A recoverable problem gradwatch noticed (it keeps going)."""


def out_of_range(name: str, owner: str, constraint: str, value: object) -> ConfigError:
    """Build the one-format parameter error: "The 'x' parameter of f must be ... Got v instead."."""
    return ConfigError(f"The '{name}' parameter of {owner} must be {constraint}. Got {value!r} instead.")


def not_one_of(name: str, owner: str, choices: Iterable[str], value: object) -> ConfigError:
    """Build the error for a value outside a set of named choices, listing the valid ones."""
    listed = ", ".join(repr(c) for c in sorted(choices))
    return ConfigError(f"The '{name}' parameter of {owner} must be one of {listed}. Got {value!r} instead.")


def check_writable(path: str | Path, what: str = "output file") -> Path:
    """Fail early, before any computation, when ``path`` cannot be written.

    Args:
        path: a file path that will be written later.
        what: how to name the path in the error message.

    Returns:
        The path as a ``Path``.

    Raises:
        OutputError: the parent folder does not exist, is not a folder, is not writable,
            or the path itself is an existing folder.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputError(f"Cannot write the {what} {str(p)!r}: it is an existing folder.")
    if not parent.is_dir():
        raise OutputError(f"Cannot write the {what} {str(p)!r}: folder {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Cannot write the {what} {str(p)!r}: folder {str(parent)!r} is not writable.")
    return p
