"""A chain of collectors, run as one (like ``optax.chain``): what ``Monitor`` calls at each event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from gradwatch.monitor.collectors.activations import Activations, activation_kind
from gradwatch.monitor.collectors.amp import AmpScaler
from gradwatch.monitor.collectors.base import Batch, Collector, HostFields, Loop, Params, StepContext
from gradwatch.monitor.collectors.clipping import Clipping
from gradwatch.monitor.collectors.embedding import EmbeddingRows
from gradwatch.monitor.collectors.grads import GradNorms, Loss
from gradwatch.monitor.collectors.lyapunov import Lyapunov, recurrent_modules
from gradwatch.monitor.collectors.nonfinite import NonFiniteOrigin
from gradwatch.monitor.collectors.time_profile import TimeProfile
from gradwatch.monitor.collectors.weights import Weights
from gradwatch.monitor.config import MonitorConfig, max_period
from gradwatch.monitor.lints import Lints
from gradwatch.monitor.store import Store

__all__ = ["Chain", "build_chain"]


@dataclass
class Chain:
    """Collectors in the order they run (gradients first, the non-finite origin last, since it
    reads the gradient rows of the same sync), and the ones the monitor addresses by name."""

    grads: GradNorms
    clip: Clipping
    nonfinite: NonFiniteOrigin
    amp: AmpScaler | None
    weights: Weights | None
    all: list[Collector] = field(default_factory=list)
    lints: Lints | None = None

    def arm(self, loop: Loop) -> None:
        """Let each collector hook what the next call needs (its period decides)."""
        for c in self.all:
            c.arm(loop.is_due(loop.calls, c.every))

    def begin(self) -> None:
        if self.lints is not None:
            self.lints.before_call()  # before the scaler's begin() forgets a skipped step
        for c in self.all:
            c.begin()

    def collect(self, ctx: StepContext) -> None:
        for c in self.all:
            c.collect(ctx)

    def end(self) -> None:
        for c in self.all:
            c.end()

    def before_optimizer_step(self) -> None:
        for c in self.all:
            c.before_optimizer_step()

    def after_optimizer_step(self, closure_record: int | None) -> None:
        for c in self.all:
            c.after_optimizer_step(closure_record)

    def close(self) -> None:
        for c in self.all:
            c.close()

    def newest_incomplete(self, loop: Loop, has_optimizer: bool) -> bool:
        """Whether the newest record may still learn its optimizer step's update ratio or post-clip
        norm, or whether the GradScaler skipped it (sinks hold it back until then)."""
        return (
            (self.weights is not None and self.weights.awaiting == loop.last_record)
            or (has_optimizer and loop.optimizer_first is not True and not loop.stepped_since_record())
            or loop.closure_record == loop.last_record
            or (self.amp is not None and self.amp.call_since_update)
        )

    def skip_pending(self) -> bool:
        """Whether a GradScaler update ran since the last record (a skipped step looks like accumulation)."""
        return self.amp is not None and self.amp.skip_pending()

    def inverse_scale(self) -> torch.Tensor | None:
        """1/scale while AMP gradients are still scaled, else None."""
        return self.amp.inverse_scale() if self.amp is not None else None

    def sync(self, device: torch.device, store: Store) -> None:
        """Move every outbox to the host in one transfer, then let each collector write its columns."""
        taken = [(c, c.take()) for c in self.all]
        tensors = [t for _, entries in taken for _, fields in entries for t in fields.values()]
        if not tensors:  # field-less entries ("gradient unchanged") and pending lints still land
            self.finish({c.name: [(s, {}) for s, _ in entries] for c, entries in taken if entries}, store)
            return
        flat = torch.cat([t.reshape(-1).to(device, torch.float64) for t in tensors]).cpu().numpy()
        pos, batch = 0, {}
        for c, entries in taken:
            host = []
            for step, fields in entries:
                arrays: HostFields = {}
                for key, t in fields.items():
                    arrays[key] = flat[pos : pos + t.numel()]
                    pos += t.numel()
                host.append((step, arrays))
            batch[c.name] = host
        self.finish(batch, store)

    def finish(self, batch: Batch, store: Store) -> None:
        for c in self.all:
            c.finish(batch, store)


def build_chain(
    cfg: MonitorConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
    params: Params,
    loop: Loop,
    call_order: Callable[[], Sequence[str]] = list,
) -> Chain:
    """The collectors a configuration asks for; those that are off are not in the chain at all.

    ``call_order`` gives the modules in the order the first forward ran them (for the
    non-finite origin, which names a parameter-free module between two layers).
    """
    grads = GradNorms(params, max_every=max_period(cfg.grad_max))
    # a disabled GradScaler (GradScaler(enabled=False), the usual fp32 switch) scales nothing: no collector
    use_amp = scaler is not None and scaler.is_enabled() and optimizer is not None
    amp = AmpScaler(scaler, optimizer, params, loop) if use_amp else None  # type: ignore[arg-type]
    chain = Chain(
        grads=grads,
        clip=Clipping(params, loop, cfg.clip, lambda: chain.inverse_scale()),
        nonfinite=NonFiniteOrigin(
            grads,
            params,
            loop,
            model,
            trace=cfg.trace_nonfinite,
            # a record whose GradScaler skip flag is still to come (mon.step() ran, scaler.update() not yet)
            undecided=lambda: (
                loop.last_record if amp is not None and amp.call_since_update and not amp.updated else None
            ),
            call_order=call_order,
        ),
        amp=amp,
        weights=None
        if cfg.weights_every is None
        else Weights(params, loop, cfg.weights_every, has_optimizer=optimizer is not None),
    )
    acts = [(n, m, k) for n, m in model.named_modules() if (k := activation_kind(m)) is not None]
    modules = dict(model.named_modules())
    chain.all = [grads, Loss()]
    chain.all += [chain.weights] if chain.weights is not None else []
    embeddings = [  # their touched rows, on the weights' period
        i
        for i, (name, layer) in enumerate(zip(params.names, params.owner, strict=True))
        if isinstance(modules[params.layers[layer].name], (nn.Embedding, nn.EmbeddingBag)) and name.endswith("weight")
    ]
    if cfg.weights_every is not None and embeddings:
        chain.all.append(EmbeddingRows(params, embeddings, loop, cfg.weights_every))
    if cfg.activations_every is not None and acts:
        chain.all.append(Activations(acts, cfg.activations_every))
    if cfg.time_profile_every is not None:
        target = model if cfg.profile_module is None else modules[cfg.profile_module]
        chain.all.append(TimeProfile(target, cfg.time_profile_every, time_dim=cfg.time_dim, batch_dim=cfg.batch_dim))
    recurrent = recurrent_modules(model) if cfg.lyapunov_every is not None else []
    if cfg.lyapunov_every is not None and recurrent:
        chain.all.append(Lyapunov(recurrent, cfg.lyapunov_every, cfg.lyapunov_k))
    chain.all += [amp] if amp is not None else []
    if cfg.lints:
        chain.lints = Lints(
            params,
            loop,
            grads,
            chain.clip,
            optimizer,
            scaler if use_amp else None,
            recorded_this_iteration=lambda: amp is not None and amp.call_since_update,
            skip_pending=chain.skip_pending,
            accumulation=cfg.accumulation_steps > 1,
        )
        chain.clip.on_clip = chain.lints.on_clip
    chain.all += [chain.clip, *([chain.lints] if chain.lints is not None else []), chain.nonfinite]
    return chain
