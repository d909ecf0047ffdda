"""Gradient clipping: by global norm, by value, adaptive (unit-wise), and AutoClip.

- :func:`clip_grad_norm_` / :func:`clip_grad_value_` — thin wrappers over torch's own
  ``clip_grad_norm_`` / ``clip_grad_value_`` that also return what they did. Clipping by
  norm is the remedy Pascanu, Mikolov & Bengio (2013, §3.2) propose for exploding
  gradients: when ‖g‖ > threshold, g ← threshold · g / ‖g‖.
- :func:`adaptive_clip_grad_` — adaptive gradient clipping (AGC), Brock, De, Smith &
  Simonyan 2021, "High-Performance Large-Scale Image Recognition Without Normalization",
  eq. 3: unit-wise, G_i ← λ · max(‖W_i‖, ε) · G_i / ‖G_i‖ whenever
  ‖G_i‖ / max(‖W_i‖, ε) > λ, where a unit is one output row of a weight.
- :class:`AutoClip` — Seetharaman, Wichern, Pardo & Le Roux 2020, "AutoClip: Adaptive
  Gradient Clipping for Source Separation Networks": clip the global norm at the p-th
  percentile of all gradient norms seen so far (the current one included).

"Measure once, act on the measurement": :func:`clip_grad_norm_` accepts a ``total_norm``
computed elsewhere (e.g. by the monitor) instead of computing it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from gradwatch import _checks

__all__ = ["AutoClip", "ClipResult", "adaptive_clip_grad_", "clip_grad_norm_", "clip_grad_value_", "scale_grads_"]

Params = torch.Tensor | Iterable[torch.Tensor]


@dataclass(frozen=True)
class ClipResult:
    """What a clipping call did (tensors stay on the gradients' device: no host sync).

    Attributes:
        total_norm: the gradient norm before clipping (global norm, or max |g| for value clipping).
        threshold: the clipping threshold that was applied (a 0-d tensor for AutoClip).
        clipped: a 0-d bool tensor, True when any gradient was changed.
        fraction: for value and unit-wise clipping, the fraction of entries/units changed
            (0-d tensor); for norm clipping, ``clipped`` as 0. or 1.
    """

    total_norm: torch.Tensor
    threshold: float | torch.Tensor
    clipped: torch.Tensor
    fraction: torch.Tensor


def clip_grad_norm_(
    parameters: Params,
    max_norm: float,
    norm_type: float = 2.0,
    *,
    total_norm: torch.Tensor | None = None,
    error_if_nonfinite: bool = False,
) -> ClipResult:
    """Clip the global gradient norm at ``max_norm`` (torch's ``clip_grad_norm_``), and report.

    Args:
        parameters: tensors (or one tensor) whose ``.grad`` is clipped in place.
        max_norm: the threshold (> 0).
        norm_type: the p of the p-norm (torch's convention; ``inf`` for the max norm).
        total_norm: a norm already measured for these gradients; skips measuring again.
        error_if_nonfinite: as in torch.

    Returns:
        A :class:`ClipResult` whose ``total_norm`` is the norm before clipping.

    Raises:
        ConfigError: ``max_norm`` ≤ 0.
    """
    mx = _checks.interval(max_norm, "max_norm", "clip_grad_norm_", 0, low_open=True)
    params = _params_with_grads(parameters)
    if not params:
        zero = torch.zeros(())
        return ClipResult(zero, mx, torch.zeros((), dtype=torch.bool), zero)
    if total_norm is None:
        total_norm = nn.utils.get_total_norm(_grads(params), norm_type, error_if_nonfinite)
    nn.utils.clip_grads_with_norm_(params, mx, total_norm)
    clipped = total_norm > mx
    return ClipResult(total_norm, mx, clipped, clipped.float())


def clip_grad_value_(parameters: Params, clip_value: float) -> ClipResult:
    """Clip every gradient entry to [−clip_value, clip_value] (torch's ``clip_grad_value_``), and report.

    Returns:
        A :class:`ClipResult`: ``total_norm`` is max |g| before clipping and ``fraction``
        the fraction of entries that were changed.

    Raises:
        ConfigError: ``clip_value`` ≤ 0.
    """
    cv = _checks.interval(clip_value, "clip_value", "clip_grad_value_", 0, low_open=True)
    params = _params_with_grads(parameters)
    grads = _grads(params)
    if not grads:
        zero = torch.zeros(())
        return ClipResult(zero, cv, torch.zeros((), dtype=torch.bool), zero)
    with torch.no_grad():
        before = torch.stack([g.abs().amax() for g in grads]).amax()
        changed = torch.stack([(g.abs() > cv).sum() for g in grads]).sum()
        total = sum(g.numel() for g in grads)
    nn.utils.clip_grad_value_(params, cv)
    return ClipResult(before, cv, changed > 0, changed / total)


def scale_grads_(params: list[torch.Tensor], coef: torch.Tensor) -> None:
    """Multiply every gradient by the 0-d tensor ``coef`` in place, one ``_foreach_mul_`` per device and dtype.

    For clipping at a threshold that is a device tensor: ``torch.nn.utils.clip_grads_with_norm_``
    turns a tensor ``max_norm`` into a float (``float(max_norm)``: a host sync per step).
    """
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    with torch.no_grad():
        for (device, dtype), grads in groups.items():
            torch._foreach_mul_(grads, coef.to(device=device, dtype=dtype))


def _params_with_grads(parameters: Params) -> list[torch.Tensor]:
    params = [parameters] if torch.is_tensor(parameters) else list(parameters)
    return [p for p in params if p.grad is not None]


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of parameters from :func:`_params_with_grads`, in the same order."""
    return [p.grad for p in params if p.grad is not None]


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """Norm of each output unit: rows of a matrix (dims 1.. of a conv kernel); a vector is one unit."""
    if x.dim() <= 1:
        return x.norm().expand_as(x) if x.dim() == 1 else x.abs()
    dims = tuple(range(1, x.dim()))
    norms: torch.Tensor = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    return norms


def adaptive_clip_grad_(parameters: Params, clipping: float = 0.01, eps: float = 1e-3) -> ClipResult:
    """Adaptive gradient clipping (AGC, Brock et al. 2021, eq. 3), unit-wise, in place.

    For every parameter W with gradient G and every unit i (an output row),
    G_i ← λ · max(‖W_i‖, ε) / ‖G_i‖ · G_i when ‖G_i‖ / max(‖W_i‖, ε) > λ.
    The paper leaves the final classifier layer unclipped; pass only the parameters you
    want clipped.

    Args:
        parameters: the parameters (their ``.grad`` is changed in place).
        clipping: λ > 0 (the paper uses 0.01–0.16 depending on batch size).
        eps: ε > 0, keeps zero-initialized weights from freezing (paper: 1e-3).

    Returns:
        A :class:`ClipResult`: ``fraction`` is the fraction of units clipped,
        ``total_norm`` the largest ‖G_i‖/max(‖W_i‖, ε) seen.

    Raises:
        ConfigError: ``clipping`` or ``eps`` ≤ 0.
    """
    lam = _checks.interval(clipping, "clipping", "adaptive_clip_grad_", 0, low_open=True)
    e = _checks.interval(eps, "eps", "adaptive_clip_grad_", 0, low_open=True)
    params = _params_with_grads(parameters)
    worst = torch.zeros(())
    n_clipped = torch.zeros(())
    n_units = 0
    with torch.no_grad():
        for p, g in zip(params, _grads(params), strict=True):
            w_norm = _unitwise_norm(p.detach()).clamp(min=e)
            g_norm = _unitwise_norm(g)
            max_norm = w_norm * lam
            ratio = g_norm / w_norm
            trigger = g_norm > max_norm
            scale = torch.where(trigger, max_norm / g_norm.clamp(min=1e-6), torch.ones_like(g_norm))
            g.mul_(scale)
            units = ratio if p.dim() > 1 else ratio.reshape(-1)[:1]
            trig = trigger if p.dim() > 1 else trigger.reshape(-1)[:1]
            worst = torch.maximum(worst.to(units.device), units.max())
            n_clipped = n_clipped.to(trig.device) + trig.sum()
            n_units += trig.numel()
    return ClipResult(worst, lam, n_clipped > 0, n_clipped / max(n_units, 1))


class AutoClip:
    """Clip at the p-th percentile of the gradient-norm history (Seetharaman et al. 2020).

    Each call measures the global gradient norm, appends it to the history (kept on the
    gradients' device, no host sync), and clips at ``torch.quantile(history, p/100)`` with
    linear interpolation — the same as ``numpy.percentile``, which the paper's code uses.

    Args:
        percentile: p in (0, 100]; the paper recommends 10.
        norm_type: the p-norm of the measurement (2 by default).

    Example:
        >>> clip = AutoClip(percentile=10)
        >>> # in the loop, after backward():  clip(model.parameters())
    """

    def __init__(self, percentile: float = 10.0, norm_type: float = 2.0) -> None:
        self.percentile = _checks.interval(percentile, "percentile", "AutoClip", 0, 100, low_open=True)
        self.norm_type = norm_type
        self.history_: torch.Tensor | None = None

    def __call__(self, parameters: Params) -> ClipResult:
        """Measure, record and clip the gradients of ``parameters`` in place."""
        params = _params_with_grads(parameters)
        if not params:
            zero = torch.zeros(())
            return ClipResult(zero, zero, torch.zeros((), dtype=torch.bool), zero)
        norm = nn.utils.get_total_norm(_grads(params), self.norm_type).reshape(1).to(torch.float64)
        self.history_ = norm if self.history_ is None else torch.cat([self.history_, norm.to(self.history_.device)])
        threshold = torch.quantile(self.history_, self.percentile / 100.0)
        # the threshold stays a device tensor: clip_grads_with_norm_ would call float() on it (a sync)
        coef = torch.clamp(threshold / (norm[0] + 1e-6), max=1.0)  # torch's clipping coefficient
        scale_grads_(params, coef.to(norm.dtype))
        clipped = norm[0] > threshold
        return ClipResult(norm[0], threshold, clipped, clipped.float())

    @property
    def threshold(self) -> torch.Tensor | None:
        """The current threshold (the percentile of the history), or None before the first call."""
        return None if self.history_ is None else torch.quantile(self.history_, self.percentile / 100.0)
