"""Refuse computations too large for the machine before they start.

Every computation whose size a user chooses (a lab model, a training run) has an
*estimator*: peak memory and wall time on one CPU core, from its size parameters, by a
formula fitted on a 2-core CPU machine and rounded up (the estimates err on the large
side, by about 2×). :func:`enforce` compares the estimate with :func:`memory_limit` and
:data:`TIME_LIMIT` before anything is computed and, over either, raises a ConfigError that
names the parameter to lower, the largest value that fits, the estimate and the limit.

The limits are lifted by ``limits=False`` in Python, ``--no-limits`` on the command line,
or the environment variable ``GRADWATCH_NO_LIMITS=1``. docs/cli.md lists every estimator
(:data:`ESTIMATORS`); tests/cli/test_lab_properties.py checks that page against this registry.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gradwatch.errors import ConfigError

__all__ = [
    "ESTIMATORS",
    "FLAG_HINT",
    "MEMORY_CAP",
    "NO_LIMITS_ENV",
    "TIME_LIMIT",
    "Estimate",
    "Estimator",
    "enforce",
    "estimator",
    "format_bytes",
    "format_seconds",
    "limits_on",
    "markdown_table",
    "memory_limit",
]

MEMORY_CAP = 8 * 2**30  # bytes; the limit is this or half the machine's memory, whichever is smaller
TIME_LIMIT = 3600.0  # seconds of estimated wall time for one computation (a lab model, one training run)
NO_LIMITS_ENV = "GRADWATCH_NO_LIMITS"
_HUGE = 10**200  # sizes are clamped here before estimating, so formulas never overflow a float
FLAG_HINT = f"--no-limits (limits=False in Python, or {NO_LIMITS_ENV}=1) lifts the limit"


@dataclass(frozen=True)
class Estimate:
    """What a computation is expected to need: peak memory in bytes, wall time in seconds."""

    memory: float
    seconds: float


@dataclass(frozen=True)
class Estimator:
    """One limited computation, as docs/cli.md lists it.

    Attributes:
        owner: the command or function, e.g. "lab spectrum".
        parameters: the size parameters the estimate reads, with their smallest valid value.
        memory, time: the formulas in words (bytes and seconds).
        estimate: the formula itself, called with the parameters as keywords.
    """

    owner: str
    parameters: Mapping[str, int]
    memory: str
    time: str
    estimate: Callable[..., Estimate]


ESTIMATORS: dict[str, Estimator] = {}


def estimator(
    owner: str, parameters: Mapping[str, int], *, memory: str, time: str
) -> Callable[[Callable[..., Estimate]], Callable[..., Estimate]]:
    """Register an estimate function for ``owner`` (a decorator); returns the function unchanged."""

    def register(fn: Callable[..., Estimate]) -> Callable[..., Estimate]:
        ESTIMATORS[owner] = Estimator(owner, dict(parameters), memory, time, fn)
        return fn

    return register


def memory_limit() -> float:
    """The memory limit in bytes: :data:`MEMORY_CAP`, or half the machine's memory if that is less."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: the cap alone
        return float(MEMORY_CAP)
    return float(min(MEMORY_CAP, physical // 2))


def limits_on(limits: bool = True) -> bool:
    """Whether limits apply: ``limits`` is True and ``GRADWATCH_NO_LIMITS`` is not set to 1/true/yes."""
    return limits and os.environ.get(NO_LIMITS_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def format_bytes(n: float) -> str:
    """``n`` bytes in words: "512 MiB", "15.3 GiB", "2.1e+03 TiB"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:.3g} {unit}" if v < 1e4 else f"{v:.2g} {unit}"
    return f"{n:.0f} bytes"


def format_seconds(s: float) -> str:
    """``s`` seconds in words: "40 s", "12 min", "1 h", "7.2 h", "2.1e+05 days"."""
    if s < 120:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.2g} h"
    d = s / 86400
    return f"{d:.0f} days" if d < 1e4 else f"{d:.2g} days"


def _over(e: Estimate, mem_limit: float) -> bool:
    return not (e.memory <= mem_limit and e.seconds <= TIME_LIMIT)


def _largest_fit(
    fn: Callable[..., Estimate], values: Mapping[str, int], name: str, low: int, mem_limit: float
) -> int | None:
    """The largest value of ``name`` in [low, values[name]] within the limits, the others fixed (None: none fits)."""
    if _over(fn(**{**values, name: low}), mem_limit):
        return None
    if not _over(fn(**values), mem_limit):
        return int(values[name])
    lo, hi = low, int(values[name])  # invariant: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _over(fn(**{**values, name: mid}), mem_limit):
            hi = mid
        else:
            lo = mid
    return lo


def enforce(
    owner: str, values: Mapping[str, int], *, context: Mapping[str, object] | None = None, limits: bool = True
) -> Estimate:
    """Estimate the computation of ``owner`` at ``values``; refuse it when over a limit.

    Args:
        owner: a name registered with :func:`estimator`.
        values: every size parameter of the estimator (already validated integers).
        context: other keywords the estimate reads but that are not sizes (a cell kind, a
            task's input width); they are never named as the parameter to lower.
        limits: False lifts the limits (so does ``GRADWATCH_NO_LIMITS=1``).

    Returns:
        The estimate.

    Raises:
        ConfigError: over a limit, naming the parameter that is easiest to fix (the one whose
            largest fitting value, the others as given, is the largest fraction of its value),
            that value, the estimate and the limit.
    """
    est = ESTIMATORS[owner]
    # a 400-digit integer is a valid int but no float: clamp, the verdict is the same
    given, values = values, {k: min(int(v), _HUGE) for k, v in values.items()}
    fn = functools.partial(est.estimate, **(context or {}))
    estimate = fn(**values)
    mem_limit = memory_limit()
    if not limits_on(limits) or not _over(estimate, mem_limit):
        return estimate
    over = []
    if estimate.memory > mem_limit:
        over.append(f"about {format_bytes(estimate.memory)} of memory (the limit is {format_bytes(mem_limit)})")
    if estimate.seconds > TIME_LIMIT:
        over.append(
            f"about {format_seconds(estimate.seconds)} on one CPU core (the limit is {format_seconds(TIME_LIMIT)})"
        )
    need = " and ".join(over)
    best: tuple[float, str, int] | None = None
    for name, low in est.parameters.items():
        if values[name] <= low:
            continue
        fit = _largest_fit(fn, values, name, low, mem_limit)
        if fit is not None and (best is None or fit / values[name] > best[0]):
            best = (fit / values[name], name, fit)
    if best is None:  # no one size can fix it: give each one's bound with the others at their smallest
        sizes = ", ".join(f"{k}={v}" for k, v in given.items())
        smallest = {k: est.parameters.get(k, v) for k, v in values.items()}
        bounds = []
        for name in est.parameters:
            fit = _largest_fit(fn, {**smallest, name: values[name]}, name, est.parameters[name], mem_limit)
            if fit is not None and fit < values[name]:
                bounds.append(f"{name} must be <= {fit}")
        raise ConfigError(
            f"The sizes {sizes} of {owner} are too large together ({need}): with the others at their smallest, "
            f"{', '.join(bounds)}; {FLAG_HINT}."
        )
    _, name, fit = best
    raise ConfigError(
        f"The '{name}' parameter of {owner} must be <= {fit} with the other values given "
        f"({given[name]} needs {need}); {FLAG_HINT}."
    )


def markdown_table() -> str:
    """The registered estimators as the Markdown table docs/cli.md shows (a test keeps the page equal to this).

    Estimators register when their module is imported (``gradwatch.experiments.spec``,
    ``gradwatch.report.lab_sizes``); this module imports neither, being below both.
    """
    rows = [
        "| computation | size parameters | memory estimate (bytes) | time estimate |",
        "|---|---|---|---|",
    ]
    for name in sorted(ESTIMATORS):
        e = ESTIMATORS[name]
        params = ", ".join(f"`{p}`" for p in e.parameters)
        rows.append(f"| `{e.owner}` | {params} | {e.memory} | {e.time} |")
    return "\n".join(rows)
