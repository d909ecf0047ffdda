"""How much memory and time each lab model needs, estimated from its sizes (see gradwatch._limits).

The formulas were fitted on a 2-core CPU machine at a few sizes per model and rounded up;
each ``lab_*`` function calls :func:`gradwatch._limits.enforce` with its owner name before
computing anything. docs/cli.md lists them (a test compares that page with this registry).
"""

from __future__ import annotations

from gradwatch import _limits
from gradwatch.errors import ConfigError

__all__ = ["check_doya_eps"]


@_limits.estimator(
    "lab rnn",
    {"hidden": 1, "steps": 1, "n_input": 1},
    memory="8 bytes × (2 × steps × (hidden² + hidden × n_input + hidden) + 8 × hidden² + 4 × steps × hidden) "
    "+ 600 bytes × steps",
    time="0.5 s + steps × (0.3 ms + 1.7 ns × hidden³)",
)
def _rnn_size(*, hidden: int, steps: int, n_input: int) -> _limits.Estimate:
    n, T, m = float(hidden), float(steps), float(n_input)
    memory = 8 * (2 * T * (n * n + n * m + n) + 8 * n * n + 4 * T * n) + 600 * T
    return _limits.Estimate(memory, 0.5 + T * (3e-4 + 1.7e-9 * n**3) + 1e-8 * T * n * (n + m))


@_limits.estimator(
    "lab note3", {"n": 1}, memory="300 bytes × n (the norms, as numbers, JSON and a table)", time="0.5 s + 50 µs × n"
)
def _note3_size(*, n: int) -> _limits.Estimate:
    return _limits.Estimate(300.0 * n, 0.5 + 5e-5 * n)


_SPECTRUM_GATES = {"lstm": 4, "gru": 3, "rnn": 1, "linear": 1}


@_limits.estimator(
    "lab spectrum",
    {"hidden": 1, "steps": 1, "input_size": 1, "burn_in": 0},
    memory="8 bytes × (steps × n + 8 × n² + (burn_in + steps) × input_size + 4 × n × gates × hidden) "
    "+ 12 bytes × gates × hidden × (hidden + input_size) + 600 bytes × steps; n = 2 × hidden for lstm, "
    "else hidden; gates 4 (lstm), 3 (gru), 1 (rnn, linear)",
    time="0.5 s + steps × (1 ms + 40 µs × gates × n + 1 ns × (n³ + n × gates × hidden × (hidden + input_size))) "
    "+ burn_in × (0.2 ms + 2 ns × gates × hidden × (hidden + input_size))",
)
def _spectrum_size(*, hidden: int, steps: int, input_size: int, burn_in: int, cell: str = "lstm") -> _limits.Estimate:
    G = _SPECTRUM_GATES.get(cell, 4)
    H, T, m, burn = float(hidden), float(steps), float(input_size), float(burn_in)
    n = 2 * H if cell == "lstm" else H
    cell_flops = G * H * (H + m)
    memory = 8 * (T * n + 8 * n * n + (burn + T) * m + 4 * n * G * H) + 12 * cell_flops + 600 * T
    seconds = 0.5 + T * (1e-3 + 4e-5 * G * n + 1e-9 * (n**3 + n * cell_flops)) + burn * (2e-4 + 2e-9 * cell_flops)
    return _limits.Estimate(memory, seconds)


_HYSTERESIS_SECONDS = 0.012  # × 1/ε: the hysteresis sweep settles 402 states in ~50/ε map steps each


@_limits.estimator(
    "lab doya",
    {"steps": 1},
    memory="40 KiB × steps (autograd through the map for 404 initial states)",
    time="0.5 s + 0.7 ms × steps + 12 ms / eps (the hysteresis sweep)",
)
def _doya_size(*, steps: int, eps: float = 0.1) -> _limits.Estimate:
    return _limits.Estimate(4e4 * steps, 0.5 + 7e-4 * steps + _HYSTERESIS_SECONDS / eps)


def check_doya_eps(eps: float, *, limits: bool = True) -> None:
    """Refuse an ε so small that the hysteresis sweep alone would run past the time limit.

    Raises:
        ConfigError: naming ``eps``, the smallest ε that fits, the estimate and the limit.
    """
    seconds = _HYSTERESIS_SECONDS / eps
    if _limits.limits_on(limits) and seconds > _limits.TIME_LIMIT:
        floor = _HYSTERESIS_SECONDS / _limits.TIME_LIMIT
        raise ConfigError(
            f"The 'eps' parameter of lab doya must be >= {floor:.2g} ({eps:g} needs about "
            f"{_limits.format_seconds(seconds)} for the hysteresis sweep (the limit is "
            f"{_limits.format_seconds(_limits.TIME_LIMIT)})); {_limits.FLAG_HINT}."
        )


@_limits.estimator(
    "lab landscape",
    {"steps": 1},
    memory="110 KiB × steps (autograd through the map for 2,802 biases)",
    time="0.5 s + 0.5 ms × steps",
)
def _landscape_size(*, steps: int) -> _limits.Estimate:
    return _limits.Estimate(1.1e5 * steps, 0.5 + 5e-4 * steps)
