"""From recorded statistics to a verdict: vanishing, exploding, nonfinite or healthy — with events.

:func:`verdict` reads a :class:`~gradwatch.monitor.history.History` (live, or a JSONL log read
back: the same numbers give the same verdict) and returns a :class:`Verdict`: ``status``,
``where``, ``evidence``, ``advice`` and ``events`` (what happened when, sorted by step). Each
rule is a small function over the history, tested alone; every threshold is a field of
:class:`Thresholds` (default in parentheses; a test checks that these numbers are the
defaults, so text and code cannot drift).

**Roles.** Layers carry a role (:mod:`gradwatch.monitor.roles`): recurrent, embedding, norm,
attention, conv, linear, other. Depth rules skip embeddings (most rows idle in a batch) and
normalization layers, and in a recurrent model compare recurrent layers only (their gradient
sums over time steps); an embedding's RMS gradient runs over the rows that received gradient.
The model's family (recurrent, transformer, convolutional, feed-forward) chooses the advice.

**Events** (``Event(step, kind, layer, value, baseline, sentence)``; robust statistics, so that
ordinary noise, warm-up and a decreasing loss raise none):

- ``grad_spike`` — a layer's or the global ‖g‖ is ``spike_ratio`` (10)× the median of its
  previous ``spike_window`` (20) records, with at least ``spike_history`` (10) of them, and
  its robust z-score on log ‖g‖ exceeds ``spike_z`` (6): (ln x − median) / max(1.4826 MAD,
  ``spike_scale_floor`` (0.1)). Consecutive flagged steps are one event; attributed to the
  layer whose norm jumped the most. (A MAD of fewer values is too uncertain: the first
  records of a run have no spikes, and an explosion there is found by the rules below.)
- ``loss_spike`` — the same on a positive loss with ``loss_spike_ratio`` (2)×, and the loss
  above its start. A series' *start* is the median of its first ``start_records`` (3) records.
- ``param_blowup`` — a layer's ‖θ‖ reaches ``blowup_ratio`` (10)× its first measurement,
  floored at an RMS entry of ``param_rms_floor`` (0.1) (so a zero-initialized layer that
  starts to learn is not a blow-up).
- ``update_ratio_high`` — an update ‖Δθ‖ exceeds ``update_ratio_high`` (0.1) of ‖θ‖ (same
  floor); healthy training moves weights by ~1e-3 of their norm per step.
- ``divergence`` — the global ‖g‖ reaches ``divergence_ratio`` (1000)× its start, or the loss
  (median of 3 consecutive records) ``divergence_loss_ratio`` (10)× its start.
- ``loss_rising`` — the loss's running median (of max(10, S/5) records) ends
  ``loss_rising_ratio`` (1.5)× above its lowest, having given back at least
  ``loss_rising_share`` (0.25) of what it had gained, by more than ``spike_z`` standard
  errors of a difference of two such medians (the batch-to-batch noise, from a MAD).
- ``loss_above_chance`` — with ``verdict(..., chance_loss=)``: the loss (median of 3 records)
  stays ``chance_ratio`` (1.5)× above the chance level.
- ``clip_saturated`` — the gradient was clipped on ``clip_saturated_rate`` (0.95) of
  ``clip_window`` (20) consecutive records.
- ``saturation`` — an activation module's saturated or dead fraction first exceeds
  ``saturation_high`` (0.9).
- ``nonfinite`` — the first NaN/Inf (below).

Only ``divergence``, ``param_blowup`` and ``nonfinite`` (:data:`ALARM_KINDS`) decide a status
on their own; the others are reported.

**Status**, in this order of precedence:

1. **nonfinite** — a NaN/Inf in the loss passed to ``step``, in any layer's gradient norm (an
   infinite norm counts unless max |g| is known finite: that is a float32 overflow), in a
   weight norm, or the monitor's own flag (``history.nonfinite``) — on steps a GradScaler did
   not skip. Advice follows the origin: forward (a non-finite loss or forward output) →
   guard the numerics, check the data; backward → clip, guard the numerics, lower the LR, a
   GradScaler for fp16; after an explosion → clip and lower the LR first.
2. **exploding** — any of:
   - a ``divergence`` or ``param_blowup`` event: told as a sequence from its onset (the
     earliest spike chained to it by gaps of at most ``spike_window`` records): "exploding
     at step 3 in “rnn” (‖g‖ 0.14 → 1.5e2, ‖θ‖ of “rnn” ×1.6e3), then saturated" — an
     explosion that precedes saturation is an explosion;
   - over depth: the first layer's RMS gradient exceeds the last's by ``exploding_ratio``
     (1000) (median over the latest ``window`` (0.2) of records);
   - over time: ‖∂L/∂u_0‖ exceeds ‖∂L/∂u_{T−1}‖ by ``time_exploding_ratio`` (1000);
   - recurrent dynamics (``Monitor(lyapunov_every=...)``): a recurrent module's largest
     Lyapunov exponent λ₁ exceeds ``lyapunov_exploding`` (0.1) nats per time step, at its
     latest measurement and as the median over the latest ``window`` of records;
   - over training: the global ‖g‖ grew ``growth_ratio`` (1000)× from the first window to the
     latest; or the global ‖g‖/‖θ‖ exceeds ``relative_grad_high`` (1000);
   - a layer's norm overflowed float32 while max |g| stayed finite.
3. **vanishing** — any of:
   - over depth: the first layer's RMS gradient is below ``vanishing_ratio`` (0.001) of the
     largest layer's, at the start of training or recently;
   - over time: ‖∂L/∂u_0‖ is below ``time_vanishing_ratio`` (0.001) of the largest ‖∂L/∂u_t‖;
   - recurrent dynamics: λ₁ is below −``lyapunov_vanishing`` (1) nats per time step (the
     memory shrinks by e⁻¹⁰ every 10 steps), latest and median as above;
   - every gradient is exactly zero (recently) — fp16 underflow without loss scaling;
   - an activation module has more than ``saturation_high`` (0.9) of its units saturated
     (σ′ < 1 % of its maximum) or dead; above ``saturation_note`` (0.5) it is a note.
4. **healthy** otherwise.

Advice names remedies by their registry names (data, not imports): see
:mod:`gradwatch.monitor.verdict.advice`.
"""

from gradwatch.monitor.verdict.base import (
    ALARM_KINDS,
    EVENT_KINDS,
    STATUSES,
    Advice,
    Event,
    Evidence,
    Verdict,
)
from gradwatch.monitor.verdict.core import verdict
from gradwatch.monitor.verdict.thresholds import Thresholds

__all__ = ["ALARM_KINDS", "EVENT_KINDS", "STATUSES", "Advice", "Event", "Evidence", "Thresholds", "Verdict", "verdict"]
