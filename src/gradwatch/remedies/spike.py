"""Spike control: skip an optimizer step, or clip it adaptively (ZClip), when the loss or ‖g‖ spikes.

Both remedies score a scalar of each step — the global gradient norm ‖g‖ and/or the loss —
against a running mean and variance, and act when its z-score is too high. Every decision
stays on the device: the statistics are 0-d tensors, the decision is a 0-d bool tensor, and
acting on it is arithmetic (a bitwise select, a clipping coefficient), never a Python
``if`` on a tensor. A training step makes no host sync (tested with a ``TorchDispatchMode``).

- :class:`EmaZScore` — the statistics: a warm-up of ``warmup`` values (their mean and
  population variance), then exponential moving averages, as in ZClip (Kumar et al. 2025,
  Algorithm 1): μ ← α μ + (1−α) x, σ² ← α σ² + (1−α) (x − μ)² (the new μ), and
  z = (x − μ) / (σ + ε) against the statistics *before* x.
- :class:`SkipStepOnSpike` — the step whose ‖g‖ and/or loss has z > ``z_thresh`` (or is
  NaN/Inf) is skipped, and does not update the statistics: per step and automatic, what
  PaLM (Chowdhery et al. 2022, §5.1) did by hand, restarting before each spike and skipping
  200–500 batches.
- :func:`skip_step_` — the acting half for manual loops: run ``optimizer.step()`` and undo
  it, parameters *and* optimizer state, where a 0-d bool tensor says so.
- :class:`ZClip` — Kumar, Owen, Roy Chowdhury & Güra 2025, "ZClip: Adaptive Spike
  Mitigation for LLM Pre-Training" (arXiv:2504.02507): when z > z_thres, clip ‖g‖ to
  μ + (z_thres² / z) σ (their "reciprocal" rule) and feed the clipped norm to the EMA.

Why skipping restores rather than zeroing the gradient: with momentum or Adam a zero
gradient still moves the weights (SGD: θ ← θ − lr μ b; Adam: m and v decay and θ moves by
m̂/√v̂), and it changes the optimizer's state, so the step is not skipped. Without a host
sync we cannot *not call* ``optimizer.step()``; instead we copy the parameters and the
optimizer's state tensors before the step and put them back after it where ``skip``, by a
bitwise select on integer views (``after = (before & m) | (after & ~m)``, m all ones or
zeros): exact and NaN-safe, unlike a blend ``after + skip · (before − after)`` (a NaN
update stays NaN), and faster on CPU than ``torch.where`` with a 0-d condition. The cost is
one copy of the parameters and the state and three cheap passes per step
(docs/benchmarks.md). ``mode="zero"`` (zero the gradient where skipped: no copies) is
offered for plain SGD, where it is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradwatch import _checks
from gradwatch.errors import ConfigError
from gradwatch.remedies.clipping import ClipResult, scale_grads_

__all__ = ["SPIKE_ON", "ZCLIP_RULES", "EmaZScore", "SkipStepOnSpike", "StepLog", "ZClip", "skip_step_"]

Params = torch.Tensor | Iterable[torch.Tensor]

SPIKE_ON = ("norm", "loss", "both")
"""What :class:`SkipStepOnSpike` scores: the global gradient norm, the loss, or both (either spikes)."""

ZCLIP_RULES = ("reciprocal", "threshold", "mean")
"""Where :class:`ZClip` clips a spike: μ + z_thres²σ/z (the paper), μ + z_thres σ, or μ."""

_STATS_DTYPE = torch.float32  # float64 is missing on MPS; the EMA of a scalar needs no more


class StepLog:
    """A per-step flag (skipped, clipped) kept on the device: appending it makes no host sync.

    Steps are counted from 0 in the order of :meth:`append` calls, as the monitor counts
    ``Monitor.step`` calls (its events' ``step``). Reading :meth:`steps`
    moves the flags to the host (one sync); :attr:`count` stays a device tensor.
    """

    def __init__(self) -> None:
        self.n = 0
        self._flags: torch.Tensor | None = None
        self.count: torch.Tensor = torch.zeros((), dtype=torch.int64)

    def append(self, flag: torch.Tensor) -> None:
        """Record one step's 0-d bool ``flag``."""
        if self._flags is None or self._flags.device != flag.device:
            self._flags = torch.zeros(64, dtype=torch.bool, device=flag.device)
            self.count = self.count.to(flag.device)
        elif self.n >= self._flags.numel():  # amortized growth: the index below stays a host int
            self._flags = torch.cat([self._flags, torch.zeros_like(self._flags)])
        self._flags[self.n] = flag
        self.count = self.count + flag
        self.n += 1

    def steps(self) -> list[int]:
        """The 0-based steps whose flag was True (one host sync)."""
        if self._flags is None:
            return []
        return [int(i) for i in torch.nonzero(self._flags[: self.n]).flatten().tolist()]


class EmaZScore:
    """Running mean and variance of a scalar series (on its device) and the z-score of a new value.

    The first ``warmup`` values are kept; after the ``warmup``-th their mean μ and population
    variance σ² start the statistics (non-finite values are left out of them). From then on,
    an accepted value x updates μ ← α μ + (1−α) x, then σ² ← α σ² + (1−α) (x − μ)², as in
    ZClip's Algorithm 1 (the variance uses the updated mean). :meth:`score` compares x with the
    statistics before x: z = (x − μ) / (σ + ε); it is 0 during warm-up (no judgement yet).

    Args:
        alpha: the EMA's decay α in (0, 1) (ZClip: 0.97, a memory of ≈ 1/(1−α) = 33 steps).
        warmup: values that start the statistics, an integer ≥ 2 (ZClip: 25).
        eps: ε > 0 added to σ (ZClip: 1e-6), in the units of x.
        owner: the name in error messages.

    Raises:
        ConfigError: a parameter out of range.

    Example:
        >>> s = EmaZScore(alpha=0.5, warmup=2)
        >>> for x in (1.0, 3.0):
        ...     s.update_(torch.tensor(x))
        >>> float(s.mean_), float(s.var_), round(float(s.score(torch.tensor(4.0))), 4)
        (2.0, 1.0, 2.0)
    """

    def __init__(self, alpha: float = 0.97, warmup: int = 25, eps: float = 1e-6, *, owner: str = "EmaZScore") -> None:
        self.alpha = _checks.interval(alpha, "alpha", owner, 0.0, 1.0, low_open=True, high_open=True)
        self.warmup = _checks.positive_int(warmup, "warmup", owner, minimum=2)
        self.eps = _checks.interval(eps, "eps", owner, 0.0, low_open=True)
        self.n_seen_ = 0  # values offered to update_ during warm-up (a host count: no sync)
        self.mean_: torch.Tensor | None = None
        self.var_: torch.Tensor | None = None
        self._buffer: torch.Tensor | None = None

    @property
    def warm(self) -> bool:
        """Whether the warm-up is over (the statistics exist)."""
        return self.mean_ is not None

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The z-score of ``x`` against the statistics so far (0 during warm-up; NaN/Inf for a non-finite x)."""
        x = x.detach().to(_STATS_DTYPE).reshape(())
        if self.mean_ is None or self.var_ is None:
            return torch.where(torch.isfinite(x), torch.zeros_like(x), x)
        return (x - self.mean_) / (self.var_.sqrt() + self.eps)

    def update_(self, x: torch.Tensor, accept: torch.Tensor | None = None, times: torch.Tensor | None = None) -> None:
        """Fold ``x`` into the statistics where ``accept`` (a 0-d bool tensor; default True) and x is finite.

        ``times`` (a 0-d int tensor, default 1): apply the EMA update that many times with the
        same x, in closed form: μ ← x + αⁿ(μ − x), σ² ← αⁿ(σ² + α(1 − αⁿ)(x − μ)²).
        """
        x = x.detach().to(_STATS_DTYPE).reshape(())
        ok = torch.isfinite(x) if accept is None else torch.isfinite(x) & accept.to(x.device)
        if self.mean_ is None or self.var_ is None:
            if self._buffer is None:
                self._buffer = torch.full((self.warmup,), math.nan, dtype=_STATS_DTYPE, device=x.device)
            self._buffer[self.n_seen_] = torch.where(ok, x, math.nan)
            self.n_seen_ += 1
            if self.n_seen_ == self.warmup:
                valid = ~torch.isnan(self._buffer)
                n = valid.sum().clamp(min=1)
                mean = torch.where(valid, self._buffer, 0.0).sum() / n
                var = torch.where(valid, (self._buffer - mean) ** 2, 0.0).sum() / n
                none = ~valid.any()  # no finite value in the warm-up: NaN statistics flag nothing
                self.mean_ = torch.where(none, math.nan, mean)
                self.var_ = torch.where(none, math.nan, var)
                self._buffer = None
            return
        a = self.alpha
        if times is None:
            mean = a * self.mean_ + (1 - a) * x
            var = a * self.var_ + (1 - a) * (x - mean) ** 2
        else:
            an = torch.pow(torch.tensor(a, dtype=_STATS_DTYPE, device=x.device), times.to(x.device))
            mean = x + an * (self.mean_ - x)
            var = an * (self.var_ + a * (1 - an) * (x - self.mean_) ** 2)
        self.mean_ = torch.where(ok, mean, self.mean_)
        self.var_ = torch.where(ok, var, self.var_)


def _params_with_grads(parameters: Params) -> list[torch.Tensor]:
    params = [parameters] if torch.is_tensor(parameters) else list(parameters)
    return [p for p in params if p.grad is not None]


def _global_norm(params: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    return nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], norm_type)


# ------------------------------------------------------------------ skipping a step


_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # element size → integer view


class _Masks:
    """``skip`` as an all-ones/all-zeros integer of each width and device (made once per step)."""

    def __init__(self, skip: torch.Tensor) -> None:
        self.skip = skip
        self._made: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def of(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(m, ~m) for the integer view of ``t``; None for an element size without one."""
        bits = _BITS.get(t.element_size())
        if bits is None:
            return None
        key = (t.device, bits)
        if key not in self._made:
            m = -self.skip.to(device=t.device, dtype=bits)  # all ones where skip
            self._made[key] = (m, ~m)
        return self._made[key]


def _select_(now: torch.Tensor, old: torch.Tensor, masks: _Masks) -> None:
    """``now ← old`` where ``skip``, bit for bit, without a host sync; ``old`` is overwritten.

    A bitwise select on integer views of the same bits: ``now = (old & m) | (now & ~m)`` with m
    all ones or all zeros. Exact and NaN-safe (a blend ``now + skip·(old − now)`` turns a NaN
    ``now`` into NaN even where it is not taken), and ~2.5× faster on CPU than
    ``torch.where`` with a 0-d condition.
    """
    mm = masks.of(now)
    if mm is None:
        torch.where(masks.skip, old, now, out=now)
        return
    bits = mm[0].dtype
    o, n = old.view(bits), now.view(bits)
    o.bitwise_and_(mm[0])
    n.bitwise_and_(mm[1])
    n.bitwise_or_(o)


def _zero_where_(tensors: list[torch.Tensor], masks: _Masks) -> None:
    """Set every tensor to +0 where ``skip`` (NaN/Inf entries too), leave it bitwise unchanged elsewhere."""
    for t in tensors:
        mm = masks.of(t)
        if mm is None:
            t.masked_fill_(masks.skip, 0)
        else:
            t.view(mm[0].dtype).bitwise_and_(mm[1])


class _Snapshot:
    """Parameters and optimizer-state tensors copied before a step, to be put back where it is skipped."""

    def __init__(self) -> None:
        self.keys: list[tuple[torch.Tensor, str | None]] = []  # (param, state key or None for the param)
        self.before: list[torch.Tensor] = []
        self._signature: tuple[Any, ...] = ()

    def take(self, optimizer: torch.optim.Optimizer) -> None:
        """Copy every parameter with a gradient and its tensor state (buffers reused between steps)."""
        keys: list[tuple[torch.Tensor, str | None]] = []
        tensors: list[torch.Tensor] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue  # torch's optimizers leave a parameter without a gradient (and its state) alone
                keys.append((p, None))
                tensors.append(p.detach())
                for k, v in optimizer.state.get(p, {}).items():
                    if torch.is_tensor(v):
                        keys.append((p, k))
                        tensors.append(v)
        # by parameter and key (p.detach() is a new object every step), so the buffers are reused
        signature = tuple((id(p), k, t.shape, t.dtype, t.device) for (p, k), t in zip(keys, tensors, strict=True))
        with torch.no_grad():
            if signature == self._signature:
                torch._foreach_copy_(self.before, tensors)
            else:
                self.before = [t.clone() for t in tensors]
                self._signature = signature
        self.keys = keys

    def restore(self, optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
        """Put back what :meth:`take` copied where ``skip`` (:func:`_select_`); zero the state the step created there.

        A tensor on another device than ``skip`` (Adam's step counter stays on the host unless
        ``capturable``/``fused``) is left as the step made it: moving ``skip`` there is a sync.
        """
        seen = {(id(p), k) for p, k in self.keys}
        masks = _Masks(skip)
        with torch.no_grad():
            for (p, k), old in zip(self.keys, self.before, strict=True):
                now = p.detach() if k is None else optimizer.state.get(p, {}).get(k)
                if (
                    torch.is_tensor(now)
                    and now.device == skip.device
                    and now.shape == old.shape
                    and now.dtype == old.dtype
                ):
                    _select_(now, old, masks)
            born = [  # state created by this step: as if never created (torch starts it at 0)
                v
                for p, _ in self.keys
                for k, v in optimizer.state.get(p, {}).items()
                if (id(p), k) not in seen and torch.is_tensor(v) and v.device == skip.device
            ]
            _zero_where_(born, masks)


def skip_step_(optimizer: torch.optim.Optimizer, skip: torch.Tensor, closure: Callable[[], Any] | None = None) -> Any:
    """Run ``optimizer.step()`` and undo it — parameters and optimizer state — where ``skip`` is True.

    Works with any optimizer whose state is tensors in ``optimizer.state`` (SGD with momentum,
    Adam, AdamW, RMSprop, ...), with no host sync: the parameters and state tensors are
    copied before the step and put back where ``skip`` by a bitwise select (exact and
    NaN-safe: a skipped step whose update is NaN leaves no trace). State the
    step created (the first step of a parameter) is zeroed, which is how torch's optimizers
    start it. Exception: a state tensor on another device than ``skip`` (Adam's ``step``
    counter on the host while the parameters are on CUDA, unless ``capturable=True`` or
    ``fused=True``) keeps the count the step gave it (Adam's bias correction then uses t+1).

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        skip: a 0-d bool tensor on the parameters' device.
        closure: passed to ``optimizer.step``.

    Returns:
        What ``optimizer.step`` returned.

    Raises:
        ConfigError: ``skip`` is not a 0-d bool tensor.

    Example:
        >>> p = nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
        >>> opt = torch.optim.SGD([p], lr=0.5, momentum=0.9)
        >>> _ = skip_step_(opt, torch.tensor(True))
        >>> p.tolist(), float(opt.state[p]["momentum_buffer"].abs().sum())
        ([1.0, 1.0], 0.0)
    """
    if not (torch.is_tensor(skip) and skip.dtype == torch.bool and skip.dim() == 0):
        raise ConfigError(f"The 'skip' parameter of skip_step_ must be a 0-d bool tensor. Got {skip!r} instead.")
    snap = _Snapshot()
    snap.take(optimizer)
    out = optimizer.step(closure) if closure is not None else optimizer.step()
    snap.restore(optimizer, skip)
    return out


class SkipStepOnSpike:
    """Skip the optimizer step when the global ‖g‖ and/or the loss spikes: a z-score above ``z_thresh``.

    Each step's value x (‖g‖, the loss, or both, each with its own :class:`EmaZScore`) is
    scored against the statistics of the steps before it: the step is skipped when
    z = (x − μ) / (σ + ε) > ``z_thresh`` for any scored value, or when a value is NaN/Inf. A
    skipped step does not update the statistics (a spike must not raise the bar for the next
    one). During the warm-up (the first ``warmup`` steps) only non-finite values skip.

    Three ways to use it, all without a host sync:

    - ``guard.attach(optimizer)`` once, then (for ``on="loss"``/``"both"``) ``guard.observe(loss)``
      after ``backward()``; every ``optimizer.step()`` then decides and skips by itself;
    - ``guard.step(optimizer, loss)`` in place of ``optimizer.step()`` (manual loops);
    - ``skip = guard.decide(params, loss=loss)`` and :func:`skip_step_` ``(optimizer, skip)``.

    ``mode="restore"`` (default) skips exactly — parameters and optimizer state unchanged —
    for any optimizer (see :func:`skip_step_`); the gradients are left as they are, so a
    monitor sees them. ``mode="zero"`` only zeroes the gradient of a
    skipped step (no copies; with :meth:`decide` alone, no hooks): exact for plain SGD only;
    with momentum or Adam the weights still move by the momentum of earlier steps.

    Args:
        on: ``"norm"``, ``"loss"`` or ``"both"`` (:data:`SPIKE_ON`).
        z_thresh: the z-score above which a step is skipped (> 0).
        alpha, warmup, eps: of the running statistics (:class:`EmaZScore`).
        mode: ``"restore"`` or ``"zero"``.
        norm_type: the p of the gradient's p-norm (2 by default; ``inf`` for the max norm).
        max_consecutive: at most this many consecutive steps are skipped for a high z-score
            (non-finite values are always skipped); the next one is taken and folded into the
            statistics as if the whole rise (``max_consecutive`` + 1 steps of that value) had
            been accepted: a lasting rise of the level (a new phase of training) is not a
            spike, and without this cap the unchanged statistics would skip every later
            step. None: no cap.

    Attributes:
        log_: a :class:`StepLog` of the skipped steps (``guard.skipped_steps()``, ``guard.n_skipped``).
        norm_stats_, loss_stats_: the running statistics (None when not scored).

    Raises:
        ConfigError: a parameter out of range or not among the choices.

    Example:
        >>> model = nn.Linear(4, 1)
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
        >>> guard = SkipStepOnSpike(on="both", warmup=5)
        >>> handle = guard.attach(opt)
        >>> for step in range(12):
        ...     x = torch.randn(8, 4) * (100.0 if step == 9 else 1.0)  # one outlier batch
        ...     loss = model(x).pow(2).mean()
        ...     opt.zero_grad(); loss.backward(); guard.observe(loss); opt.step()
        >>> guard.skipped_steps()  # 0-based, as the monitor counts steps
        [9]
        >>> handle.remove()
    """

    def __init__(
        self,
        *,
        on: str = "norm",
        z_thresh: float = 6.0,
        alpha: float = 0.97,
        warmup: int = 25,
        eps: float = 1e-6,
        mode: str = "restore",
        norm_type: float = 2.0,
        max_consecutive: int | None = 5,
    ) -> None:
        owner = "SkipStepOnSpike"
        self.on = _checks.choice(on, "on", owner, SPIKE_ON)
        self.z_thresh = _checks.interval(z_thresh, "z_thresh", owner, 0.0, low_open=True)
        self.mode = _checks.choice(mode, "mode", owner, ("restore", "zero"))
        self.norm_type = _checks.interval(norm_type, "norm_type", owner, 0.0, low_open=True)
        self.max_consecutive = (
            None if max_consecutive is None else _checks.positive_int(max_consecutive, "max_consecutive", owner)
        )
        self._run: torch.Tensor | None = None  # consecutive spikes skipped so far (device)
        stats = {"alpha": alpha, "warmup": warmup, "eps": eps, "owner": owner}
        self.norm_stats_ = EmaZScore(**stats) if on in ("norm", "both") else None  # type: ignore[arg-type]
        self.loss_stats_ = EmaZScore(**stats) if on in ("loss", "both") else None  # type: ignore[arg-type]
        self.log_ = StepLog()
        self._loss: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None  # the decision for the coming optimizer step
        self._snapshot = _Snapshot()
        self._attached = False

    # ---- measuring and deciding
    def observe(self, loss: torch.Tensor | float) -> None:
        """Note this step's loss for the next :meth:`decide` (the hook path; needed when ``on`` scores the loss)."""
        self._loss = loss.detach() if torch.is_tensor(loss) else torch.tensor(float(loss))

    def decide(
        self, parameters: Params, *, loss: torch.Tensor | float | None = None, total_norm: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Score this step, update the statistics unless it spiked, and return the decision (a 0-d bool tensor).

        Call after ``backward()``, before ``optimizer.step()``. In ``mode="zero"`` the gradients
        of a skipped step are zeroed here (NaN/Inf entries too); in ``mode="restore"`` they are
        left alone, and the optimizer's hooks (:meth:`attach`), :meth:`step` or :func:`skip_step_`
        undo the optimizer step.

        Args:
            parameters: the parameters whose gradients are scored.
            loss: this step's loss (default: the one given to :meth:`observe`).
            total_norm: ‖g‖ already measured (e.g. ``Monitor.grad_norm()``): not measured again.

        Raises:
            ConfigError: the loss is scored but none was given.
        """
        params = _params_with_grads(parameters)
        if loss is not None:
            self.observe(loss)
        device = params[0].device if params else (self._loss.device if self._loss is not None else torch.device("cpu"))
        skip = torch.zeros((), dtype=torch.bool, device=device)
        values: list[tuple[EmaZScore, torch.Tensor]] = []
        # ‖g‖ is measured even when only the loss is scored: a NaN/Inf gradient is always skipped
        norm = (total_norm if total_norm is not None else _global_norm(params, self.norm_type)).to(device)
        skip = skip | ~torch.isfinite(norm)
        if self.norm_stats_ is not None:
            values.append((self.norm_stats_, norm))
        if self.loss_stats_ is not None:
            if self._loss is None:
                raise ConfigError(
                    f"SkipStepOnSpike(on={self.on!r}) scores the loss: pass loss= to decide() or call "
                    "observe(loss) before optimizer.step()."
                )
            values.append((self.loss_stats_, self._loss.to(device)))
        spiked = torch.zeros_like(skip)
        for stats, x in values:
            skip = skip | ~torch.isfinite(x)  # never applied, never folded into the statistics
            spiked = spiked | (stats.score(x) > self.z_thresh)
        times = None
        if self.max_consecutive is not None:
            run = torch.zeros((), dtype=torch.int64, device=device) if self._run is None else self._run.to(device)
            # a rise that outlasts the cap is a new level, not a spike: take the step, and fold it in
            # as if the whole rise (cap + 1 steps) had been accepted, so the statistics catch up at once
            capped = spiked & (run >= self.max_consecutive)
            times = torch.where(capped, self.max_consecutive + 1, 1)
            spiked = spiked & ~capped
            skip = skip | spiked
            self._run = torch.where(skip, run + 1, 0)
        else:
            skip = skip | spiked
        for stats, x in values:
            stats.update_(x, ~skip, times)
        self._loss = None
        if self.mode == "zero":
            with torch.no_grad():
                _zero_where_([p.grad for p in params if p.grad is not None], _Masks(skip))
        self.log_.append(skip)
        self._pending = skip
        return skip

    # ---- acting on the decision
    def attach(self, optimizer: torch.optim.Optimizer) -> _Handles:
        """Decide and skip inside every ``optimizer.step()`` (step pre- and post-hooks); remove with the handle.

        The hooks run before the optimizer's other hooks (e.g. a :class:`~gradwatch.Monitor`'s),
        so those see the step as it was finally taken: zeroed gradients, restored weights.
        """
        pre = optimizer.register_step_pre_hook(self._before_step)
        post = optimizer.register_step_post_hook(self._after_step)
        _run_first(optimizer._optimizer_step_pre_hooks, pre.id)
        _run_first(optimizer._optimizer_step_post_hooks, post.id)
        self._attached = True
        return _Handles(pre, post, self)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._pending is None:  # nobody decided this step yet (attach-only loops)
            self.decide([p for g in optimizer.param_groups for p in g["params"]])
        if self.mode == "restore":
            self._snapshot.take(optimizer)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.mode == "restore" and self._pending is not None:
            self._snapshot.restore(optimizer, self._pending)
        self._pending = None

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor | float | None = None,
        closure: Callable[[], Any] | None = None,
    ) -> torch.Tensor:
        """Decide on this step and run ``optimizer.step()``, skipped if it spiked (manual loops, no :meth:`attach`).

        Returns:
            The decision, a 0-d bool tensor (True: skipped).
        """
        if self._attached:
            raise ConfigError("SkipStepOnSpike.step() is for loops without attach(): call optimizer.step() instead.")
        skip = self.decide([p for g in optimizer.param_groups for p in g["params"]], loss=loss)
        if self.mode == "restore":
            self._snapshot.take(optimizer)
        optimizer.step(closure) if closure is not None else optimizer.step()
        if self.mode == "restore":
            self._snapshot.restore(optimizer, skip)
        self._pending = None
        return skip

    # ---- what it did
    @property
    def n_skipped(self) -> torch.Tensor:
        """How many steps were skipped (a device tensor: reading it as a number syncs)."""
        return self.log_.count

    def skipped_steps(self) -> list[int]:
        """The 0-based steps (calls of :meth:`decide`, as the monitor counts) that were skipped (one host sync)."""
        return self.log_.steps()


def _run_first(hooks: Any, key: int) -> None:
    """Move hook ``key`` to the front of an optimizer's hooks (torch keeps them in an OrderedDict)."""
    hooks.move_to_end(key, last=False)


class _Handles:
    """Removes both optimizer hooks of :meth:`SkipStepOnSpike.attach` (``remove()``, or use it as a context)."""

    def __init__(self, pre: RemovableHandle, post: RemovableHandle, owner: SkipStepOnSpike) -> None:
        self._pre, self._post, self._owner = pre, post, owner

    def remove(self) -> None:
        self._pre.remove()
        self._post.remove()
        self._owner._attached = False

    def __enter__(self) -> _Handles:
        return self

    def __exit__(self, *args: object) -> None:
        self.remove()


# ------------------------------------------------------------------ ZClip


class ZClip:
    """ZClip (Kumar et al. 2025): clip ‖g‖ when its z-score against an EMA of past norms exceeds z_thres.

    Per step, with μ, σ the EMA statistics of the (clipped) norms before this step
    (:class:`EmaZScore`: a warm-up of ``warmup`` norms, then EMAs with decay ``alpha``):

    - z = (‖g‖ − μ) / (σ + ε);
    - if z > z_thres, ‖g‖ is clipped to g* (``rule``): ``"reciprocal"`` (default: the
      paper's reciprocal clipping, as in the authors' code): g* = μ + (z_thres² / z) σ — the
      larger the outlier, the closer to μ; ``"threshold"``: g* = μ + z_thres σ (the simpler
      rule of the authors' "percentile" mode); ``"mean"``: g* = μ;
    - the EMA is updated with g* (the clipped norm), so a spike does not inflate the statistics;
    - ``max_norm`` (optional): a fixed cap applied on top (the authors' ``max_grad_norm``),
      also during warm-up; it does not enter the statistics.

    During warm-up nothing is clipped (except at ``max_norm``). Where we differ from the
    authors' code: no host sync — the norm stays a device tensor and the gradients are always
    multiplied by min(1, g*/(‖g‖ + 1e-6)) (exactly 1 when not clipped) instead of branching
    in Python; a non-finite ‖g‖ is not folded into the statistics (it is clipped to 0·g,
    which leaves NaN/Inf entries NaN: ZClip does not repair a non-finite gradient — skip such
    steps with :class:`SkipStepOnSpike`).

    Args:
        alpha: EMA decay α in (0, 1) (paper: 0.97).
        z_thresh: z_thres > 0 (paper: 2.5).
        warmup: norms that start the statistics, ≥ 2 (paper: 25).
        eps: ε > 0 added to σ.
        rule: one of :data:`ZCLIP_RULES`.
        max_norm: a fixed cap on ‖g‖ (> 0), or None.
        norm_type: the p of the p-norm.

    Attributes:
        stats_: the :class:`EmaZScore` of the clipped norms.
        log_: a :class:`StepLog` of the clipped steps (``clipped_steps()``, ``n_clipped``).

    Raises:
        ConfigError: a parameter out of range or not among the choices.

    Example:
        >>> zclip = ZClip(z_thresh=2.5, warmup=25)
        >>> # in the loop, after backward():  zclip(model.parameters())
    """

    def __init__(
        self,
        alpha: float = 0.97,
        z_thresh: float = 2.5,
        warmup: int = 25,
        eps: float = 1e-6,
        rule: str = "reciprocal",
        max_norm: float | None = None,
        norm_type: float = 2.0,
    ) -> None:
        owner = "ZClip"
        self.z_thresh = _checks.interval(z_thresh, "z_thresh", owner, 0.0, low_open=True)
        self.rule = _checks.choice(rule, "rule", owner, ZCLIP_RULES)
        self.max_norm = None if max_norm is None else _checks.interval(max_norm, "max_norm", owner, 0.0, low_open=True)
        self.norm_type = _checks.interval(norm_type, "norm_type", owner, 0.0, low_open=True)
        self.stats_ = EmaZScore(alpha, warmup, eps, owner=owner)
        self.log_ = StepLog()

    def threshold(self, total_norm: torch.Tensor) -> torch.Tensor:
        """The norm g* that ``total_norm`` is clipped to (+inf: not clipped), before ``max_norm``."""
        s = self.stats_
        x = total_norm.detach().to(_STATS_DTYPE).reshape(())
        if s.mean_ is None or s.var_ is None:
            return torch.full_like(x, math.inf)
        z = s.score(x)
        sigma = s.var_.sqrt()
        if self.rule == "reciprocal":
            target = s.mean_ + self.z_thresh**2 / z * sigma
        elif self.rule == "threshold":
            target = s.mean_ + self.z_thresh * sigma
        else:
            target = s.mean_
        return torch.where(z > self.z_thresh, target, math.inf)

    def __call__(self, parameters: Params, total_norm: torch.Tensor | None = None) -> ClipResult:
        """Score, clip (in place) and record the gradients of ``parameters``.

        Args:
            parameters: tensors whose ``.grad`` is clipped.
            total_norm: their ‖g‖ already measured (e.g. by the monitor); not measured again.

        Returns:
            A :class:`~gradwatch.remedies.clipping.ClipResult`: ``total_norm`` before clipping,
            ``threshold`` the norm clipped to (+inf when not clipped), ``clipped``.
        """
        params = _params_with_grads(parameters)
        if not params:
            zero = torch.zeros(())
            return ClipResult(zero, zero, torch.zeros((), dtype=torch.bool), zero)
        norm = total_norm if total_norm is not None else _global_norm(params, self.norm_type)
        norm = norm.reshape(())
        target = self.threshold(norm).to(norm.device)
        limit = target if self.max_norm is None else torch.clamp(target, max=self.max_norm)
        scale_grads_(params, torch.clamp(limit / (norm + 1e-6), max=1.0))  # torch's coefficient
        clipped = norm > limit
        self.stats_.update_(torch.minimum(norm.to(target.dtype), target), torch.isfinite(norm))
        self.log_.append(clipped)
        return ClipResult(norm, limit, clipped, clipped.float())

    @property
    def n_clipped(self) -> torch.Tensor:
        """How many steps were clipped (a device tensor)."""
        return self.log_.count

    def clipped_steps(self) -> list[int]:
        """The 0-based steps (calls, as the monitor counts) that were clipped (one host sync)."""
        return self.log_.steps()
