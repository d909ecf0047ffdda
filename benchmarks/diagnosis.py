"""Does the verdict name the right pathology, place and remedy? The validation corpus, scored.

Runs every scenario of ``diagnosis_scenarios.py`` (training programs whose pathology is
known by construction, the monitor attached with default settings) over several seeds and
scores each verdict against the scenario's ground truth:

- **status**: the verdict's status is one of the acceptable ones (or a matching lint
  warning was raised, for misuse scenarios);
- **location**: the first layer/module the verdict names is an acceptable one (a name also
  matches its sub-modules); for non-finite scenarios the origin (forward/backward) too;
- **remedy**: the rank of the first acceptable remedy in the advice (registry names;
  "kind:<kind>" accepts any remedy of that kind); right when it is among the first two.

Prints the status confusion matrix, a per-scenario table (named vs true location, remedy
ranks) and the totals against the targets of issue 13: ≥ 90 % of scenario-seeds with the
right status and location, the right remedy in the first two advice items for ≥ 80 %,
zero false alarms on the healthy controls.

Usage:
    python benchmarks/diagnosis.py [--quick] [--json] [--only NAME,...] [--seeds N] [--verbose] [--check]

``--quick``: fewer steps and one seed per scenario (two per control); ``--check``: exit 1
when a target is missed. Threads are pinned to 1; run one corpus process at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

import diagnosis_scenarios as corpus
from gradwatch import _remedy_catalog
from gradwatch._output import dump_json

STATUSES = corpus.STATUSES
TARGETS = {"status_location": 0.9, "remedy_top2": 0.8, "false_alarms": 0}
# where-entries that are not layer or module names
_NOT_A_LAYER = re.compile(r"^(time steps|global$|all layers$|\(model\)$)")


@dataclass(frozen=True)
class Score:
    """One scenario-seed, scored."""

    scenario: str
    seed: int
    control: bool
    expected: str
    status: str
    status_ok: bool
    location: str | None
    location_ok: bool | None
    origin: str | None
    remedy_rank: int | None
    remedy_ok: bool | None
    advice: tuple[str, ...]
    lints: tuple[str, ...]
    seconds: float
    error: str | None = None

    @property
    def correct(self) -> bool:
        """Right status and (where scored) right location."""
        return self.status_ok and self.location_ok is not False


def _matches(name: str, acceptable: Iterable[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in acceptable)


def named_location(verdict: Any) -> str | None:
    """The first layer or module the verdict names (time-step ranges and "global" skipped)."""
    for w in getattr(verdict, "where", ()) or ():
        if not _NOT_A_LAYER.match(str(w)):
            return str(w)
    return None


def nonfinite_origin(first: Any) -> str | None:
    """Return "forward" or "backward" from the monitor's first non-finite record (None if there is none)."""
    if first is None:
        return None
    origin = getattr(first, "origin", None)
    if origin in ("forward", "backward"):
        return str(origin)
    tensor = str(getattr(first, "tensor", ""))
    return "forward" if tensor in ("forward output", "loss") else "backward"


def remedy_rank(advice: Sequence[str], acceptable: Sequence[str], kinds: dict[str, str] | None = None) -> int | None:
    """1-based rank of the first acceptable remedy in ``advice``; None when none is there.

    ``acceptable`` holds registry names, or "kind:<kind>" for any remedy of that catalog kind.
    """
    kinds = kinds if kinds is not None else {r.name: r.kind for r in _remedy_catalog.CATALOG}
    for i, name in enumerate(advice, start=1):
        for a in acceptable:
            if name == a or (a.startswith("kind:") and kinds.get(name) == a[5:]):
                return i
    return None


def score(
    scenario: corpus.Scenario,
    seed: int,
    verdict: Any,
    *,
    first_nonfinite: Any = None,
    lints: Sequence[str] = (),
    seconds: float = math.nan,
    error: str | None = None,
) -> Score:
    """Score one verdict (any object with ``status``, ``where`` and ``advice``) against the truth."""
    truth = scenario.truth
    status = "error" if verdict is None else str(verdict.status)
    lint_hit = truth.lint is not None and any(re.search(truth.lint, m) for m in lints)
    status_ok = status in truth.status or lint_hit
    advice = tuple(str(a.remedy) for a in getattr(verdict, "advice", ()) or ())
    where = named_location(verdict) if verdict is not None else None
    origin = nonfinite_origin(first_nonfinite) if status == "nonfinite" else None
    location_ok: bool | None = None
    if truth.location is not None:
        location_ok = where is not None and _matches(where, truth.location)
        if truth.origin is not None:
            location_ok = location_ok and origin == truth.origin
    rank: int | None = None
    remedy_ok: bool | None = None
    if truth.remedies or truth.lint:
        rank = 1 if lint_hit else remedy_rank(advice, truth.remedies)
        remedy_ok = rank is not None and rank <= 2
    if status not in truth.status and lint_hit:
        status = "lint"
    return Score(
        scenario.name,
        seed,
        scenario.control,
        truth.status[0],
        status,
        status_ok,
        where,
        location_ok,
        origin,
        rank,
        remedy_ok,
        advice,
        tuple(lints),
        seconds,
        error,
    )


def run_one(scenario: corpus.Scenario, seed: int, steps: int) -> tuple[Score, corpus.Outcome | None]:
    """Run one scenario-seed with warnings captured; an exception is scored as status "error"."""
    from gradwatch.errors import GradwatchWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = scenario.run(seed, steps)
        except Exception as exc:  # a monitor crash is a result too: the corpus keeps going
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return score(scenario, seed, None, seconds=time.perf_counter() - t0, error=tb), None
    lints = [str(w.message) for w in caught if issubclass(w.category, GradwatchWarning)]
    outcome.warnings = lints
    s = score(
        scenario,
        seed,
        outcome.verdict,
        first_nonfinite=outcome.first_nonfinite,
        lints=lints,
        seconds=time.perf_counter() - t0,
    )
    return s, outcome


def confusion(scores: Sequence[Score]) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows: expected status; columns: the verdict's status (plus "lint" and "error" when they occur)."""
    cols = list(STATUSES) + [c for c in ("lint", "error") if any(s.status == c for s in scores)]
    rows = [r for r in STATUSES if any(s.expected == r for s in scores)]
    counts = Counter((s.expected, s.status) for s in scores)
    return rows, cols, [[counts[(r, c)] for c in cols] for r in rows]


def summary(scores: Sequence[Score]) -> dict[str, Any]:
    """The totals against the targets."""
    n = len(scores)
    remedy_scored = [s for s in scores if s.remedy_ok is not None]
    controls = [s for s in scores if s.control]
    out = {
        "scenario_seeds": n,
        "scenarios": len({s.scenario for s in scores}),
        "status_ok": sum(s.status_ok for s in scores) / n if n else math.nan,
        "status_location": sum(s.correct for s in scores) / n if n else math.nan,
        "remedy_scored": len(remedy_scored),
        "remedy_top2": sum(bool(s.remedy_ok) for s in remedy_scored) / len(remedy_scored)
        if remedy_scored
        else math.nan,
        "control_seeds": len(controls),
        "false_alarms": sum(s.status != "healthy" for s in controls),
        "errors": sum(s.error is not None for s in scores),
        "seconds": sum(s.seconds for s in scores),
    }
    out["targets_met"] = bool(
        out["status_location"] >= TARGETS["status_location"]
        and (not remedy_scored or out["remedy_top2"] >= TARGETS["remedy_top2"])
        and out["false_alarms"] <= TARGETS["false_alarms"]
    )
    return out


def _frac(values: Sequence[bool | None]) -> str:
    scored = [v for v in values if v is not None]
    return f"{sum(map(bool, scored))}/{len(scored)}" if scored else "—"


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.0%}"


def render(scores: Sequence[Score], quick: bool) -> str:
    """The human-readable report: confusion matrix, per-scenario table, totals."""
    lines = [f"gradwatch diagnosis corpus ({'quick' if quick else 'full'}), torch {torch.__version__}", ""]
    rows, cols, m = confusion(scores)
    lines.append("status confusion (rows: expected, first acceptable status; columns: verdict)")
    lines.append(f"{'':>11} " + " ".join(f"{c:>9}" for c in cols))
    for r, counts in zip(rows, m, strict=True):
        lines.append(f"{r:>11} " + " ".join(f"{c:>9}" for c in counts))
    lines.append("")
    header = (
        f"{'scenario':<24} {'n':>2}  {'expected':<18} {'verdicts':<24} {'st+loc':>6}  {'true location':<26} "
        f"{'named':<26} {'remedy ranks':<12} {'s':>5}"
    )
    lines += [header, "-" * len(header)]
    by_name: dict[str, list[Score]] = {}
    for s in scores:
        by_name.setdefault(s.scenario, []).append(s)
    for name, ss in by_name.items():
        sc = corpus.get(name)
        verdicts = ", ".join(f"{k}×{v}" for k, v in Counter(s.status for s in ss).items())
        named = ", ".join(f"{k}×{v}" for k, v in Counter(s.location or "—" for s in ss).items())
        if sc.truth.origin:
            named += " (" + ",".join(sorted({str(s.origin) for s in ss})) + ")"
        true_loc = (
            "—"
            if sc.truth.location is None
            else "|".join(sc.truth.location[:3]) + ("|…" if len(sc.truth.location) > 3 else "")
        )
        if sc.truth.origin:
            true_loc += f" ({sc.truth.origin})"
        ranks = ",".join("—" if s.remedy_ok is None else str(s.remedy_rank or "x") for s in ss)
        expected = "|".join(sc.truth.status) + ("*" if sc.control else "")
        lines.append(
            f"{name:<24} {len(ss):>2}  {expected:<18} {verdicts:<24} {_frac([s.correct for s in ss]):>6}  "
            f"{true_loc[:26]:<26} {named[:26]:<26} {ranks:<12} {sum(s.seconds for s in ss):5.1f}"
        )
    lines.append("(* healthy control; remedy ranks: position of the first right remedy, x = absent, — = not scored)")
    errs = [s for s in scores if s.error]
    for s in errs:
        lines.append(f"error in {s.scenario} seed {s.seed}: {s.error}")
    tot = summary(scores)
    lines += [
        "",
        f"right status and location: {_pct(tot['status_location'])} of {tot['scenario_seeds']} scenario-seeds "
        f"(target ≥ {TARGETS['status_location']:.0%}; status alone {tot['status_ok']:.0%})",
        f"right remedy in the first two advice items: {_pct(tot['remedy_top2'])} of {tot['remedy_scored']} "
        f"(target ≥ {TARGETS['remedy_top2']:.0%})",
        f"false alarms on healthy controls: {tot['false_alarms']} of {tot['control_seeds']} (target 0)",
        f"targets {'met' if tot['targets_met'] else 'NOT met'}; {tot['seconds']:.0f} s of training",
    ]
    return "\n".join(lines)


def _verbose(s: Score, o: corpus.Outcome | None) -> str:
    if o is None:
        return f"  {s.scenario} seed {s.seed}: {s.error}"
    every = max(1, len(o.loss) // 10)
    facts = ", ".join(f"{k}={v:.3g}" for k, v in o.facts.items())
    first_line = str(o.verdict).splitlines()[0]
    return (
        f"  {s.scenario} seed {s.seed}: verdict {first_line!r}; advice {list(s.advice)[:3]}\n"
        f"    loss  {' '.join(f'{x:.3g}' for x in o.loss[::every])}\n"
        f"    ‖g‖   {' '.join(f'{x:.2g}' for x in o.grad_norm[::every])}\n"
        f"    facts {facts}" + (f"\n    lints {[w[:80] for w in o.warnings]}" if o.warnings else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps; 1 seed per scenario, 2 per control")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--seeds", type=int, default=None, help="seeds per scenario (overrides the defaults)")
    p.add_argument("--verbose", action="store_true", help="print each run's loss, ‖g‖ and facts (stderr)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--list", action="store_true", help="list the scenarios and their ground truth")
    p.add_argument("--render", metavar="JSON", help="print the report of a saved --json document (no run)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.render:
        doc = json.loads(Path(args.render).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(Score)}
        saved = [Score(**{k: v for k, v in r.items() if k in fields}) for r in doc["results"]]
        print(render(saved, doc["mode"] == "quick"))
        return 0
    if args.list:
        for sc in corpus.SCENARIOS:
            t = sc.truth
            lint = f" or a lint matching {t.lint!r}" if t.lint else ""
            origin = f" ({t.origin})" if t.origin else ""
            print(f"{sc.name}: {sc.story}{' [control]' if sc.control else ''}")
            print(f"  truth: {'|'.join(t.status)}{lint} at {t.location}{origin}; remedies {t.remedies}; {t.why}")
        return 0
    names = [n for n in args.only.split(",") if n]
    known = [sc.name for sc in corpus.SCENARIOS]
    for n in names:
        if n not in known:
            p.error(f"unknown scenario {n!r} in --only; scenarios: {', '.join(known)}")
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds must be >= 1; got {args.seeds}")
    chosen = [sc for sc in corpus.SCENARIOS if not names or sc.name in names]
    scores: list[Score] = []
    outcomes: list[dict[str, Any]] = []
    for sc in chosen:
        n_seeds = args.seeds or ((2 if sc.control else 1) if args.quick else sc.seeds)
        steps = sc.quick_steps if args.quick else sc.steps
        for seed in range(n_seeds):
            s, o = run_one(sc, seed, steps)
            scores.append(s)
            if args.verbose:
                print(_verbose(s, o), file=sys.stderr, flush=True)
            if o is not None:
                outcomes.append(
                    {
                        "scenario": sc.name,
                        "seed": seed,
                        "verdict": o.verdict.to_json() if hasattr(o.verdict, "to_json") else str(o.verdict),
                        "facts": o.facts,
                    }
                )
    if args.json:
        rows, cols, m = confusion(scores)
        doc = {
            "mode": "quick" if args.quick else "full",
            "command": " ".join(["python", "benchmarks/diagnosis.py", *(argv if argv is not None else sys.argv[1:])]),
            "torch": str(torch.__version__),
            "targets": TARGETS,
            "summary": summary(scores),
            "confusion": {"rows": rows, "columns": cols, "matrix": m},
            "scenarios": [
                {"name": sc.name, "story": sc.story, "control": sc.control, "truth": asdict(sc.truth)} for sc in chosen
            ],
            "results": [asdict(s) | {"correct": s.correct} for s in scores],
            "runs": outcomes,
        }
        print(dump_json(doc))
    else:
        print(render(scores, args.quick))
    return 1 if args.check and not summary(scores)["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
