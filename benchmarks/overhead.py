"""Per-step overhead of gradwatch's monitor and of the tools people use today, as paired ratios.

One process per (model, tool), one torch thread (OMP/MKL/OpenBLAS pinned to 1 too). In it,
two copies of the model with identical weights, data and optimizer: a plain one and one
with the tool attached (a hook that stays registered costs time on every step it sees, so
the plain side never carries one). The process times many short **paired blocks**: ``k``
plain steps, then ``k`` steps with the tool (the order alternates from block to block),
after one untimed warm-up block. Each block gives a ratio tool / plain measured a fraction
of a second apart, so the load of a shared machine cancels out; we report the **median
ratio over blocks and its 95 % interval** (distribution-free, from order statistics).

The monitor's host transfer and JSONL write (every ``sync_every`` records) are part of
the monitored steps: a block is ``k`` = a multiple of ``sync_every`` steps long, so each
monitored block contains the same number of flushes (and of every-10th-step statistics).
The gradwatch configurations use the block length as ``sync_every``: 50 (the default) for
the MLP and the LSTM; 10 for the transformer (5× more flushes than the default: its ratio
is an upper bound) to keep the run short. See docs/benchmarks.md for the results.

Usage:
    python benchmarks/overhead.py                  # full: 3 models, every tool (~8 min)
    python benchmarks/overhead.py --quick --json   # fewer blocks, JSON on stdout
    python benchmarks/overhead.py --models mlp --tools gradwatch-default --blocks 40

Tools: plain (the reference, ratio 1); gradwatch-norms (per-layer gradient L2 norms and
the non-finite check every step: ``grad_max=False, activations_every=None,
weights_every=None``); gradwatch-default (``Monitor(model, opt)``: norms, max |g| and the
non-finite check every step, ‖θ‖, update ratios and activation statistics every 10th
step); gradwatch-all (every statistic every step: norms, max |g|, ‖θ‖, update ratios,
activation statistics and, for the LSTM, the time profile); gradwatch-trace (all +
non-finite tracing through every module, a debugging mode); and the anchors when
installed: wandb (``wandb.watch(log="gradients", log_freq=1)``, offline), tensorboard
(``SummaryWriter.add_histogram`` of every gradient every step), lightning (lightning's
``grad_norm`` every step). Anchors get fewer blocks (``--anchor-blocks``): they are far
from 1 and only need to be placed, not resolved to 2 %.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import THREAD_ENV, format_row, paired_blocks, summarize

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
# Steps per half-block: a multiple of 10 (the default period of the weight and activation
# statistics) and the monitor's sync_every in the benchmark; about 0.25-0.5 s per half-block.
BLOCK_STEPS = {"mlp": 50, "lstm": 50, "transformer": 10}
# gradwatch configurations: at least BLOCKS blocks, then until the 95 % interval is narrower
# than ±TARGET, at most MAX_BLOCKS. Anchors: ANCHOR_BLOCKS, far from 1, they need no 2 %.
BLOCKS, MAX_BLOCKS, TARGET = 12, 40, 0.015
ANCHOR_BLOCKS = 6
QUICK_BLOCKS, QUICK_ANCHOR_BLOCKS = 8, 4


def available_tools(requested: list[str]) -> list[str]:
    out = []
    for t in requested:
        mod = ANCHOR_MODULES.get(t)
        if mod is None or importlib.util.find_spec(mod) is not None:
            out.append(t)
    return out


# ----------------------------------------------------------------------------- worker
def build(model_name: str) -> tuple[Any, Any, Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if model_name == "mlp":
        layers: list[nn.Module] = []
        for _ in range(8):
            layers += [nn.Linear(256, 256), nn.Sigmoid()]
        model = nn.Sequential(*layers, nn.Linear(256, 10))
        x = torch.randn(128, 256, generator=g)
        y = torch.randint(0, 10, (128,), generator=g)
        return model, x, y, nn.functional.cross_entropy
    if model_name == "lstm":

        class LSTMNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(32, 128, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(self.lstm(x)[0][:, -1])

        x = torch.randn(32, 100, 32, generator=g)
        y = torch.randint(0, 10, (32,), generator=g)
        return LSTMNet(), x, y, nn.functional.cross_entropy
    if model_name == "transformer":

        class Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True)
                self.enc = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
                self.head = nn.Linear(128, 10)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(self.enc(x).mean(dim=1))

        x = torch.randn(16, 64, 128, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        return Encoder(), x, y, nn.functional.cross_entropy
    raise SystemExit(f"unknown model {model_name!r}; valid: {', '.join(MODELS)}")


def attach(tool: str, model_name: str, model: Any, opt: Any, sync_every: int, tmp: str) -> tuple[Any, Any]:
    """Attach ``tool`` to ``model``: ``(per_step(step, loss) or None, finish() or None)``."""
    if tool.startswith("gradwatch-"):
        import gradwatch as gw

        kwargs: dict[str, Any] = {"sync_every": sync_every, "log": Path(tmp) / "run.jsonl"}
        if tool == "gradwatch-norms":
            kwargs.update(grad_max=False, activations_every=None, weights_every=None)
        elif tool in ("gradwatch-all", "gradwatch-trace"):
            kwargs.update(activations_every=1, weights_every=1)
            if model_name == "lstm":
                kwargs.update(time_profile_every=1)
            if tool == "gradwatch-trace":
                kwargs.update(trace_nonfinite=True)
        elif tool != "gradwatch-default":
            raise SystemExit(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")
        mon = gw.Monitor(model, opt, **kwargs)
        return (lambda step, loss: mon.step(loss)), mon.close
    if tool == "wandb":
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=tmp)
        import wandb

        run = wandb.init(project="gradwatch-bench", dir=tmp, mode="offline")
        wandb.watch(model, log="gradients", log_freq=1)
        return (lambda step, loss: run.log({"loss": loss.detach()}, step=step)), run.finish
    if tool == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=tmp)
        named = list(model.named_parameters())

        def histograms(step: int, loss: Any) -> None:
            for name, p in named:
                writer.add_histogram(name, p.grad, step)

        return histograms, writer.close
    if tool == "lightning":
        from lightning.pytorch.utilities import grad_norm

        return (lambda step, loss: grad_norm(model, norm_type=2)), None
    raise SystemExit(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")


def trainer(model: Any, x: Any, y: Any, loss_fn: Any, opt: Any, per_step: Any) -> Any:
    """``run(k)``: ``k`` training steps (forward, backward, the tool, SGD step)."""
    count = [0]

    def run(k: int) -> None:
        for _ in range(k):
            loss = loss_fn(model(x), y)
            loss.backward()
            if per_step is not None:
                per_step(count[0], loss)
            opt.step()
            opt.zero_grad()
            count[0] += 1

    return run


def worker(
    model_name: str, tool: str, k: int, min_blocks: int, max_blocks: int, target: float | None
) -> dict[str, Any]:
    """Paired blocks of ``model_name`` plain vs with ``tool`` attached, in this process."""
    import torch

    torch.set_num_threads(1)
    base, x, y, loss_fn = build(model_name)
    plain_model, tool_model = base, copy.deepcopy(base)  # identical weights
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=1e-3, momentum=0.9)
    tool_opt = torch.optim.SGD(tool_model.parameters(), lr=1e-3, momentum=0.9)
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        per_step, finish = attach(tool, model_name, tool_model, tool_opt, k, tmp)
        plain = trainer(plain_model, x, y, loss_fn, plain_opt, None)
        monitored = trainer(tool_model, x, y, loss_fn, tool_opt, per_step)
        blocks = paired_blocks(plain, monitored, k=k, min_blocks=min_blocks, max_blocks=max_blocks, target=target)
        if finish is not None:
            finish()
    return {"blocks": blocks, "k": k}


# ----------------------------------------------------------------------------- driver
def measure(
    model_name: str, tool: str, k: int, min_blocks: int, max_blocks: int, target: float | None
) -> dict[str, Any]:
    env = dict(os.environ, **THREAD_ENV)
    cmd = [sys.executable, __file__, "--worker", model_name, tool, str(k), str(min_blocks), str(max_blocks)]
    cmd.append(str(target) if target is not None else "none")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{model_name}/{tool} failed:\n{out.stderr[-2000:]}")
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    return summarize(raw["blocks"], raw["k"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_BLOCKS} blocks ({QUICK_ANCHOR_BLOCKS} for anchors)")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    ap.add_argument(
        "--blocks", type=int, default=None, help=f"least paired blocks per gradwatch tool (default {BLOCKS})"
    )
    ap.add_argument("--max-blocks", type=int, default=None, help=f"most paired blocks (default {MAX_BLOCKS})")
    ap.add_argument(
        "--target",
        type=float,
        default=TARGET,
        help=f"stop a gradwatch tool early once its 95%% interval is narrower than ±this (default {TARGET})",
    )
    ap.add_argument("--anchor-blocks", type=int, default=None, help=f"blocks per anchor tool (default {ANCHOR_BLOCKS})")
    ap.add_argument("--block-steps", type=int, default=None, help="steps per half-block (default: per model)")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, t, k, lo, hi, target = args.worker
        doc = worker(m, t, int(k), int(lo), int(hi), None if target == "none" else float(target))
        print(json.dumps(doc))
        return
    blocks = args.blocks or (QUICK_BLOCKS if args.quick else BLOCKS)
    max_blocks = max(blocks, args.max_blocks or (QUICK_BLOCKS if args.quick else MAX_BLOCKS))
    anchor_blocks = args.anchor_blocks or (QUICK_ANCHOR_BLOCKS if args.quick else ANCHOR_BLOCKS)
    tools = available_tools([t for t in args.tools if t != "plain"])
    jobs = [(m, t) for m in args.models for t in tools]
    random.Random(0).shuffle(jobs)
    measured: dict[tuple[str, str], dict[str, Any]] = {}
    for m, t in jobs:
        k = args.block_steps or BLOCK_STEPS[m]
        if t in ANCHOR_MODULES:
            r = measure(m, t, k, anchor_blocks, anchor_blocks, None)
        else:
            r = measure(m, t, k, blocks, max_blocks, args.target)
        measured[(m, t)] = r
        print(format_row(f"{m:12s} {t:18s}", r), file=sys.stderr)
    results = []
    for m in args.models:
        rows = [{"model": m, "tool": t, **measured[(m, t)]} for t in TOOLS if (m, t) in measured]
        if "plain" in args.tools:
            # every measurement's plain side: the reference row, ratio 1 by definition
            plain_ms = sorted(r["plain_ms_per_step"] for r in rows)
            ms = plain_ms[len(plain_ms) // 2] if plain_ms else float("nan")
            ref = {"ratio": 1.0, "ci_low": 1.0, "ci_high": 1.0, "ci_halfwidth": 0.0}
            ref.update(wall_ratio=1.0, wall_ci_low=1.0, wall_ci_high=1.0)
            ref.update(blocks=sum(r["blocks"] for r in rows), block_steps=args.block_steps or BLOCK_STEPS[m])
            rows.insert(0, {"model": m, "tool": "plain", **ref, "ms_per_step": ms, "plain_ms_per_step": ms})
        results += rows
    doc = {
        "results": results,
        "method": "paired blocks interleaved step by step; median ratio (CPU time) and distribution-free 95% interval",
        "threads": 1,
        "command": " ".join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
        "torch": __import__("torch").__version__,
        "missing_anchors": [t for t in args.tools if t not in tools and t != "plain"],
    }
    if args.json:
        print(json.dumps(doc))
        return
    print(
        f"{'model':12s} {'tool':18s} {'ratio':>7s} {'95 % interval':>16s} {'±':>8s}  {'wall':>7s} {'wall interval':>16s} "
        f"{'blocks':>8s} {'plain ms':>8s} {'tool ms':>8s}"
    )
    for r in results:
        print(format_row(f"{r['model']:12s} {r['tool']:18s}", r))
    if doc["missing_anchors"]:
        print(f"not installed, not measured: {', '.join(doc['missing_anchors'])}")


if __name__ == "__main__":
    main()
