"""``gradwatch diagnose``: run a user's training script unmodified, name the problem, try the fixes.

- :func:`diagnose` — the whole job: run the script for N steps under the monitor, take the
  verdict, and with ``try_remedies`` re-run the same steps with each remedy that fits and
  recommend one with its measured improvement (:mod:`gradwatch.diagnose.core`).
- :class:`Session` — the global torch hooks that find models and steps in any loop
  (:mod:`gradwatch.diagnose.session`); :func:`run_script` — runpy with seeds and clean-up
  (:mod:`gradwatch.diagnose.script`); the remedies applied from outside
  (:mod:`gradwatch.diagnose.tweaks`).

How steps are found, what each remedy changes and the limits: docs/diagnose.md.
"""

from gradwatch.diagnose.core import CodeChange, Diagnosis, Trial, candidates, clip_threshold, diagnose, recommend, score
from gradwatch.diagnose.script import ScriptRun, run_script
from gradwatch.diagnose.session import Session, StopScript, Watched

__all__ = [
    "CodeChange",
    "Diagnosis",
    "ScriptRun",
    "Session",
    "StopScript",
    "Trial",
    "Watched",
    "candidates",
    "clip_threshold",
    "diagnose",
    "recommend",
    "run_script",
    "score",
]
