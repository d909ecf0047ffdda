"""Shared by the robustness tests (issue 15): what a usage error must look like, hypothesis settings.

A bad input ends in exit code 2 and ONE line on stderr naming the parameter and what is
valid; never a traceback. The property tests are deterministic (``derandomize``).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Deterministic (derandomize) and bounded: the examples are the same on every run, and the
# function-scoped fixtures (the in-process CLI, tmp_path) are safe to share between them.
PROPERTY = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,  # a hang is caught by each test's own clock, measured where the work is
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


# how a message says what is valid: a range or a set ("must be ..."), or the valid choices
VALID_WORDS = ("must", "valid", "Invalid value", "key=number", "applies", "takes", "works with", "goes with", "needs")


def assert_usage_error(
    result, *words: str, names: frozenset[str] | set[str] = frozenset(), says_valid: bool = True
) -> str:
    """Exit code 2 and exactly one line on stderr, "error: ...", saying what is valid; returns the line.

    Args:
        result: the CliResult.
        words: strings the line must contain.
        names: when given, the line must contain at least one of them (the parameter's name).
        says_valid: the line must say what is valid (not for a path that is missing or no file).
    """
    assert result.code == 2, f"exit {result.code}: {result.err}"
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    line = lines[0]
    for w in words:
        assert w in line, (w, line)
    assert not says_valid or any(v in line for v in VALID_WORDS), f"says nothing of what is valid: {line}"
    if names:
        assert any(n in line for n in names), f"names no parameter: {line}"
    return line
