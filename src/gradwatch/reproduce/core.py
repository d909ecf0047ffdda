"""What a claim is: its source, statement, experiment, criterion and figure, as data.

A :class:`Criterion` holds a claim's thresholds *and* the sentence that states them: the
sentence is generated from the numbers (``template.format(**thresholds)``), and the
experiment reads the same numbers (``ctx.criterion["max_error"]``), so the text printed in
the report and the test applied cannot drift apart.

An experiment is a function ``(Context) -> Outcome``; the :class:`Context` carries the
tier, the claim's criterion, the run store root (or None) and the cache of runs shared by
claims within one ``reproduce`` call — everything passed explicitly, nothing global.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from gradwatch.experiments import Result, RunStore, Spec, run, run_seeds

__all__ = [
    "TIERS",
    "Claim",
    "Context",
    "Criterion",
    "Outcome",
    "bar_figure",
    "curve_panel",
    "error_bar_figure",
    "format_threshold",
    "train",
    "train_module",
]

TIERS = ("full", "quick")


def format_threshold(value: float) -> str:
    """A threshold as the sentence prints it: ``0.1``, ``1000``, ``1e-9``."""
    if isinstance(value, bool):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return format(value, "g").replace("e-0", "e-").replace("e+0", "e+")


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "" and isinstance(value, int | float):
            return format_threshold(value)
        return str(super().format_field(value, format_spec))


_FORMATTER = _Formatter()


@dataclass(frozen=True)
class Criterion:
    """A pass rule: named thresholds and the sentence that states them.

    Attributes:
        template: the sentence with one ``{name}`` field per threshold (a format spec such
            as ``{max_error:.0%}`` is allowed; without one, numbers print as
            :func:`format_threshold` does).
        thresholds: name → number; the experiment reads them as ``criterion[name]``.

    Example:
        >>> c = Criterion("error below {max_error:.0%} after training", {"max_error": 0.05})
        >>> c.sentence
        'error below 5% after training'
        >>> c.replace(max_error=0.1).sentence
        'error below 10% after training'
    """

    template: str
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = self.fields()
        missing, unused = named - set(self.thresholds), set(self.thresholds) - named
        if missing or unused:
            raise ValueError(
                f"Criterion template and thresholds disagree: fields without a threshold {sorted(missing)}, "
                f"thresholds the sentence does not state {sorted(unused)}."
            )

    def fields(self) -> set[str]:
        """The threshold names the template states."""
        return {name for _, name, _, _ in _FORMATTER.parse(self.template) if name}

    def __getitem__(self, name: str) -> float:
        return self.thresholds[name]

    @property
    def sentence(self) -> str:
        """The criterion in words, generated from the thresholds."""
        return _FORMATTER.format(self.template, **self.thresholds)

    def replace(self, **thresholds: float) -> Criterion:
        """The same criterion with some thresholds changed."""
        unknown = set(thresholds) - set(self.thresholds)
        if unknown:
            raise KeyError(f"unknown threshold(s) {sorted(unknown)}; this criterion has {sorted(self.thresholds)}")
        return Criterion(self.template, {**self.thresholds, **thresholds})


@dataclass
class Outcome:
    """The result of checking one claim.

    Attributes:
        measured: what we measured, in one sentence.
        passed: whether the criterion held.
        values: the numbers behind ``measured`` (JSON-ready).
        figure: the claim's figure, or None.
        note: how our experiment differs from the paper's, and why.
        skipped: the experiment could not run here (e.g. no GPU): neither held nor failed.
    """

    measured: str
    passed: bool
    values: dict[str, Any] = field(default_factory=dict)
    figure: Figure | None = None
    note: str = ""
    skipped: bool = False


@dataclass
class Context:
    """What an experiment gets: the tier, its criterion, where runs go and the shared run cache.

    Attributes:
        tier: "quick" or "full".
        criterion: the claim's criterion (thresholds and sentence).
        runs: the run store root (runs of claim ``c`` go to ``runs / c``), or None to keep
            no runs on disk.
        cache: results of runs already trained in this ``reproduce`` call, shared between
            claims that train the same spec (key: spec, seeds, mode, store).
    """

    tier: str
    criterion: Criterion
    runs: Path | None = None
    cache: dict[str, list[Result]] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """One published claim and how we check it.

    Attributes:
        id: a stable slug (``--only``).
        source: the paper(s).
        claim: the claim in one sentence.
        published: the published number(s).
        criterion: the pass rule, with the thresholds the experiment uses.
        experiment: runs the reduced experiment and returns an :class:`Outcome` (with its figure).
        remedies: names from ``gradwatch.remedies.available()`` that the claim exercises.
    """

    id: str
    source: str
    claim: str
    published: str
    criterion: Criterion
    experiment: Callable[[Context], Outcome]
    remedies: tuple[str, ...] = ()

    def check(
        self, tier: str = "quick", runs: Path | None = None, cache: dict[str, list[Result]] | None = None
    ) -> Outcome:
        """Run the experiment at ``tier``; runs that go through the runner are stored under ``runs``."""
        return self.experiment(Context(tier, self.criterion, runs, {} if cache is None else cache))


def train(
    ctx: Context, claim_id: str, spec: Spec, seeds: Sequence[int], *, batched: bool, keep_model: bool = False
) -> list[Result]:
    """Train ``spec`` for each seed through the runner: monitored one by one (``run``) or vmapped (``run_seeds``).

    With a run store, every run is kept in ``ctx.runs / claim_id``; a spec trained before in
    this ``reproduce`` call (by this claim or another) is taken from ``ctx.cache``.
    """
    key = json.dumps([spec.to_json(), list(seeds), batched, keep_model, str(ctx.runs), claim_id], sort_keys=True)
    if key in ctx.cache:
        return ctx.cache[key]
    store = RunStore(ctx.runs / claim_id) if ctx.runs is not None else None
    results: list[Result]
    if batched:
        results = run_seeds(spec, list(seeds))
        if store is not None:
            for r in results:
                store.start(r.spec)
                store.finish(r)
    else:
        results = []
        for s in (Spec.from_json({**spec.to_json(), "seed": seed}) for seed in seeds):
            run_dir = store.start(s) if store is not None else None
            r = run(s, run_dir, keep_model=keep_model, limits=False)  # the claims' sizes are curated
            if store is not None:
                store.finish(r)
            results.append(r)
    ctx.cache[key] = results
    return results


def train_module(
    ctx: Context, claim_id: str, variant: str, spec: Spec, model: nn.Module, *, keep_model: bool = False
) -> Result:
    """Train a module the caller built (pre-trained weights, an init outside ``INITS``, hooks) through ``run``.

    The spec describes the task, optimizer and budget; the run is kept in
    ``ctx.runs / claim_id / variant`` (the variant names what the spec cannot say) and never cached.
    """
    store = None
    if ctx.runs is not None:
        RunStore(ctx.runs / claim_id)  # creates the claim's folder, the variant's parent
        store = RunStore(ctx.runs / claim_id / variant)
    run_dir = store.start(spec) if store is not None else None
    result = run(spec, run_dir, keep_model=keep_model, model=model, limits=False)  # curated sizes
    if store is not None:
        store.finish(result)
    return result


def curve_panel(ax: Axes, label: str, results: Sequence[Result], color: str) -> None:
    """Mean held-out error over seeds against the training step, with the min–max band."""
    steps = np.array(results[0].steps)
    errs = np.array([r.error for r in results])
    ax.plot(steps, errs.mean(axis=0), color=color, label=label)
    ax.fill_between(steps, errs.min(axis=0), errs.max(axis=0), color=color, alpha=0.2)


def bar_figure(values: Mapping[str, float], ylabel: str, title: str = "", chance: float | None = None) -> Figure:
    """A bar chart of one number per condition (held-out errors, accuracies, seconds)."""
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    names = list(values)
    ax.bar(range(len(names)), [values[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", label="chance")
        ax.legend(fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def error_bar_figure(errs: Mapping[str, float], diverged: Mapping[str, bool], ylabel: str) -> Figure:
    """Bars of held-out error per condition; a diverged run is a full red bar with a ×."""
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    names = list(errs)
    heights = [1.0 if diverged[n] else errs[n] for n in names]
    ax.bar(range(len(names)), heights, color=["C3" if diverged[n] else "C0" for n in names])
    for i, n in enumerate(names):
        if diverged[n]:
            ax.text(i, 0.5, "×", ha="center", va="center", fontsize=20, color="white")
    ax.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names], fontsize=7)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig
