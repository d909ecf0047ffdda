"""The monitor under DDP and FSDP2, 2 processes on CPU (gloo), against a single-process reference.

One spawn runs every scenario (process start-up dominates the cost); the tests read its results.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradwatch as gw

WORLD = 2
STEPS = 3
pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)


def _net(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    # 3 output rows over 2 ranks: the last layer's shards are uneven (2 + 1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _data(step: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return torch.randn(4 * WORLD, 6, generator=g).to(dtype), torch.randint(0, 3, (4 * WORLD,), generator=g)


def _train(model: nn.Module, dtype: torch.dtype, rank: int | None, log: Path | None) -> list[dict]:
    """SGD for STEPS steps; rank None is the single-process reference on the whole batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt, weights_every=1, log=log) as mon:
        for step in range(STEPS):
            x, y = _data(step, dtype)
            if rank is not None:  # each rank its half of the batch; DDP/FSDP average the gradients
                x, y = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
            nn.functional.cross_entropy(model(x), y).backward()
            mon.step()
            opt.step()
            opt.zero_grad()
        return mon.records()


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from torch.distributed.fsdp import fully_shard
        from torch.nn.parallel import DistributedDataParallel

        results = {}
        ddp = DistributedDataParallel(_net(torch.float64))
        results["ddp"] = _train(ddp, torch.float64, rank, Path(out) / f"ddp{rank}.jsonl")
        for dtype in (torch.float64, torch.float32):
            model = _net(dtype)
            for layer in model:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer)
            fully_shard(model)
            results[f"fsdp_{str(dtype)[6:]}"] = _train(model, dtype, rank, None)
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(results))
        dist.barrier()  # no rank tears gloo down while another is still in a collective
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _reference(dtype: torch.dtype) -> list[dict]:
    return _train(_net(dtype), dtype, None, None)


def _global(records: list[dict]) -> list[dict]:
    """Records without activation statistics, which describe each rank's own half-batch."""
    return [{k: v for k, v in r.items() if k != "activations"} for r in records]


def _compare(got: list[dict], ref: list[dict], rel: float, prefix: str = "") -> None:
    assert len(got) == len(ref) == STEPS
    for g, r in zip(got, ref, strict=True):
        assert g["global_grad_norm"] == pytest.approx(r["global_grad_norm"], rel=rel)
        for name, stats in r["layers"].items():
            mine = g["layers"][prefix + name]
            for q in ("grad_norm", "grad_max", "param_norm", "update_ratio"):
                assert mine[q] == pytest.approx(stats[q], rel=rel), (name, q)
            assert mine["numel"] == stats["numel"]  # global sizes, not shard sizes


def test_ddp_norms_are_of_the_synchronized_gradient_and_identical_on_every_rank(runs) -> None:
    out, results = runs
    assert _global(results[0]["ddp"]) == _global(results[1]["ddp"])
    _compare(results[0]["ddp"], _reference(torch.float64), rel=1e-9, prefix="module.")
    # only rank 0 writes sinks unless asked otherwise
    assert len((out / "ddp0.jsonl").read_text().splitlines()) == STEPS
    rank1 = out / "ddp1.jsonl"
    assert not rank1.exists() or rank1.read_text() == ""


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_fsdp2_norms_from_shards_equal_the_unsharded_model(runs, dtype: torch.dtype, rel: float) -> None:
    _, results = runs
    key = f"fsdp_{str(dtype)[6:]}"
    assert _global(results[0][key]) == _global(results[1][key])  # reduced over ranks: identical everywhere
    _compare(results[0][key], _reference(dtype), rel=rel)
    assert math.isfinite(results[0][key][-1]["global_grad_norm"])
