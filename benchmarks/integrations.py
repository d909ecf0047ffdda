"""Overhead of the trainer callbacks and of monitoring a torch.compile'd model, as ratios.

Each repetition times every configuration once, plain and monitored, in a new shuffled
order, in this process (one torch thread); the ratio is monitored time / plain time of the
same repetition; we print the median and min–max over repetitions. Trainer set-up is
outside the timed region; compilation is warmed up before timing.

Usage:
    python benchmarks/integrations.py              # 5 repetitions
    python benchmarks/integrations.py --quick      # 2 repetitions, fewer steps
    python benchmarks/integrations.py --json --only compile
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import statistics
import tempfile
import time
import warnings

import torch
from torch import nn

import gradwatch as gw

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, 256), nn.Tanh()]
    for _ in range(6):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def _digits_like(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)


# ---------------------------------------------------------------- Lightning
def lightning_run(monitored: bool, steps: int) -> float:
    import lightning.pytorch as pl

    from gradwatch.integrations.lightning import GradwatchCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x, y = _digits_like(64 * steps)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    trainer = pl.Trainer(
        max_steps=steps,
        callbacks=[GradwatchCallback()] if monitored else [],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    module = Module()
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        trainer.fit(module, loader)
        return time.perf_counter() - start


# ---------------------------------------------------------------- Hugging Face
def hf_run(monitored: bool, steps: int) -> float:
    import transformers

    from gradwatch.integrations.hf import GradwatchCallback

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 256, (8 * steps, 64), generator=torch.Generator().manual_seed(0))
    ds = [{"input_ids": r, "labels": r} for r in ids]
    with tempfile.TemporaryDirectory() as tmp:
        args = transformers.TrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=8,
            logging_steps=10,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=ds)
        if monitored:
            GradwatchCallback().attach(trainer)
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            trainer.train()
            return time.perf_counter() - start


# ---------------------------------------------------------------- torch.compile
_COMPILED: dict[bool, tuple[nn.Module, torch.optim.Optimizer, gw.Monitor | None]] = {}


def compile_run(monitored: bool, steps: int) -> float:
    if monitored not in _COMPILED:
        model = torch.compile(_mlp())
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = gw.Monitor(model, opt) if monitored else None
        _COMPILED[monitored] = (model, opt, mon)
        _loop(model, opt, mon, 30)  # compile, and every hook variant the monitor arms
    model, opt, mon = _COMPILED[monitored]
    start = time.perf_counter()
    _loop(model, opt, mon, steps)
    if mon is not None:
        mon.history  # noqa: B018 — the flush belongs to the cost
    return time.perf_counter() - start


def _loop(model: nn.Module, opt: torch.optim.Optimizer, mon: gw.Monitor | None, steps: int) -> None:
    x, y = _digits_like(64)
    for _ in range(steps):
        nn.functional.cross_entropy(model(x), y).backward()
        if mon is not None:
            mon.step()
        opt.step()
        opt.zero_grad()


BENCHES = {"lightning": (lightning_run, 200, 60), "hf": (hf_run, 40, 15), "compile": (compile_run, 300, 100)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    names = args.only or list(BENCHES)
    ratios: dict[str, list[float]] = {n: [] for n in names}
    plain_ms: dict[str, list[float]] = {n: [] for n in names}
    rng = random.Random(0)
    for _ in range(reps):
        jobs = [(n, m) for n in names for m in (False, True)]
        rng.shuffle(jobs)
        times = {}
        for n, monitored in jobs:
            fn, full, quick = BENCHES[n]
            times[(n, monitored)] = fn(monitored, quick if args.quick else full)
        for n in names:
            ratios[n].append(times[(n, True)] / times[(n, False)])
            steps = BENCHES[n][2] if args.quick else BENCHES[n][1]
            plain_ms[n].append(1e3 * times[(n, False)] / steps)
    results = [
        {
            "bench": n,
            "ratio": statistics.median(r),
            "ratio_min": min(r),
            "ratio_max": max(r),
            "plain_ms_per_step": statistics.median(plain_ms[n]),
            "reps": reps,
        }
        for n, r in ratios.items()
    ]
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    else:
        for r in results:
            print(
                f"{r['bench']:>10}: {r['ratio']:.3f}× (min {r['ratio_min']:.3f}, max {r['ratio_max']:.3f}, {reps} reps; "
                f"plain {r['plain_ms_per_step']:.2f} ms/step)"
            )


if __name__ == "__main__":
    main()
