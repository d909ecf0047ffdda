"""Run one experiment: train a model on a task with remedies, the monitor attached, and score it."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradwatch import models
from gradwatch._output import from_json_number, to_json_number
from gradwatch.experiments.spec import Spec
from gradwatch.monitor import Monitor
from gradwatch.remedies import registry
from gradwatch.remedies.optim import SignSGD
from gradwatch.tasks import get_task

__all__ = ["EVAL_SEED_OFFSET", "Result", "build_model", "run"]

EVAL_SEED_OFFSET = 1_000_003  # the held-out batch of seed s is drawn with seed s + this


@dataclass
class Result:
    """What a run produced (``result.json`` holds :meth:`to_json`).

    Attributes:
        spec: the spec.
        steps, loss, error: the learning curve at every evaluation (held-out error rate).
        final_error: the last evaluation's error rate.
        success: the task's criterion on the last evaluation.
        diverged: the training loss became NaN/Inf.
        verdict: the monitor's verdict (JSON form).
        layer_grad_norm: median gradient norm per layer over the run.
        time_profile: the last ‖∂L/∂u_t‖ profile (sequence models), or None.
        wall_time: seconds.
        model: the trained model, with ``run(..., keep_model=True)`` (not serialized).
    """

    spec: Spec
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    final_error: float = math.nan
    success: bool = False
    diverged: bool = False
    verdict: dict[str, Any] = field(default_factory=dict)
    layer_grad_norm: dict[str, float] = field(default_factory=dict)
    time_profile: list[float] | None = None
    wall_time: float = 0.0
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON object; non-finite numbers as strings."""
        return {
            "spec": self.spec.to_json(),
            "steps": self.steps,
            "loss": [to_json_number(v) for v in self.loss],
            "error": [to_json_number(v) for v in self.error],
            "final_error": to_json_number(self.final_error),
            "success": self.success,
            "diverged": self.diverged,
            "verdict": self.verdict,
            "layer_grad_norm": {k: to_json_number(v) for k, v in self.layer_grad_norm.items()},
            "time_profile": None if self.time_profile is None else [to_json_number(v) for v in self.time_profile],
            "wall_time": self.wall_time,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        """Read back what :meth:`to_json` wrote."""
        return cls(
            spec=Spec.from_json(d["spec"]),
            steps=list(d["steps"]),
            loss=[from_json_number(v) for v in d["loss"]],
            error=[from_json_number(v) for v in d["error"]],
            final_error=from_json_number(d["final_error"]),
            success=bool(d["success"]),
            diverged=bool(d["diverged"]),
            verdict=d["verdict"],
            layer_grad_norm={k: from_json_number(v) for k, v in d["layer_grad_norm"].items()},
            time_profile=None if d["time_profile"] is None else [from_json_number(v) for v in d["time_profile"]],
            wall_time=float(d["wall_time"]),
        )


def build_model(spec: Spec) -> torch.nn.Module:
    """The model a spec describes, initialized from its seed."""
    task = get_task(spec.task)
    common = {
        "hidden": spec.hidden,
        "in_dim": task.n_inputs,
        "out_dim": task.n_outputs,
        "layers": spec.layers,
        "activation": spec.activation,
        "init": spec.init,
        "seed": spec.seed,
    }
    if spec.model == "mlp":
        return models.mlp(**common, norm=spec.norm, residual=spec.residual)
    return models.rnn(kind=spec.model, **common)


def _optimizer(spec: Spec, params: Any) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr)
    if spec.optimizer == "rprop":
        return torch.optim.Rprop(params, lr=spec.lr)
    return SignSGD(params, lr=spec.lr, momentum=spec.momentum)


def _forward(model: torch.nn.Module, spec: Spec, x: torch.Tensor) -> torch.Tensor:
    out = model(x.squeeze(1)) if spec.model == "mlp" else model(x)
    return out.squeeze(-1) if out.shape[-1] == 1 else out


def run(
    spec: Spec,
    run_dir: str | Path | None = None,
    *,
    keep_model: bool = False,
    model: torch.nn.Module | None = None,
) -> Result:
    """Train the spec's model on its task with its remedies and the monitor attached.

    Args:
        spec: the experiment.
        run_dir: if given, ``metrics.jsonl`` (one line per evaluation, appended as it goes)
            and the monitor's ``monitor.jsonl`` are written there.
        keep_model: attach the trained model to the result (``result.model``), e.g. to
            score it by another criterion.
        model: train this module instead of ``build_model(spec)`` (e.g. weights from DBN
            pre-training, an init outside ``INITS``, or a module with the caller's forward
            hooks); its input and output sizes must fit the spec's task. The spec then
            describes the task, optimizer, remedies and budget; ``spec.init`` is not applied.

    Returns:
        A :class:`Result`. Same spec and seed ⇒ same numbers on the same machine.
    """
    start = time.perf_counter()
    task = get_task(spec.task)
    device = torch.device(spec.device)
    model = (build_model(spec) if model is None else model).to(device)
    opt = _optimizer(spec, model.parameters())
    data_gen = torch.Generator().manual_seed(spec.seed)
    x_eval, y_eval = task.eval_batch(
        spec.length, spec.eval_batch, seed=spec.seed + EVAL_SEED_OFFSET, jitter=spec.jitter
    )
    x_eval, y_eval = x_eval.to(device), y_eval.to(device)
    sequence = spec.model != "mlp"
    log = None if run_dir is None else Path(run_dir) / "monitor.jsonl"
    metrics_path = None if run_dir is None else Path(run_dir) / "metrics.jsonl"
    remedy = registry.build(spec.remedies)  # the per-step remedies, chained in the registry's order
    result = Result(spec=spec)
    with Monitor(
        model,
        opt,
        log=log,
        sync_every=max(1, spec.eval_every),
        activations_every=spec.eval_every,
        time_profile_every=spec.eval_every if sequence else None,
    ) as mon:
        for step in range(1, spec.steps + 1):
            x, y = task.generate(spec.length, spec.batch_size, data_gen, jitter=spec.jitter)
            x, y = x.to(device), y.to(device)
            out = _forward(model, spec, x)
            loss = task.loss(out, y)
            total = loss if remedy.penalty is None else loss + remedy.penalty(loss, model)
            total.backward()
            mon.step(loss)  # before clipping: the gradient as backprop produced it
            if remedy.after_backward is not None:
                # the norm the monitor just measured: clipping scales by it instead of reading every gradient again
                remedy.after_backward(list(model.parameters()), mon.grad_norm())
            opt.step()
            opt.zero_grad()
            if not math.isfinite(float(loss.detach())):
                result.diverged = True
            if step % spec.eval_every == 0 or step == spec.steps:
                model.eval()  # batch norm scores with its running statistics and leaves them alone
                with torch.no_grad():
                    err = task.error(_forward(model, spec, x_eval), y_eval)
                model.train()
                result.steps.append(step)
                result.loss.append(float(loss.detach()))
                result.error.append(err)
                if metrics_path is not None:
                    with metrics_path.open("a", encoding="utf-8") as f:
                        f.write(
                            json.dumps({"step": step, "loss": float(loss.detach()), "error": err}, allow_nan=True)
                            + "\n"
                        )
            if result.diverged:
                break
        history = mon.history
        result.verdict = mon.verdict().to_json()
    with np.errstate(all="ignore"):
        for name, lh in history.layers.items():
            finite = lh.grad_norm[np.isfinite(lh.grad_norm)]
            result.layer_grad_norm[name or "(model)"] = float(np.median(finite)) if finite.size else math.nan
    if history.time_profiles:
        result.time_profile = [float(v) for v in history.time_profiles[-1][1]]
    result.final_error = result.error[-1] if result.error else math.nan
    result.success = (not result.diverged) and result.final_error < task.success_error
    result.wall_time = time.perf_counter() - start
    if keep_model:
        result.model = model
    return result
