"""Diagnose a training script: run it under the monitor, name the problem, try the fixes, recommend one.

:func:`diagnose` runs the user's script unmodified (:mod:`gradwatch.diagnose.script`) for N
training steps with a monitor on every model it trains (:mod:`gradwatch.diagnose.session`),
and takes the verdict of the model that trained most. With ``try_remedies`` it runs the same
first N steps again — same seeds, so the same batches — once unchanged (the run-to-run
noise) and once per remedy that fits the verdict (:func:`candidates`), applied from outside
(:mod:`gradwatch.diagnose.tweaks`), and compares the loss at the end of each run.

How a run is scored: its *final loss* is the mean loss over the last fifth of its steps
(at least one step); a run whose loss became NaN/Inf *diverged* at that step and has no
final loss (NaN: a diverged run never wins). A remedy's *improvement* is the plain run's
final loss minus its own; its *uncertainty* combines the two runs' standard errors over that
window (step-to-step noise) and the difference between the two plain runs (run-to-run
noise). The recommendation is the remedy with the lowest final loss whose verdict is not
worse than the plain run's, if its improvement exceeds twice its uncertainty (or the plain
run diverged and it did not); otherwise none is recommended, and the report says so.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import linecache
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwatch._progress import ProgressCallback
from gradwatch.diagnose.script import ScriptRun, run_script
from gradwatch.diagnose.session import Session, Watched
from gradwatch.diagnose.tweaks import (
    ActivationSwap,
    Init,
    LearningRate,
    RegistryClip,
    SignSteps,
    TweakBase,
    swappable,
)
from gradwatch.errors import ConfigError
from gradwatch.monitor.history import History
from gradwatch.monitor.verdict import Verdict

__all__ = [
    "CodeChange",
    "Diagnosis",
    "Trial",
    "candidates",
    "clip_threshold",
    "code_changes",
    "diagnose",
    "recommend",
    "score",
]

#: how many steps count as the end of a run (a fifth of them, at least one)
END_FRACTION = 0.2
#: a remedy is recommended when its improvement exceeds this many uncertainties
SIGNIFICANCE = 2.0
#: verdict statuses from best to worst (a remedy may not make the gradient flow worse)
_HEALTH = {"healthy": 0, "vanishing": 1, "exploding": 1, "nonfinite": 2}


@dataclass
class Trial:
    """One run of the script's first N steps: as written, or with one remedy.

    Attributes:
        label: ``"as written"``, ``"as written (repeat)"`` or the remedy's label.
        remedy: the registry name applied (None for the plain runs).
        params: the remedy's numbers (e.g. ``{"max_norm": 0.42}``).
        steps: training steps done.
        losses: the loss at every step (None where unknown: ``backward`` on a non-scalar).
        status: the verdict's status for the main model ("" when nothing was recorded).
        final_loss: mean loss over the last fifth of the steps (NaN if it diverged).
        final_se: standard error of that mean (step-to-step noise).
        start_loss: mean loss over the first fifth of the steps.
        diverged_at: the first step whose loss is NaN/Inf, or None.
        error: how the run failed (``"ValueError: …"``), or None.
        seconds: wall-clock time of the run (s).
    """

    label: str
    remedy: str | None
    params: dict[str, float]
    steps: int
    losses: list[float | None]
    status: str
    final_loss: float
    final_se: float
    start_loss: float
    diverged_at: int | None
    error: str | None
    seconds: float

    @property
    def outcome(self) -> str:
        """One phrase: ``"diverged at step 12"``, ``"crashed: …"`` or ``"loss 7.5 → 5.1"``."""
        if self.error is not None:
            return f"crashed at step {self.steps}: {self.error}"
        if self.diverged_at is not None:
            return f"diverged at step {self.diverged_at}"
        return f"loss {self.start_loss:.4g} → {self.final_loss:.4g}"


@dataclass
class CodeChange:
    """A remedy that needs the script edited, and the line to change.

    Attributes:
        remedy: the registry name.
        why: the verdict's reason for it.
        location: ``"file.py:12"`` of the line to change ("" when not found).
        line: that line's text.
    """

    remedy: str
    why: str
    location: str = ""
    line: str = ""


@dataclass
class Diagnosis:
    """What ``gradwatch diagnose`` found (see :meth:`to_json` for the document's shape).

    Attributes:
        script, args: what was run.
        steps: training steps diagnosed; ended: how the diagnosed run ended (see ScriptRun).
        models: one entry per model trained: name, class, optimizer, parameters, steps, verdict.
        verdict: the main model's verdict (None when no model trained).
        trials: the runs compared (the plain run first), empty without ``try_remedies``.
        code_changes: remedies that need an edit of the script.
        recommendation: the chosen trial's label, improvement, uncertainty and sentence, or None.
        deterministic: whether two plain runs gave the same losses (None: not checked).
        repeat_difference: |final loss of plain run 1 − plain run 2| (NaN: not checked).
        error, traceback: the script's own failure, if any.
        exit_code: what the command exits with (0 done, 1 the script raised, 2 nothing trained,
            130 interrupted).
        problems: what went wrong on gradwatch's side (a model left unwatched, a script that
            cannot be run twice in one process).
        history: the main model's recorded history (in memory; not in the JSON document).
        main_model: index in ``models`` of the model the verdict is about.
    """

    script: str
    args: list[str]
    steps: int
    ended: str
    seconds: float
    models: list[dict[str, Any]]
    verdict: Verdict | None
    trials: list[Trial] = field(default_factory=list)
    code_changes: list[CodeChange] = field(default_factory=list)
    recommendation: dict[str, Any] | None = None
    deterministic: bool | None = None
    repeat_difference: float = math.nan
    error: str | None = None
    traceback: str | None = None
    exit_code: int = 0
    main_model: int = 0
    not_tried: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    history: History | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``diagnosis.json`` document (non-finite numbers as null)."""
        return _jsonable(
            {
                "script": self.script,
                "args": self.args,
                "steps": self.steps,
                "ended": self.ended,
                "seconds": self.seconds,
                "models": self.models,
                "main_model": self.main_model,
                "verdict": self.verdict.to_json() if self.verdict is not None else None,
                "trials": [{**asdict(t), "outcome": t.outcome} for t in self.trials],
                "deterministic": self.deterministic,
                "repeat_difference": self.repeat_difference,
                "recommendation": self.recommendation,
                "code_changes": [asdict(c) for c in self.code_changes],
                "not_tried": self.not_tried,
                "problems": self.problems,
                "error": self.error,
                "traceback": self.traceback,
                "exit_code": self.exit_code,
            }
        )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------- scoring
def score(losses: Sequence[float | None]) -> tuple[float, float, float, int | None]:
    """(final loss, its standard error, start loss, first diverged step or None) of a loss curve.

    Final and start losses are means over the last and first fifth of the steps whose loss
    is known (at least one step); None marks an unknown loss (``backward`` on a non-scalar)
    and is left out, never counted as a number or as a divergence. A curve with a NaN/Inf
    diverged at its first such step and its final loss and standard error are NaN. A curve
    of one known step has standard error 0; one with none, NaN everywhere.
    """
    steps = [i for i, v in enumerate(losses) if v is not None]
    a = np.asarray([losses[i] for i in steps], dtype=float)
    if a.size == 0:
        return math.nan, math.nan, math.nan, None
    bad = np.flatnonzero(~np.isfinite(a))
    w = max(1, round(a.size * END_FRACTION))
    start = float(a[:w].mean()) if np.isfinite(a[:w]).all() else math.nan
    if bad.size:
        return math.nan, math.nan, start, steps[int(bad[0])]
    tail = a[-w:]
    se = float(tail.std(ddof=1) / math.sqrt(w)) if w > 1 else 0.0
    return float(tail.mean()), se, start, None


def _trial(label: str, tweak: TweakBase | None, run: ScriptRun, main: int) -> Trial:
    watched = run.session.watched
    w = watched[main] if main < len(watched) else None
    losses = w.loss_curve() if w is not None else []
    final, se, start, diverged = score(losses)
    status = w.verdict.status if w is not None and w.verdict is not None and w.steps else ""
    error = run.error if run.ended in ("raised", "exit") else None
    return Trial(
        label,
        tweak.remedy if tweak else None,
        tweak.params() if tweak else {},
        w.steps if w is not None else 0,
        losses,
        status,
        final,
        se,
        start,
        diverged,
        error,
        run.seconds,
    )


def recommend(plain: Trial, repeat: Trial | None, tried: Sequence[Trial]) -> dict[str, Any]:
    """Pick the remedy to recommend, with its measured improvement and uncertainty (see the module doc).

    Returns a dict: ``label`` (None when nothing is recommended), ``remedy``, ``improvement``,
    ``relative`` (improvement / plain final loss), ``uncertainty``, ``sentence`` and, for a
    recommendation, ``tied``: the other remedies whose final loss is within twice their joint
    standard error of the best one's.
    """
    noise = abs(plain.final_loss - repeat.final_loss) if repeat is not None else 0.0
    usable = [
        t
        for t in tried
        if t.error is None and t.diverged_at is None and _HEALTH.get(t.status, 3) <= _HEALTH.get(plain.status, 3)
    ]
    none: dict[str, Any] = {"label": None, "remedy": None, "improvement": math.nan, "relative": math.nan}
    if not usable:
        return {
            **none,
            "uncertainty": math.nan,
            "sentence": "no remedy tried trained without diverging or worsening the gradient flow.",
        }
    best = min(usable, key=lambda t: t.final_loss)
    if plain.diverged_at is not None:
        return {
            "label": best.label,
            "remedy": best.remedy,
            "improvement": math.inf,
            "relative": math.nan,
            "uncertainty": math.nan,
            "sentence": (
                f"{best.label}: the script as written diverged at step {plain.diverged_at}; "
                f"with {best.label} the loss went {best.start_loss:.4g} → {best.final_loss:.4g} without diverging."
            ),
        }
    improvement = plain.final_loss - best.final_loss
    uncertainty = math.sqrt(plain.final_se**2 + best.final_se**2 + (noise if math.isfinite(noise) else 0.0) ** 2)
    relative = improvement / plain.final_loss if plain.final_loss else math.nan
    if improvement > SIGNIFICANCE * uncertainty and improvement > 0:
        tied = [
            t.label
            for t in usable
            if t is not best and t.final_loss - best.final_loss <= SIGNIFICANCE * math.hypot(t.final_se, best.final_se)
        ]
        also = f" As good within the noise: {', '.join(tied)}." if tied else ""
        return {
            "label": best.label,
            "remedy": best.remedy,
            "improvement": improvement,
            "relative": relative,
            "uncertainty": uncertainty,
            "tied": tied,
            "sentence": (
                f"{best.label}: final loss {best.final_loss:.4g} vs {plain.final_loss:.4g} as written — "
                f"{improvement:.3g} lower ({relative:.0%}) ± {uncertainty:.2g} (run-to-run and step-to-step noise).{also}"
            ),
        }
    return {
        **none,
        "uncertainty": uncertainty,
        "sentence": (
            f"no remedy beat the noise: the best, {best.label}, ends at {best.final_loss:.4g} vs {plain.final_loss:.4g} "
            f"as written (± {uncertainty:.2g})."
        ),
    }


# ---------------------------------------------------------------------------------- candidates
_CODE_CHANGES = {
    "lstm": r"\b(nn\.)?(RNN|GRU|RNNCell|GRUCell)\(|\bclass \w+\(",
    "batchnorm": r"\b(nn\.)?(Sequential|Linear|Conv\dd)\(",
    "layernorm": r"\b(nn\.)?(Sequential|Linear|TransformerEncoderLayer)\(",
    "residual": r"\b(nn\.)?Sequential\(|def forward\(",
    "spectral_radius<1": r"\b(nn\.)?(RNN|GRU|LSTM)\(|weight_hh",
    "pascanu_regularizer": r"\.backward\(",
    "numerics:guard": r"\b(log|sqrt|rsqrt|exp|pow|div|acos|asin)\(|\*\*|(?<!/)/(?![/=])",
    "data:check": r"\bfor .* in .*:|DataLoader\(",
    "amp:grad_scaler": r"\.backward\(|autocast\(",
    "history_compressor": r"\bclass \w+\(",
    "dbn_pretraining": r"\bclass \w+\(",
}


def clip_threshold(norms: np.ndarray) -> float:
    """The norm-clipping threshold for a run's global gradient norms (NaN when none is finite).

    The median norm before the gradient first jumped ×10 above the median of the steps before
    it (the norm of the still-healthy run, as Pascanu et al. 2013 advise: "the average norm
    over a sufficiently large number of updates"), or, when no such jump follows at least two
    steps, the 10th percentile of all finite norms (AutoClip's rule, Seetharaman et al. 2020).
    """
    a = np.asarray(norms, dtype=float)
    ok = np.isfinite(a) & (a > 0)
    if not ok.any():
        return math.nan
    for i in range(2, a.size):
        before = a[:i][ok[:i]]
        if before.size >= 2 and (not ok[i] or a[i] > 10 * np.median(before)):
            return float(np.median(before))
    return float(np.percentile(a[ok], 10))


def candidates(verdict: Verdict, run: Watched, *, norms: np.ndarray, cells: Sequence[str]) -> list[TweakBase]:
    """The remedies to try for ``verdict`` that can be applied without editing the script.

    Follows the verdict's advice (registry names), in its order: ``clip_grad_norm`` → norm
    clipping at :func:`clip_threshold` of ``norms`` (the run's global norms) and AGC;
    ``lr:lower`` → lr × 0.3 and × 0.1; ``init:orthogonal`` (and identity, IRNN) on recurrent
    modules; ``lstm`` on a model that already has one → the forget-gate bias; ``relu`` /
    ``leaky_relu`` → activation modules swapped; ``init:kumar`` / ``init:yilmaz_poli`` on the
    whole model. A vanishing gradient under plain SGD (or no optimizer) also gets sign steps.
    A healthy verdict gets nothing.
    """
    if verdict.status == "healthy":
        return []
    model, opt = run.model, run.optimizer
    names = [a.remedy for a in verdict.advice]
    recurrent = any(isinstance(m, nn.RNNBase) for m in model.modules()) or bool(cells)
    out: list[TweakBase] = []
    for name in names:
        if name == "clip_grad_norm":
            max_norm = clip_threshold(norms)
            if math.isfinite(max_norm):
                out.append(
                    RegistryClip(f"clip_grad_norm (max_norm={max_norm:.3g})", "clip_grad_norm", {"max_norm": max_norm})
                )
            out.append(RegistryClip("agc (λ=0.01)", "agc", {"clipping": 0.01}))
        elif name == "lr:lower":
            out += [LearningRate("lr×0.3", "lr:lower", 0.3), LearningRate("lr×0.1", "lr:lower", 0.1)]
        elif name in ("init:orthogonal", "init:identity_recurrent") and recurrent:
            out.append(Init("orthogonal init (recurrent)", "init:orthogonal", "orthogonal", tuple(cells)))
            if verdict.status == "vanishing":
                out.append(
                    Init(
                        "identity init (recurrent, IRNN)", "init:identity_recurrent", "identity_recurrent", tuple(cells)
                    )
                )
        elif name == "lstm" and any(isinstance(m, nn.LSTM) for m in model.modules()):
            out.append(Init("forget-gate bias 5", "init:forget_bias", "forget_bias"))
        elif name in ("relu", "leaky_relu") and swappable(model):
            out.append(ActivationSwap("sigmoid/tanh → ReLU", "relu"))
        elif name in ("init:kumar", "init:yilmaz_poli"):
            init = name.split(":")[1]
            out.append(Init(f"{init} init", name, init, recurrent_only=False))
    if verdict.status == "vanishing" and (opt is None or type(opt) is torch.optim.SGD):
        out.append(SignSteps("sign steps (signSGD)", "sign_sgd"))
    seen: set[str] = set()
    unique = []
    for t in out:
        if t.label not in seen:
            seen.add(t.label)
            unique.append(t)
    return unique


def code_changes(
    verdict: Verdict, model: nn.Module, script: Path, tried: Sequence[str]
) -> tuple[list[CodeChange], list[str]]:
    """Remedies of the verdict that need the script edited (with the line to change), and those neither tried nor editable here."""
    changes, skipped = [], []
    for advice in verdict.advice:
        if advice.remedy in tried:
            continue
        pattern = _CODE_CHANGES.get(advice.remedy)
        if pattern is None:
            skipped.append(advice.remedy)
            continue
        where = _find_line(pattern, model, script, verdict.where, forward_only=advice.remedy in _FORWARD_ONLY)
        changes.append(CodeChange(advice.remedy, advice.reason, *where))
    return changes, skipped


#: code changes whose line is only looked for in a module's ``forward`` (arithmetic), never script-wide
_FORWARD_ONLY = frozenset({"numerics:guard"})


def _methods(cls: type, names: Sequence[str] = ("forward", "__init__")) -> list[Any]:
    """The code objects of a user class's methods ``names`` (classes of torch itself: none)."""
    if cls.__module__.startswith(("torch.", "transformers.", "lightning.")):
        return []
    functions = [cls.__dict__.get(n) for n in names]
    return [f.__code__ for f in functions if f is not None and hasattr(f, "__code__")]


_QUOTES = ('"' * 3, "'" * 3)


def _find_line(
    pattern: str, model: nn.Module, script: Path, where: Sequence[str], *, forward_only: bool = False
) -> tuple[str, str]:
    """The first line matching ``pattern`` in the forward/__init__ of the modules named in ``where``,
    then of the model's class, then anywhere in the script (docstrings and comments skipped).

    ``forward_only``: look in the ``forward`` methods only, and not script-wide (no line rather
    than a misleading one).
    """
    named = dict(model.named_modules())
    names = ("forward",) if forward_only else ("forward", "__init__")
    classes = [type(named[name]) for name in where if name in named] + [type(model)]
    codes = [c for cls in classes for c in _methods(cls, names)]
    regex = re.compile(pattern)
    for code in codes:
        lines = linecache.getlines(code.co_filename)
        if not lines:
            continue
        block = inspect.getblock(lines[code.co_firstlineno - 1 :])
        for i, line in enumerate(block[1:], start=code.co_firstlineno + 1):  # the body, not the def line
            if regex.search(line) and not line.strip().startswith(("#", *_QUOTES)):
                return f"{Path(code.co_filename).name}:{i}", line.strip()
    if forward_only:
        return "", ""
    in_string = False
    for i, line in enumerate(linecache.getlines(str(script)), 1):
        stripped = line.strip()
        quotes = sum(stripped.count(q) for q in _QUOTES)
        if in_string or quotes:
            in_string = in_string != (quotes % 2 == 1)
            continue
        if regex.search(line) and not stripped.startswith("#"):
            return f"{script.name}:{i}", stripped
    return "", ""


# ---------------------------------------------------------------------------------- the command
def _main_model(session: Session) -> int:
    if not session.watched:
        return 0
    return max(range(len(session.watched)), key=lambda i: (session.watched[i].steps, len(session.watched[i].params)))


def _model_entry(w: Watched) -> dict[str, Any]:
    return {
        "name": w.name,
        "class": f"{type(w.model).__module__}.{type(w.model).__qualname__}",
        "optimizer": type(w.optimizer).__name__ if w.optimizer is not None else None,
        "parameters": sum(p.numel() for p in w.params),
        "steps": w.steps,
        "verdict": w.verdict.to_json() if w.verdict is not None else None,
    }


def diagnose(
    script: str | Path,
    args: Sequence[str] = (),
    *,
    steps: int | None = None,
    seconds: float | None = None,
    try_remedies: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
    quiet_tries: bool = True,
) -> Diagnosis:
    """Run ``script`` under the monitor for ``steps`` steps (or ``seconds``), diagnose, optionally try remedies.

    Args:
        script: path of a Python training script (run unmodified, in this process).
        args: the script's own command-line arguments.
        steps: training steps to diagnose (optimizer steps; backward calls without an optimizer).
            With neither ``steps`` nor ``seconds``, 200.
        seconds: stop at the first step ending this long after the first forward (s).
        try_remedies: re-run the same steps once unchanged and once per fitting remedy.
        out: directory for the models' JSONL logs (``run.jsonl``); None: none written.
        seed: every RNG is seeded with it before each run.
        on_progress: ``on_progress(done, total, current run)`` before each run and at the end
            (:func:`gradwatch._progress.progress_bar`'s callback).
        quiet_tries: hide what the script prints during the remedy runs (its first run prints as usual).

    Returns:
        the :class:`Diagnosis` (``exit_code`` 2 when no model trained, 1 when the script raised,
        130 when interrupted).

    Raises:
        ConfigError: ``script`` is not a file, or ``steps``/``seconds``/``seed`` out of range.
        KeyboardInterrupt: never — an interrupt ends the runs and the partial diagnosis is returned
            (``ended == "interrupted"``).
    """
    path = Path(script)
    if not path.is_file():
        raise ConfigError(f"diagnose: no such script {str(script)!r} (give the path of a Python file).")
    path = path.resolve()  # the script may change the working folder
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"diagnose: steps must be a positive integer, got {steps!r}.")
    if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"diagnose: seconds must be a positive number, got {seconds!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"diagnose: seed must be an integer in [0, 2**32), got {seed!r}.")
    if steps is None and seconds is None:
        steps = 200
    log_dir = Path(out).resolve() if out is not None else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    args = list(args)
    report = on_progress or (lambda done, total, current: None)
    report(0, 1, "as written")
    session = Session(max_steps=steps, max_seconds=seconds, log_dir=log_dir)
    run = run_script(path, args, session, seed=seed)
    main = _main_model(session)
    result = Diagnosis(
        str(script),
        args,
        session.steps,
        run.ended,
        run.seconds,
        [_model_entry(w) for w in session.watched],
        session.watched[main].verdict if session.watched else None,
        error=run.error,
        traceback=run.traceback,
        main_model=main,
        problems=list(session.problems),
        history=session.watched[main].history if session.watched else None,
    )
    result.exit_code = {"raised": 1, "interrupted": 130}.get(run.ended, 0)
    if not session.watched or session.steps == 0:
        if run.ended not in ("raised", "interrupted"):
            result.exit_code = 2
            result.error = result.error or (
                "the script never trained a model: no backward() through a module with trainable parameters"
                if session.backward_calls == 0
                else "the script called backward() but no module with trainable parameters was called under autograd"
            )
        return result
    w = session.watched[main]
    verdict = result.verdict
    if verdict is None or w.history is None:
        return result  # the verdict itself failed (see problems)
    cells = [
        n
        for n, role in w.history.roles.items()
        if role == "recurrent" and not isinstance(dict(w.model.named_modules()).get(n), nn.RNNBase)
    ]
    tries = candidates(verdict, w, norms=np.asarray(w.history.global_grad_norm, dtype=float), cells=cells)
    result.code_changes, result.not_tried = code_changes(verdict, w.model, path, [t.remedy for t in tries])
    if not try_remedies or not tries or run.ended == "interrupted":
        return result
    n = session.steps
    plain = _trial("as written", None, run, main)
    result.trials = [plain]
    labels = ["as written (repeat)", *[t.label for t in tries]]
    total = 1 + len(labels)
    try:
        for i, (label, tweak) in enumerate(zip(labels, [None, *tries], strict=True), start=1):
            report(i, total, label)
            with contextlib.ExitStack() as stack:
                if quiet_tries:
                    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
                again = run_script(path, args, Session(max_steps=n, tweaks=[tweak] if tweak else []), seed=seed)
            trial = _trial(label, tweak, again, main)
            result.trials.append(trial)
            if again.ended == "interrupted":
                result.ended, result.exit_code = "interrupted", 130
                break
            if tweak is None and trial.error is not None and plain.error is None:
                result.problems.append(
                    f"the script cannot be run twice in one process (its second run failed: {trial.error}); "
                    "remedies were not compared"
                )
                break
    except KeyboardInterrupt:  # between two runs
        result.ended, result.exit_code = "interrupted", 130
    repeat = result.trials[1] if len(result.trials) > 1 else None
    if repeat is not None:
        same = len(repeat.losses) == len(plain.losses) and np.array_equal(
            np.asarray(repeat.losses, dtype=float), np.asarray(plain.losses, dtype=float), equal_nan=True
        )
        result.deterministic = bool(same)
        result.repeat_difference = abs(plain.final_loss - repeat.final_loss)
    if repeat is not None and repeat.error is not None and plain.error is None:
        return result
    result.recommendation = recommend(plain, repeat, result.trials[2:])
    report(total, total, None)
    return result
