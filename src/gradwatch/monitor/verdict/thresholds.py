"""The numbers every verdict rule compares against (see :mod:`gradwatch.monitor.verdict`)."""

from __future__ import annotations

from dataclasses import dataclass

from gradwatch import _checks
from gradwatch.errors import out_of_range

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """The verdict's thresholds; the package docstring states the rule each one belongs to.

    Ratios are dimensionless; ``spike_scale_floor`` is in natural-log units; the Lyapunov
    thresholds are in nats per time step; ``window`` is a
    fraction of the recorded steps; ``spike_window``, ``spike_history``, ``start_records`` and ``clip_window``
    count recorded steps.

    Raises:
        ConfigError: a value out of its range (one sentence naming it).
    """

    # the shape of the gradient at one time: over depth, over time steps, in size
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    time_vanishing_ratio: float = 1e-3
    time_exploding_ratio: float = 1e3
    growth_ratio: float = 1e3
    relative_grad_high: float = 1e3
    saturation_high: float = 0.9
    saturation_note: float = 0.5
    window: float = 0.2
    # events over training
    spike_z: float = 6.0
    spike_ratio: float = 10.0
    loss_spike_ratio: float = 2.0
    spike_window: int = 20
    spike_history: int = 10
    start_records: int = 3
    spike_scale_floor: float = 0.1
    blowup_ratio: float = 10.0
    param_rms_floor: float = 0.1
    update_ratio_high: float = 0.1
    divergence_ratio: float = 1e3
    divergence_loss_ratio: float = 10.0
    loss_rising_ratio: float = 1.5
    loss_rising_share: float = 0.25
    chance_ratio: float = 1.5
    clip_saturated_rate: float = 0.95
    clip_window: int = 20
    # the recurrent dynamics (nats per time step)
    lyapunov_exploding: float = 0.1
    lyapunov_vanishing: float = 1.0

    def __post_init__(self) -> None:
        owner = "Thresholds"
        for name in ("vanishing_ratio", "time_vanishing_ratio"):
            _checks.interval(getattr(self, name), name, owner, 0, 1, low_open=True, high_open=True)
        for name in (
            "exploding_ratio",
            "time_exploding_ratio",
            "growth_ratio",
            "spike_ratio",
            "loss_spike_ratio",
            "blowup_ratio",
            "divergence_ratio",
            "divergence_loss_ratio",
            "loss_rising_ratio",
            "chance_ratio",
        ):
            _checks.interval(getattr(self, name), name, owner, 1, low_open=True)
        for name in (
            "relative_grad_high",
            "update_ratio_high",
            "spike_z",
            "spike_scale_floor",
            "param_rms_floor",
            "lyapunov_exploding",
            "lyapunov_vanishing",
        ):
            _checks.interval(getattr(self, name), name, owner, 0, low_open=True)
        for name in ("saturation_high", "saturation_note", "window", "loss_rising_share", "clip_saturated_rate"):
            _checks.interval(getattr(self, name), name, owner, 0, 1, low_open=True)
        for name in ("spike_window", "clip_window"):
            _checks.positive_int(getattr(self, name), name, owner, minimum=2)
        _checks.positive_int(self.spike_history, "spike_history", owner)
        _checks.positive_int(self.start_records, "start_records", owner)
        if self.spike_history > self.spike_window:
            raise out_of_range(
                "spike_history", owner, f"an integer <= spike_window ({self.spike_window})", self.spike_history
            )
