"""What ``gradwatch diagnose`` adds to a script's own time: plain runs vs diagnosed runs, interleaved.

Each example script of ``examples/diagnose/`` runs to its end, alternately plain
(``runpy``, as ``python script.py`` would, in this process) and under the diagnose session
(:func:`gradwatch.diagnose.run_script` with no step limit: the monitor on every model, the
global hooks, the loss capture), ``--rounds`` times each, one torch thread. The ratio of the
medians is the cost of diagnosing the same steps (the issue's budget: at most 1.05). Each
remedy tried with ``--try`` is one more such run.

Usage:
    python benchmarks/diagnose_overhead.py [--rounds 5] [--only rnn_lm]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import statistics
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "diagnose"
SCRIPTS = {
    "rnn_lm": ("rnn_lm.py", ["--lr", "0.5"]),  # 285 steps of a word-level RNN LM (Embedding, nn.RNN, Linear)
    "manual_sgd": ("manual_sgd.py", []),  # 2000 steps of a 17-layer MLP, no optimizer object
    "healthy": ("healthy.py", ["--workers", "0", "--epochs", "10"]),  # 290 steps of an MLP with Adam
}


def _plain(script: Path, args: list[str]) -> float:
    import numpy as np
    import torch

    argv = sys.argv[:]
    sys.argv = [str(script), *args]
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 — as run_script seeds
    start = time.perf_counter()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    return time.perf_counter() - start


def _diagnosed(script: Path, args: list[str]) -> tuple[float, int]:
    from gradwatch.diagnose import Session, run_script

    session = Session()
    run = run_script(script, args, session)
    assert run.ended == "finished", run.error
    return run.seconds, session.steps


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=sorted(SCRIPTS))
    a = ap.parse_args()
    print(f"{'script':12s} {'steps':>6s} {'plain s':>8s} {'diagnosed s':>12s} {'ratio':>6s}")
    for name, (file, args) in SCRIPTS.items():
        if a.only and name != a.only:
            continue
        plain, diag, steps = [], [], 0
        with contextlib.redirect_stdout(io.StringIO()):
            _plain(EXAMPLES / file, args)  # warm-up of both sides: imports, data caches
            _diagnosed(EXAMPLES / file, args)
            for _ in range(a.rounds):
                plain.append(_plain(EXAMPLES / file, args))
                seconds, steps = _diagnosed(EXAMPLES / file, args)
                diag.append(seconds)
        p, d = statistics.median(plain), statistics.median(diag)
        print(f"{name:12s} {steps:6d} {p:8.2f} {d:12.2f} {d / p:6.3f}")


if __name__ == "__main__":
    main()
