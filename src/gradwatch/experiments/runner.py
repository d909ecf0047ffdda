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

from gradwatch import _checks, models
from gradwatch._output import from_json_number, to_json_number
from gradwatch.errors import ConfigError
from gradwatch.experiments.spec import Spec, check_size
from gradwatch.monitor import Monitor
from gradwatch.remedies import registry
from gradwatch.remedies.optim import SignSGD
from gradwatch.tasks import Task, get_task

__all__ = ["EVAL_SEED_OFFSET", "Result", "build_model", "check_device", "run", "succeeded"]

EVAL_SEED_OFFSET = 1_000_003  # the held-out batch of seed s is drawn with seed s + this


@dataclass
class Result:
    """What a run produced (``result.json`` holds :meth:`to_json`).

    Attributes:
        spec: the spec.
        steps, loss, error: the learning curve at every evaluation (held-out error rate;
            NaN where the model's outputs were not all finite: unknown, never a score).
        final_error: the last evaluation's error rate; NaN when the run diverged or was
            never evaluated (a NaN error is unknown, not zero).
        success: the task's criterion on the last evaluation; always False for a run that
            diverged or whose final error is NaN.
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
    def from_json(cls, d: Any) -> Result:
        """Read back what :meth:`to_json` wrote, checking every field.

        Raises:
            ConfigError: not a result: a missing key or one of the wrong type, curves of
                different lengths, an error rate outside [0, 1], or ``success`` true for a run
                that diverged or has no finite final error.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"A result must be a JSON object. Got {_short(d)} instead.")
        missing = [k for k in _RESULT_KEYS if k not in d]
        if missing:
            raise ConfigError(f"The result lacks the key(s) {missing}.")
        steps = d["steps"]
        if not isinstance(steps, list) or not all(_is_int(v) and v >= 1 for v in steps):
            raise ConfigError(f"The result's 'steps' must be a list of integers >= 1. Got {_short(steps)} instead.")
        curves = {k: _numbers(d[k], k) for k in ("loss", "error")}
        for k, values in curves.items():
            if len(values) != len(steps):
                raise ConfigError(f"The result's '{k}' has {len(values)} values for {len(steps)} steps.")
        final = _number(d["final_error"], "final_error")
        for v in (final, *curves["error"]):
            if not (math.isnan(v) or 0.0 <= v <= 1.0):
                raise ConfigError(f"The result's error rates must lie in [0, 1] (or be NaN). Got {v!r} instead.")
        flags = {k: d[k] for k in ("success", "diverged")}
        for k, v in flags.items():
            if not isinstance(v, bool):
                raise ConfigError(f"The result's {k!r} must be true or false. Got {_short(v)} instead.")
        if flags["success"] and (flags["diverged"] or not math.isfinite(final)):
            raise ConfigError("The result says success for a run that diverged or has no finite final error.")
        if not isinstance(d["verdict"], dict):
            raise ConfigError(f"The result's 'verdict' must be an object. Got {_short(d['verdict'])} instead.")
        grads = d["layer_grad_norm"]
        if not isinstance(grads, dict):
            raise ConfigError(f"The result's 'layer_grad_norm' must be an object. Got {_short(grads)} instead.")
        profile = d["time_profile"]
        wall = _number(d["wall_time"], "wall_time")
        if not (math.isfinite(wall) and wall >= 0):
            raise ConfigError(f"The result's 'wall_time' must be a finite number >= 0. Got {wall!r} instead.")
        return cls(
            spec=Spec.from_json(d["spec"], where="the result's spec"),
            steps=[int(v) for v in steps],
            loss=curves["loss"],
            error=curves["error"],
            final_error=final,
            success=flags["success"],
            diverged=flags["diverged"],
            verdict=d["verdict"],
            layer_grad_norm={str(k): _number(v, f"layer_grad_norm[{k!r}]") for k, v in grads.items()},
            time_profile=None if profile is None else _numbers(profile, "time_profile"),
            wall_time=wall,
        )


_RESULT_KEYS = (
    "spec",
    "steps",
    "loss",
    "error",
    "final_error",
    "success",
    "diverged",
    "verdict",
    "layer_grad_norm",
    "time_profile",
    "wall_time",
)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, name: str) -> float:
    """A JSON number, or "nan"/"inf"/"-inf" as to_json_number writes non-finite ones."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return from_json_number(value)
    raise ConfigError(
        f'The result\'s {name!r} must be a number (or "nan", "inf", "-inf"). Got {_short(value)} instead.'
    )


def _numbers(values: Any, name: str) -> list[float]:
    if not isinstance(values, list):
        raise ConfigError(f"The result's {name!r} must be a list of numbers. Got {_short(values)} instead.")
    return [_number(v, name) for v in values]


def check_device(device: str, owner: str = "run") -> torch.device:
    """The torch device ``device`` names, if this machine has it.

    Raises:
        ConfigError: a CUDA device on a machine or torch build without CUDA, a CUDA index
            past the last device, or MPS where it is unavailable (the message says what there is).
    """
    d = torch.device(device)
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise _checks.out_of_range("device", owner, f"a device this machine has: 'cpu' ({why})", device)
        if d.index is not None and d.index >= n:
            raise _checks.out_of_range("device", owner, f"'cpu' or one of cuda:0..cuda:{n - 1}", device)
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise _checks.out_of_range("device", owner, "a device this machine has: 'cpu' (MPS is not available)", device)
    return d


def _heldout_error(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The task's error rate, or NaN when an output is NaN/Inf: such a model has no score.

    (A NaN prediction compares False with every threshold, so the task's own rule would
    count it as right: a diverged model scored 0 % error.)
    """
    if not bool(torch.isfinite(outputs).all()):
        return math.nan
    return task.error(outputs, targets)


def succeeded(result: Result, success_error: float) -> bool:
    """The task's criterion, where a diverged run or a NaN error is a failure (never a pass)."""
    return (not result.diverged) and math.isfinite(result.final_error) and result.final_error < success_error


def build_model(spec: Spec) -> torch.nn.Module:
    """The model a spec describes, initialized from its seed."""
    task = get_task(spec.task)
    common: dict[str, Any] = {
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
    limits: bool = True,
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
        limits: refuse a spec whose estimated memory or time is over the limits
            (:func:`gradwatch.experiments.spec.check_size`); False lifts them.

    Returns:
        A :class:`Result`. Same spec and seed ⇒ same numbers on the same machine. A run
        that diverges, or whose outputs are not finite, fails: ``success`` False and a NaN error.

    Raises:
        ConfigError: a device this machine lacks, or a spec over the limits (before any work).
    """
    start = time.perf_counter()
    task = get_task(spec.task)
    device = check_device(spec.device)
    check_size(spec, limits=limits)
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
    # remedies acting inside optimizer.step() (skipping a spike) put their hooks before the monitor's
    detach = remedy.attach(opt) if remedy.attach is not None else None
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
            if remedy.observe is not None:
                remedy.observe(loss.detach())
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
                    err = _heldout_error(task, _forward(model, spec, x_eval), y_eval)
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
    if detach is not None:
        detach()
    with np.errstate(all="ignore"):
        for name, lh in history.layers.items():
            finite = lh.grad_norm[np.isfinite(lh.grad_norm)]
            result.layer_grad_norm[name or "(model)"] = float(np.median(finite)) if finite.size else math.nan
    if history.time_profiles:
        result.time_profile = [float(v) for v in history.time_profiles[-1][1]]
    result.final_error = result.error[-1] if result.error and not result.diverged else math.nan
    result.success = succeeded(result, task.success_error)
    result.wall_time = time.perf_counter() - start
    if keep_model:
        result.model = model
    return result
