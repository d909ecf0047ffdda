"""Validation at the public boundary: one sentence per bad value (see errors.py)."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np

from gradwatch.errors import ConfigError, not_one_of, out_of_range

__all__ = [
    "MAX_SEED",
    "boolean",
    "choice",
    "finite",
    "interval",
    "out_of_range",
    "positive_int",
    "read_text",
    "readable_file",
    "seed",
]

MAX_SEED = 2**32 - 1  # numpy's legacy seeding and most tools accept [0, 2**32); torch accepts more


def positive_int(value: object, name: str, owner: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ≥ ``minimum`` (default 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise out_of_range(name, owner, f"an integer >= {minimum}", value)
    return int(value)


def finite(value: object, name: str, owner: str) -> float:
    """Return ``value`` as float if it is a finite real number, else raise ConfigError.

    A string ("0.1") or a bool is not a number here: a config file that quotes a number or
    writes ``true`` has a typo, and accepting it would store the wrong type in the spec.
    """
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise out_of_range(name, owner, "a finite real number", value)
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise out_of_range(name, owner, "a finite real number", value) from None
    if not math.isfinite(v):
        raise out_of_range(name, owner, "a finite real number", value)
    return v


def interval(
    value: object,
    name: str,
    owner: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as float if it lies in the interval, else raise ConfigError.

    The interval is written in the message in the usual notation, e.g. ``in (0, 1]``.
    """
    v = finite(value, name, owner)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if too_low or too_high:
        raise out_of_range(name, owner, _describe(low, high, low_open, high_open), value)
    return v


def _describe(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {_fmt(low)}"
    if math.isinf(low):
        return f"{'<' if high_open else '<='} {_fmt(high)}"
    return f"in {'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open else ']'}"


def choice(value: object, name: str, owner: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ConfigError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise not_one_of(name, owner, choices, value)
    return value


def boolean(value: object, name: str, owner: str) -> bool:
    """Return ``value`` if it is a bool (True/False, not "yes" or 1), else raise ConfigError."""
    if not isinstance(value, (bool, np.bool_)):
        raise out_of_range(name, owner, "true or false", value)
    return bool(value)


def seed(value: object, name: str, owner: str) -> int:
    """Return ``value`` if it is an integer seed in [0, 2**32 − 1], else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SEED:
        raise out_of_range(name, owner, f"an integer in [0, {MAX_SEED}]", value)
    return int(value)


def readable_file(path: str | Path, what: str) -> Path:
    """Return ``path`` if it names a regular file this process may read, else raise ConfigError.

    The message says which: no such file, a folder, not a regular file (a device such as
    /dev/zero, a pipe: reading those may never end), or no permission.
    """
    p = Path(path)
    where = f"Cannot read the {what} {str(p)!r}"
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file.") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{where}: it is a folder, not a file.")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{where}: it is not a regular file (a device, pipe or socket).")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{where}: permission denied.")
    return p


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of a regular file; a missing, special, unreadable or binary file raises ConfigError."""
    p = readable_file(path, what)
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Cannot read the {what} {str(p)!r}: it is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Cannot read the {what} {str(p)!r}: {exc.strerror or exc}.") from None


def _fmt(x: float) -> str:
    return f"{x:g}"
