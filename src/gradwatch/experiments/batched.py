"""K seeds of one spec trained as one batched model (``torch.func``), with per-seed state.

``torch.func.stack_module_state`` stacks the K seeds' parameters along a new first
dimension; ``functional_call`` + ``vmap`` runs the K models on their K own batches in one
call; the K losses are summed, so one backward pass gives every seed its own gradient.
Clipping by norm is applied per seed (each seed's own global norm), by value elementwise,
and the optimizers the runner offers (SGD with momentum, Adam, Rprop, sign-SGD) are
elementwise, so their state is per seed by construction. Each seed sees exactly the data
and the held-out batch that :func:`gradwatch.experiments.run` would give it, so the
numbers equal K separate runs up to floating-point reassociation in batched kernels.

Limits (checked, with a clear error): no monitor is attached (the monitor watches one
module); remedies are limited to clipping by norm or value; models without batch norm,
and no fused LSTM/GRU (``vmap`` has no batching rule for ``aten::lstm``; use model="rnn");
the adding/multiplication tasks need ``jitter=False`` so that the K batches stack.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import torch
from torch.func import functional_call, stack_module_state, vmap

from gradwatch.errors import ConfigError
from gradwatch.experiments.runner import (
    EVAL_SEED_OFFSET,
    Result,
    _heldout_error,
    _optimizer,
    build_model,
    check_device,
    succeeded,
)
from gradwatch.experiments.spec import Spec
from gradwatch.tasks import get_task

__all__ = ["BATCHED_REMEDIES", "run_seeds"]

BATCHED_REMEDIES = ("clip_grad_norm", "clip_grad_value")


def _check(spec: Spec, seeds: Sequence[int]) -> None:
    if not seeds:
        raise ConfigError("run_seeds needs at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"run_seeds got repeated seeds: {list(seeds)}.")
    extra = sorted(set(spec.remedies) - set(BATCHED_REMEDIES))
    if extra:
        raise ConfigError(
            f"Batched seeds support the remedies {list(BATCHED_REMEDIES)}; got {extra}: use run() per seed."
        )
    if spec.model in ("lstm", "gru"):
        raise ConfigError(
            f"Batched seeds need model='rnn' or 'mlp': torch.func.vmap has no batching rule for the fused "
            f"nn.{spec.model.upper()} kernel. Got model={spec.model!r}."
        )
    if spec.norm == "batch":
        raise ConfigError("Batched seeds do not support batch norm (its running statistics are updated in place).")
    if spec.jitter and spec.task in ("adding", "multiplication"):
        raise ConfigError(f"Task {spec.task!r} varies its length per batch: set jitter=False to batch seeds.")


def run_seeds(spec: Spec, seeds: Sequence[int]) -> list[Result]:
    """Train ``spec`` for every seed in ``seeds`` as one vmapped model; one Result per seed.

    A seed whose loss became NaN/Inf, or whose outputs are not finite, fails (NaN error,
    ``success`` False), as in :func:`~gradwatch.experiments.run`.

    Raises:
        ConfigError: a spec outside the limits in the module docstring, or a device this machine lacks.
    """
    _check(spec, seeds)
    start = time.perf_counter()
    task = get_task(spec.task)
    device = check_device(spec.device, "run_seeds")
    specs = [Spec.from_json({**spec.to_json(), "seed": s}) for s in seeds]
    nets = [build_model(s).to(device) for s in specs]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    names = list(params)
    leaves = [params[n] for n in names]
    opt = _optimizer(spec, leaves)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    evals = [
        task.eval_batch(spec.length, spec.eval_batch, seed=s + EVAL_SEED_OFFSET, jitter=spec.jitter) for s in seeds
    ]
    x_eval = torch.stack([e[0] for e in evals]).to(device)
    y_eval = torch.stack([e[1] for e in evals]).to(device)
    squeeze_mlp = spec.model == "mlp"

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = functional_call(base, (p, b), (x.squeeze(1) if squeeze_mlp else x,))
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def seed_loss(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        return task.loss(forward(p, b, x), y)

    batched_loss = vmap(seed_loss)
    batched_forward = vmap(forward)
    results = [Result(spec=s) for s in specs]
    K = len(seeds)
    for step in range(1, spec.steps + 1):
        batches = [task.generate(spec.length, spec.batch_size, g, jitter=spec.jitter) for g in gens]
        x = torch.stack([b[0] for b in batches]).to(device)
        y = torch.stack([b[1] for b in batches]).to(device)
        losses = batched_loss(dict(zip(names, leaves, strict=True)), buffers, x, y)
        losses.sum().backward()
        _clip_per_seed(spec, leaves, K)
        opt.step()
        opt.zero_grad()
        if step % spec.eval_every == 0 or step == spec.steps:
            with torch.no_grad():
                out = batched_forward(dict(zip(names, leaves, strict=True)), buffers, x_eval)
            for k, r in enumerate(results):
                r.steps.append(step)
                r.loss.append(float(losses[k].detach()))
                r.error.append(_heldout_error(task, out[k], y_eval[k]))
    wall = time.perf_counter() - start
    for r in results:
        r.diverged = any(not math.isfinite(v) for v in r.loss)
        r.final_error = math.nan if r.diverged else r.error[-1]
        r.success = succeeded(r, task.success_error)
        r.verdict = {"status": "not monitored", "where": [], "evidence": [], "advice": []}
        r.wall_time = wall / K
    return results


def _clip_per_seed(spec: Spec, leaves: list[torch.Tensor], K: int) -> None:
    grads = [p.grad for p in leaves if p.grad is not None]
    with torch.no_grad():
        if "clip_grad_norm" in spec.remedies:
            max_norm = spec.remedy_params("clip_grad_norm")["max_norm"]
            sq = torch.zeros(K, dtype=grads[0].dtype, device=grads[0].device)
            for g in grads:
                sq += g.pow(2).reshape(K, -1).sum(dim=1)
            # the same coefficient as torch.nn.utils.clip_grads_with_norm_, per seed
            coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.reshape(K, *([1] * (g.dim() - 1))))
        if "clip_grad_value" in spec.remedies:
            cv = spec.remedy_params("clip_grad_value")["clip_value"]
            for g in grads:
                g.clamp_(-cv, cv)
