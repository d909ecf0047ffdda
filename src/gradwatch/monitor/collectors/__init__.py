"""Collectors: one statistic family each, with its own period and a documented cost.

The monitor (:mod:`gradwatch.monitor.monitor`) runs them in this order at each recorded
step; each one's docstring says what it reads, how many passes it makes, and that it makes
no host sync.

- :class:`GradNorms` — ‖g‖₂ and max |g| per layer, global ‖g‖₂ (every recorded step).
- :class:`Loss` — the loss passed to ``step``.
- :class:`Weights` — ‖θ‖ and the update ratio ‖Δθ‖/‖θ‖ (``weights_every``).
- :class:`Activations` — saturated/dead fraction and std (``activations_every``).
- :class:`TimeProfile` — ‖∂L/∂u_t‖ per time step (``time_profile_every``).
- :class:`Lyapunov` — λ_1..λ_k of each fused recurrent module (``lyapunov_every``).
- :class:`AmpScaler` — loss scale, skipped steps, 1/scale while gradients are scaled.
- :class:`Clipping` — pre/post-clip norms; clipping with the measured norms.
- :class:`NonFiniteOrigin` — the first NaN/Inf and where it came from.
"""

from gradwatch.monitor.collectors.activations import Activations, activation_kind
from gradwatch.monitor.collectors.amp import AmpScaler
from gradwatch.monitor.collectors.base import Batch, Collector, Loop, Params, StepContext
from gradwatch.monitor.collectors.clipping import Clipping
from gradwatch.monitor.collectors.grads import GradNorms, Loss
from gradwatch.monitor.collectors.lyapunov import Lyapunov
from gradwatch.monitor.collectors.nonfinite import NonFiniteOrigin
from gradwatch.monitor.collectors.time_profile import TimeProfile
from gradwatch.monitor.collectors.weights import Weights

__all__ = [
    "Activations",
    "AmpScaler",
    "Batch",
    "Clipping",
    "Collector",
    "GradNorms",
    "Loop",
    "Loss",
    "Lyapunov",
    "NonFiniteOrigin",
    "Params",
    "StepContext",
    "TimeProfile",
    "Weights",
    "activation_kind",
]
