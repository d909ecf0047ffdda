"""Experiments: specs, the runner, the run store and sweeps.

- :class:`~gradwatch.experiments.spec.Spec` — one run, validated.
- :func:`~gradwatch.experiments.runner.run` — train with the monitor attached, score by the task.
- :func:`~gradwatch.experiments.batched.run_seeds` — K seeds as one vmapped model.
- :class:`~gradwatch.experiments.store.RunStore` — crash-safe directory of runs, verified on
  read (:class:`~gradwatch.experiments.store.InvalidRun` says why a run is not trusted).
- :func:`~gradwatch.experiments.sweep.sweep` — a grid on a local process pool, resumable.
"""

from gradwatch.experiments.batched import run_seeds
from gradwatch.experiments.runner import Result, build_model, run
from gradwatch.experiments.spec import MODELS, OPTIMIZERS, Spec, check_size
from gradwatch.experiments.store import InvalidRun, RunStore
from gradwatch.experiments.sweep import expand_grid, load_sweep, sweep

__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "InvalidRun",
    "Result",
    "RunStore",
    "Spec",
    "build_model",
    "check_size",
    "expand_grid",
    "load_sweep",
    "run",
    "run_seeds",
    "sweep",
]
