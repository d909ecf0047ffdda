"""Per-step overhead of gradwatch's monitor and of the tools people use today, as ratios.

Every (model, tool) measurement runs in a fresh Python process with one torch thread
(and OMP/MKL threads pinned to 1), warms up, then times a fixed number of training
steps *including* the tool's final flush. Each repetition runs every configuration,
plain included, in a new shuffled order; the ratio of a tool is its time divided by the
plain loop's time in the same repetition; we report the median and min–max over
repetitions. See docs/benchmarks.md for the results and the method.

Usage:
    python benchmarks/overhead.py                 # full: 5 repetitions, 60 timed steps
    python benchmarks/overhead.py --quick --json  # 3 repetitions, 15 timed steps, JSON on stdout
    python benchmarks/overhead.py --models mlp --tools plain gradwatch-norms

Tools: plain; gradwatch-norms (per-layer gradient L2 norms and the non-finite check,
every step: ``grad_max=False, activations_every=None, weights_every=None``);
gradwatch-default (``Monitor(model, opt)``: norms, max |g| and the non-finite check every
step, ‖θ‖ and update ratios and activation statistics every 10th step); gradwatch-all
(every statistic every step: norms, max |g|, ‖θ‖, update ratios, activation statistics
and, for the LSTM, the time profile); gradwatch-trace (all + non-finite tracing through
every module, a debugging mode); and the anchors when installed: wandb (wandb.watch(log="gradients", log_freq=1), offline),
tensorboard (SummaryWriter.add_histogram of every gradient every step), lightning
(lightning's grad_norm every step).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("mlp", "lstm", "transformer")
TOOLS = (
    "plain",
    "gradwatch-norms",
    "gradwatch-default",
    "gradwatch-all",
    "gradwatch-trace",
    "wandb",
    "tensorboard",
    "lightning",
)
ANCHOR_MODULES = {"wandb": "wandb", "tensorboard": "tensorboard", "lightning": "lightning"}


def available_tools(requested: list[str]) -> list[str]:
    out = []
    for t in requested:
        mod = ANCHOR_MODULES.get(t)
        if mod is None or importlib.util.find_spec(mod) is not None:
            out.append(t)
    return out


# ----------------------------------------------------------------------------- worker
def build(model_name: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if model_name == "mlp":
        layers = []
        for _ in range(8):
            layers += [nn.Linear(256, 256), nn.Sigmoid()]
        model = nn.Sequential(*layers, nn.Linear(256, 10))
        x = torch.randn(128, 256, generator=g)
        y = torch.randint(0, 10, (128,), generator=g)
        return model, x, y, nn.functional.cross_entropy
    if model_name == "lstm":

        class LSTMNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(32, 128, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])

        x = torch.randn(32, 100, 32, generator=g)
        y = torch.randint(0, 10, (32,), generator=g)
        return LSTMNet(), x, y, nn.functional.cross_entropy
    if model_name == "transformer":

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True)
                self.enc = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                return self.head(self.enc(x).mean(dim=1))

        x = torch.randn(16, 64, 128, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        return Encoder(), x, y, nn.functional.cross_entropy
    raise SystemExit(f"unknown model {model_name!r}; valid: {', '.join(MODELS)}")


def worker(model_name: str, tool: str, warmup: int, steps: int) -> float:
    """Seconds per training step of ``model_name`` with ``tool`` attached (flush included)."""
    import torch

    torch.set_num_threads(1)
    model, x, y, loss_fn = build(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    per_step = None
    finish = None
    if tool == "plain":
        pass
    elif tool.startswith("gradwatch-"):
        import gradwatch as gw

        kwargs = {"sync_every": 50, "log": Path(tmp) / "run.jsonl"}
        if tool == "gradwatch-norms":
            kwargs.update(grad_max=False, activations_every=None, weights_every=None)
        elif tool in ("gradwatch-all", "gradwatch-trace"):
            kwargs.update(activations_every=1, weights_every=1)
            if model_name == "lstm":
                kwargs.update(time_profile_every=1)
            if tool == "gradwatch-trace":
                kwargs.update(trace_nonfinite=True)
        mon = gw.Monitor(model, opt, **kwargs)

        def per_step(step, loss):
            mon.step(loss)

        finish = mon.close
    elif tool == "wandb":
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=tmp)
        import wandb

        run = wandb.init(project="gradwatch-bench", dir=tmp, mode="offline")
        wandb.watch(model, log="gradients", log_freq=1)

        def per_step(step, loss):
            run.log({"loss": loss.detach()}, step=step)

        finish = run.finish
    elif tool == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=tmp)
        named = list(model.named_parameters())

        def per_step(step, loss):
            for name, p in named:
                writer.add_histogram(name, p.grad, step)

        finish = writer.flush
    elif tool == "lightning":
        from lightning.pytorch.utilities import grad_norm

        def per_step(step, loss):
            grad_norm(model, norm_type=2)

    else:
        raise SystemExit(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")

    def train_step(step: int) -> None:
        loss = loss_fn(model(x), y)
        loss.backward()
        if per_step is not None:
            per_step(step, loss)
        opt.step()
        opt.zero_grad()

    for s in range(warmup):
        train_step(s)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        train_step(s)
    if finish is not None:
        finish()
    return (time.perf_counter() - t0) / steps


# ----------------------------------------------------------------------------- driver
def measure(model_name: str, tool: str, warmup: int, steps: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", model_name, tool, str(warmup), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{model_name}/{tool} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repetitions of 15 timed steps")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--worker", nargs=4, metavar=("MODEL", "TOOL", "WARMUP", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, t, w, s = args.worker
        print(worker(m, t, int(w), int(s)))
        return
    reps = args.reps or (3 if args.quick else 5)
    steps = args.steps or (15 if args.quick else 60)
    warmup = 5 if args.quick else 10
    tools = available_tools(["plain", *[t for t in args.tools if t != "plain"]])
    configs = [(m, t) for m in args.models for t in tools]
    times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    rng = random.Random(0)
    for rep in range(reps):
        order = configs[:]
        rng.shuffle(order)
        for c in order:
            times[c].append(measure(*c, warmup, steps))
            print(f"rep {rep + 1}/{reps} {c[0]:12s} {c[1]:16s} {times[c][-1] * 1e3:8.2f} ms/step", file=sys.stderr)
    results = []
    for m, t in configs:
        ratios = [a / b for a, b in zip(times[(m, t)], times[(m, "plain")], strict=True)]
        results.append(
            {
                "model": m,
                "tool": t,
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "ms_per_step": statistics.median(times[(m, t)]) * 1e3,
                "reps": reps,
                "steps": steps,
            }
        )
    doc = {
        "results": results,
        "threads": 1,
        "command": " ".join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
        "torch": __import__("torch").__version__,
        "missing_anchors": [t for t in args.tools if t not in tools],
    }
    if args.json:
        print(json.dumps(doc))
        return
    print(f"{'model':12s} {'tool':16s} {'ratio':>7s} {'min–max':>13s} {'ms/step':>9s}")
    for r in results:
        print(
            f"{r['model']:12s} {r['tool']:16s} {r['ratio']:7.2f} "
            f"{r['ratio_min']:6.2f}–{r['ratio_max']:<6.2f} {r['ms_per_step']:9.2f}"
        )
    if doc["missing_anchors"]:
        print(f"not installed, not measured: {', '.join(doc['missing_anchors'])}")


if __name__ == "__main__":
    main()
