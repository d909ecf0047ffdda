"""Norms of sharded and replicated gradients: what the monitor needs from torch.distributed.

Under DDP every rank holds the same, already all-reduced gradient, so per-rank norms are
already global and nothing is communicated. Under FSDP2 (``fully_shard``) parameters and
gradients are ``DTensor`` shards: each rank computes ‖local shard‖² and max |local shard|
and one ``all_reduce`` (SUM for squares, MAX for maxima) per recorded step makes them
global. A parameter replicated over r ranks of the mesh (an HSDP replica dimension, or a
plain tensor on every rank) is counted once: its squares are divided by r before the sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch

from gradwatch.errors import ConfigError

__all__ = ["ShardedNorms", "is_dtensor", "local", "rank", "world_size"]


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # builds without distributed support
        return None
    return DTensor


_DTENSOR = _dtensor_type()


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor``."""
    return _DTENSOR is not None and isinstance(t, _DTENSOR)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t`` (the tensor itself when it is not a DTensor)."""
    return cast(torch.Tensor, cast(Any, t).to_local()) if is_dtensor(t) else t


def initialized() -> bool:
    """Whether a default process group exists."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without torch.distributed)."""
    return torch.distributed.get_rank() if initialized() else 0


def world_size() -> int:
    """Number of processes in the default group (1 without torch.distributed)."""
    return torch.distributed.get_world_size() if initialized() else 1


class ShardedNorms:
    """Turns per-rank, per-parameter norms of DTensor shards into global ones.

    Args:
        params: the monitored parameters, some of which are DTensors.

    Raises:
        ConfigError: a DTensor's mesh does not span the default process group (the
            all-reduce over the default group would then mix unrelated ranks).
    """

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        world = world_size()
        divisors = []
        for p in params:
            if is_dtensor(p):
                dt = cast(Any, p)  # a DTensor (torch annotates its attributes on that class only)
                mesh = dt.device_mesh
                if mesh.size() != world:
                    raise ConfigError(
                        f"A sharded parameter lives on a device mesh of {mesh.size()} ranks, but the default "
                        f"process group has {world}: the monitor reduces over the default group and needs "
                        "meshes that span it."
                    )
                sharded = math.prod(mesh.size(dim) for dim, pl in enumerate(dt.placements) if pl.is_shard())
                divisors.append(world / sharded)
            else:
                divisors.append(float(world))  # the same tensor on every rank
        self.divisors = torch.tensor(divisors, dtype=torch.float64)

    def l2(self, local_l2: torch.Tensor) -> torch.Tensor:
        """Global per-parameter L2 norms from this rank's (shape (P,); one all-reduce)."""
        sq = local_l2.double() ** 2 / self.divisors.to(local_l2.device)
        torch.distributed.all_reduce(sq, op=torch.distributed.ReduceOp.SUM)
        return sq.sqrt().to(local_l2.dtype)

    def amax(self, local_max: torch.Tensor) -> torch.Tensor:
        """Global per-parameter max |g| from this rank's (NaN anywhere stays NaN; two all-reduces)."""
        nan = torch.isnan(local_max).double()
        torch.distributed.all_reduce(nan, op=torch.distributed.ReduceOp.SUM)
        top = torch.nan_to_num(local_max, nan=0.0)
        torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX)
        return torch.where(nan > 0, torch.full_like(top, math.nan), top)
