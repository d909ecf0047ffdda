"""Per-step cost of the spike-control remedies, as paired ratios against a plain training step.

For each (model, optimizer, remedy) a fresh process trains two identical copies of the
model, step by step in turn (``benchmarks/_paired.py``): a plain step (forward, backward,
optimizer step) and the same step with the remedy. The ratio is remedy time / plain time
(CPU time of the process; wall-clock beside it), median over blocks with its 95 % interval.
No outlier batches: this is the cost a normal step pays.

Remedies: ``skip`` — ``SkipStepOnSpike(on="both").attach(opt)`` (mode "restore": the
parameters and the optimizer state are copied before each step and put back where
skipped); ``skip-zero`` — ``mode="zero"`` (the gradient is zeroed where skipped, no
copies); ``zclip`` — ``ZClip()``; ``clip`` — ``torch.nn.utils.clip_grad_norm_(…, 1.0)``,
the reference.

    python benchmarks/spike_control.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from typing import Any

MODELS = ("mlp", "lstm")
OPTIMIZERS = ("sgd", "adam")
REMEDIES = ("skip", "skip-zero", "zclip", "clip")
K = 20  # steps per half-block


def _worker(model_name: str, opt_name: str, remedy: str, blocks: int) -> dict[str, Any]:
    import torch
    from torch import nn

    sys.path.insert(0, os.path.dirname(__file__))
    import overhead
    from _paired import paired_blocks, summarize
    from gradwatch.remedies.spike import SkipStepOnSpike, ZClip

    torch.set_num_threads(1)

    def build() -> tuple[nn.Module, Any, Any]:
        model, x, y, _ = overhead.build(model_name)  # the models every overhead benchmark prices
        opt = (
            torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            if opt_name == "sgd"
            else torch.optim.Adam(model.parameters(), lr=1e-3)
        )
        return model, opt, (x, y)

    def stepper(with_remedy: bool) -> Any:
        model, opt, (x, y) = build()
        guard = zclip = None
        if with_remedy and remedy in ("skip", "skip-zero"):
            guard = SkipStepOnSpike(on="both", mode="restore" if remedy == "skip" else "zero")
            guard.attach(opt)
        if with_remedy and remedy == "zclip":
            zclip = ZClip()

        def run(n: int) -> None:
            for _ in range(n):
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                if guard is not None:
                    guard.observe(loss)
                if zclip is not None:
                    zclip(model.parameters())
                if with_remedy and remedy == "clip":
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()

        return run

    rows = paired_blocks(stepper(False), stepper(True), k=K, min_blocks=blocks, max_blocks=blocks)
    return {"model": model_name, "optimizer": opt_name, "remedy": remedy, **summarize(rows, K)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 blocks per configuration (default 12)")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, o, r, b = args.worker
        print(json.dumps(_worker(m, o, r, int(b))))
        return
    blocks = 6 if args.quick else 12
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    configs = [(m, o, r) for m in MODELS for o in OPTIMIZERS for r in REMEDIES]
    random.Random(0).shuffle(configs)  # no configuration always runs first (or last) on a busy machine
    results = []
    for m, o, r in configs:
        cmd = [sys.executable, __file__, "--worker", m, o, r, str(blocks)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if not args.json:
            s = results[-1]
            print(
                f"{m:5s} {o:5s} {r:10s} {s['ratio']:6.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]  "
                f"wall {s['wall_ratio']:6.3f}  plain {s['plain_ms_per_step']:7.2f} ms  with {s['ms_per_step']:7.2f} ms",
                file=sys.stderr,
            )
    results.sort(
        key=lambda s: (MODELS.index(s["model"]), OPTIMIZERS.index(s["optimizer"]), REMEDIES.index(s["remedy"]))
    )
    if args.json:
        print(json.dumps({"k": K, "blocks": blocks, "results": results}, indent=1))


if __name__ == "__main__":
    main()
