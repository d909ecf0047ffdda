"""The run store: a directory with one sub-directory per run.

Each run directory holds ``spec.json`` (written first), ``metrics.jsonl`` (append-only, one
line per evaluation), ``monitor.jsonl`` (the monitor's records) and ``result.json``,
written atomically (temporary file, fsync, rename) as the last act of a run. A run with a
``result.json`` is done; ``--resume`` skips it. A crash or ``kill -9`` therefore loses at
most the runs in flight, whose partial directories are cleared when they run again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gradwatch._output import atomic_write_text, dump_json, prepare_folder
from gradwatch.experiments.runner import Result
from gradwatch.experiments.spec import Spec

__all__ = ["RunStore"]


class RunStore:
    """A directory of runs (created if missing; its parent must exist).

    Raises:
        OutputError: the directory cannot be created or written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = prepare_folder(root, "run store")

    def run_dir(self, spec: Spec) -> Path:
        """Where the run of ``spec`` lives."""
        return self.root / spec.run_id

    def is_done(self, spec: Spec) -> bool:
        """Whether ``spec`` has a complete result."""
        return (self.run_dir(spec) / "result.json").is_file()

    def start(self, spec: Spec) -> Path:
        """Prepare a clean directory for ``spec`` (clearing a crashed attempt) and write spec.json."""
        d = self.run_dir(spec)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        (d / "spec.json").write_text(json.dumps(spec.to_json(), indent=1))
        return d

    def finish(self, result: Result) -> Path:
        """Write ``result.json`` atomically; returns its path."""
        d = self.run_dir(result.spec)
        return atomic_write_text(d / "result.json", dump_json(result.to_json()), fsync=True)

    def results(self) -> list[Result]:
        """Every finished result in the store, sorted by run id."""
        out = []
        for path in sorted(self.root.glob("*/result.json")):
            out.append(Result.from_json(json.loads(path.read_text())))
        return out
