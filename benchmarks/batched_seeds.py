"""Throughput of K seeds trained as one vmapped model vs a loop of K separate runs.

Each configuration runs in a fresh process (after a short warm-up run in the same process,
so that one-time costs are excluded), repetitions interleave the two, and the ratio
loop time / batched time is reported per repetition (median, min–max).

    python benchmarks/batched_seeds.py [--seeds 16] [--reps 3] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SPEC = {
    "task": "temporal_order",
    "length": 50,
    "model": "rnn",
    "hidden": 32,
    "steps": 100,
    "eval_every": 100,
    "eval_batch": 128,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 0.01,
    "remedies": {"clip_grad_norm": {"max_norm": 1.0}},
}


def worker(mode: str, seeds: int, threads: int) -> float:
    import torch

    from gradwatch.experiments import Spec, run, run_seeds

    torch.set_num_threads(threads)
    spec = Spec.from_json(SPEC)
    warm = Spec.from_json({**SPEC, "steps": 5, "eval_every": 5})
    if mode == "batched":
        run_seeds(warm, list(range(seeds)))
        t0 = time.perf_counter()
        run_seeds(spec, list(range(seeds)))
    else:
        run(warm)
        t0 = time.perf_counter()
        for s in range(seeds):
            run(Spec.from_json({**SPEC, "seed": s}))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker[0], int(args.worker[1]), int(args.worker[2])))
        return
    ratios, loops, batched = [], [], []
    for rep in range(args.reps):
        times = {}
        for mode in ("loop", "batched") if rep % 2 == 0 else ("batched", "loop"):
            cmd = [sys.executable, __file__, "--worker", mode, str(args.seeds), str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times[mode] = float(out.stdout.strip().splitlines()[-1])
        loops.append(times["loop"])
        batched.append(times["batched"])
        ratios.append(times["loop"] / times["batched"])
        print(f"rep {rep + 1}: loop {times['loop']:.2f} s, batched {times['batched']:.2f} s", file=sys.stderr)
    doc = {
        "seeds": args.seeds,
        "threads": args.threads,
        "speedup": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "loop_s": statistics.median(loops),
        "batched_s": statistics.median(batched),
        "spec": SPEC,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        print(
            f"{args.seeds} seeds, {args.threads} threads: batched is {doc['speedup']:.2f}× the throughput of a loop "
            f"({doc['speedup_min']:.2f}–{doc['speedup_max']:.2f}); loop {doc['loop_s']:.2f} s, batched {doc['batched_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
