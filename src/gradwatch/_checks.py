"""Validation at the public boundary: one sentence per bad value (see errors.py)."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.errors import not_one_of, out_of_range

__all__ = ["choice", "finite", "interval", "out_of_range", "positive_int"]


def positive_int(value: object, name: str, owner: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ≥ ``minimum`` (default 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise out_of_range(name, owner, f"an integer >= {minimum}", value)
    return int(value)


def finite(value: object, name: str, owner: str) -> float:
    """Return ``value`` as float if it is a finite real number, else raise ConfigError."""
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
    if value not in choices:
        raise not_one_of(name, owner, choices, value)
    return str(value)


def _fmt(x: float) -> str:
    return f"{x:g}"
