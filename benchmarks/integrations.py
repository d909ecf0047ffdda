"""Overhead of the trainer callbacks and of monitoring a torch.compile'd model, as paired ratios.

Same design as ``benchmarks/overhead.py`` (see its docstring and docs/benchmarks.md): in
one process with one torch thread, a plain and a monitored copy of the same training
(identical weights and data) advance **step by step in turn**, and each paired block sums
``k`` plain and ``k`` monitored steps; we report the median block ratio (CPU time) and its
distribution-free 95 % interval, with the wall-clock ratio beside it.

- Lightning and Hugging Face: two ``Trainer``s, each ``fit``/``train`` in its own thread,
  pass a baton (a callback at the end of every optimizer step, on both trainers) so that
  exactly one of them runs at a time; the coordinator times each turn. Trainer set-up and
  the end of ``fit`` lie outside the timed turns. ``k`` is the monitor's ``sync_every``
  (Lightning: ``log_every_n_steps`` = 50; HF: ``logging_steps`` = 10), so each monitored
  block carries exactly one flush (and, for HF, one ``on_log``).
- ``torch.compile``: two compiled copies of the model, one with ``Monitor(model, opt)``;
  compilation and every hook variant the monitor arms are warmed up before timing.

Usage:
    python benchmarks/integrations.py                  # all three (about a minute on a quiet machine)
    python benchmarks/integrations.py --quick          # fewer blocks
    python benchmarks/integrations.py --json --only compile
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before torch is imported
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from torch import nn  # noqa: E402

import gradwatch as gw  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import format_row, paired_blocks, summarize  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, 256), nn.Tanh()]
    for _ in range(6):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def _digits_like(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)


# ---------------------------------------------------------------- two trainers taking turns
class _Side:
    """One trainer's end of the baton: it runs one optimizer step per turn."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.stop = False
        self.error: BaseException | None = None

    def wait_turn(self) -> bool:
        """Hand the baton back, wait for the next turn; False: the coordinator has stopped."""
        self.done.release()
        self.go.acquire()
        return not self.stop


def _turns(
    launch: Callable[[_Side], None], *, k: int, min_blocks: int, max_blocks: int, target: float | None
) -> list[tuple[float, float, float, float]]:
    """Paired blocks of two trainers ``launch(side)`` (plain first, then monitored), one step per turn."""
    sides = [_Side(), _Side()]
    threads = []
    for side in sides:

        def body(side: _Side = side) -> None:
            try:
                launch(side)
            except BaseException as e:
                side.error = e
            finally:
                side.done.release()

        threads.append(threading.Thread(target=body, daemon=True))
    for side, th in zip(sides, threads, strict=True):
        th.start()
        side.done.acquire()  # set up, waiting for its first step
        if side.error is not None:
            raise side.error

    def stepper(side: _Side) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                side.go.release()
                side.done.acquire()
                if side.error is not None:
                    raise side.error

        return run

    try:
        return paired_blocks(
            stepper(sides[0]), stepper(sides[1]), k=k, min_blocks=min_blocks, max_blocks=max_blocks, target=target
        )
    finally:
        for side in sides:
            side.stop = True
            side.go.release()
        for th in threads:
            th.join()


# ---------------------------------------------------------------- Lightning
def lightning_bench(k: int, min_blocks: int, max_blocks: int, target: float | None) -> list[Any]:
    import lightning.pytorch as pl

    from gradwatch.integrations.lightning import GradwatchCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Baton(pl.Callback):
        def __init__(self, side: _Side) -> None:
            self.side = side

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.side.wait_turn()  # ready: set-up is outside the timed turns

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if not self.side.wait_turn():
                trainer.should_stop = True

    steps = (max_blocks + 2) * k
    x, y = _digits_like(64 * 200)

    def launch(side: _Side, monitored: bool) -> None:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
        trainer = pl.Trainer(
            max_steps=steps,
            callbacks=[*([GradwatchCallback()] if monitored else []), Baton(side)],
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(Module(), loader)

    order = iter([False, True])
    return _turns(
        lambda side: launch(side, next(order)), k=k, min_blocks=min_blocks, max_blocks=max_blocks, target=target
    )


# ---------------------------------------------------------------- Hugging Face
def hf_bench(k: int, min_blocks: int, max_blocks: int, target: float | None) -> list[Any]:
    import transformers

    from gradwatch.integrations.hf import GradwatchCallback

    class Baton(transformers.TrainerCallback):
        def __init__(self, side: _Side) -> None:
            self.side = side

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.side.wait_turn()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if not self.side.wait_turn():
                control.should_training_stop = True
            return control

    steps = (max_blocks + 2) * k
    ids = torch.randint(0, 256, (8 * 64, 64), generator=torch.Generator().manual_seed(0))
    ds = [{"input_ids": r, "labels": r} for r in ids]

    def launch(side: _Side, monitored: bool) -> None:
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2)
        model = transformers.GPT2LMHeadModel(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            args = transformers.TrainingArguments(
                output_dir=tmp,
                max_steps=steps,
                per_device_train_batch_size=8,
                logging_steps=k,
                report_to=[],
                save_strategy="no",
                use_cpu=True,
                disable_tqdm=True,
                dataloader_num_workers=0,
            )
            trainer = transformers.Trainer(model=model, args=args, train_dataset=ds, callbacks=[Baton(side)])
            if monitored:
                GradwatchCallback().attach(trainer)
            trainer.train()

    order = iter([False, True])
    return _turns(
        lambda side: launch(side, next(order)), k=k, min_blocks=min_blocks, max_blocks=max_blocks, target=target
    )


# ---------------------------------------------------------------- torch.compile
def compile_bench(k: int, min_blocks: int, max_blocks: int, target: float | None) -> list[Any]:
    base = _mlp()
    x, y = _digits_like(64)

    def side(monitored: bool) -> Callable[[int], None]:
        model = torch.compile(copy.deepcopy(base))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = gw.Monitor(model, opt) if monitored else None

        def run(n: int) -> None:
            for _ in range(n):
                nn.functional.cross_entropy(model(x), y).backward()
                if mon is not None:
                    mon.step()
                opt.step()
                opt.zero_grad()

        run(30)  # compile, and every hook variant the monitor arms (activations every 10th step)
        return run

    plain, monitored = side(False), side(True)
    return paired_blocks(plain, monitored, k=k, min_blocks=min_blocks, max_blocks=max_blocks, target=target)


# name -> (function, steps per half-block = the monitor's sync_every there)
BENCHES: dict[str, tuple[Callable[..., list[Any]], int]] = {
    "lightning": (lightning_bench, 50),
    "hf": (hf_bench, 10),
    "compile": (compile_bench, 50),
}
BLOCKS, MAX_BLOCKS, TARGET = 12, 40, 0.015
QUICK_BLOCKS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_BLOCKS} blocks each, no early stop")
    parser.add_argument("--blocks", type=int, default=None, help=f"least paired blocks (default {BLOCKS})")
    parser.add_argument("--max-blocks", type=int, default=None, help=f"most paired blocks (default {MAX_BLOCKS})")
    parser.add_argument(
        "--target", type=float, default=TARGET, help="stop once the 95%% interval is narrower than ±this"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    blocks = args.blocks or (QUICK_BLOCKS if args.quick else BLOCKS)
    max_blocks = max(blocks, args.max_blocks or (QUICK_BLOCKS if args.quick else MAX_BLOCKS))
    results = []
    for name in args.only or list(BENCHES):
        fn, k = BENCHES[name]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the trainers' and the verdict's prints
            blocks_ = fn(k, blocks, max_blocks, args.target)
        r = {"bench": name, **summarize(blocks_, k)}
        r["seconds"] = time.perf_counter() - start
        results.append(r)
        print(format_row(f"{name:>10}", r), file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {"results": results, "command": " ".join(["python", "benchmarks/integrations.py", *sys.argv[1:]])}
            )
        )
        return
    print(
        f"{'bench':>10} {'ratio':>7s} {'95 % interval':>16s} {'±':>8s}  {'wall':>7s} {'wall interval':>16s} {'blocks':>8s} {'plain ms':>8s} {'mon. ms':>8s}"
    )
    for r in results:
        print(format_row(f"{r['bench']:>10}", r))


if __name__ == "__main__":
    main()
