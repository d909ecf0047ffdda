"""Paired-block timing shared by the overhead benchmarks: blocks, the median ratio and its 95 % interval.

A *paired block* times ``k`` training steps of a plain model and ``k`` steps of an
identical copy with the tool attached, interleaved step by step (plain-tool, then
tool-plain, ...), so the load of a shared machine (other processes starting and stopping,
a busy sibling hyper-thread) hits both sides of a block alike. A block's ratio is its
tool time over its plain time, summed over the block: a cost paid once every ``k`` steps
(the monitor's flush) is in it.
The statistic is the median of the per-block ratios ``tool / plain`` with its
distribution-free 95 % interval (order statistics of the median: no assumption on how
the noise is distributed, no resampling randomness).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def paired_blocks(
    plain: Callable[[int], None],
    tool: Callable[[int], None],
    *,
    k: int,
    min_blocks: int,
    max_blocks: int,
    target: float | None = None,
    warmup_blocks: int = 1,
) -> list[tuple[float, float, float, float]]:
    """Per block ``(plain_wall, tool_wall, plain_cpu, tool_cpu)``: seconds summed over its ``k`` + ``k`` steps.

    Inside a block the two sides alternate step by step, and which side goes first
    alternates too (plain-tool, tool-plain, ...), so every tool step has a plain
    neighbour measured milliseconds away. ``cpu`` is this process's CPU time (all its
    threads): it leaves out the time other processes held the core. ``warmup_blocks``
    untimed blocks come first (allocator, first sync, compiled graphs, first hooks).
    After ``min_blocks``, stops as soon as the CPU ratio's 95 % interval is narrower than
    ``±target`` (None: never early), at ``max_blocks`` at the latest.
    """
    for _ in range(warmup_blocks):
        plain(k)
        tool(k)
    wall, cpu = time.perf_counter, time.process_time
    out: list[tuple[float, float, float, float]] = []
    for b in range(max_blocks):
        pw = tw = pc = tc = 0.0
        for i in range(k):
            tool_first = (b + i) % 2 == 1
            if tool_first:
                c0, w0 = cpu(), wall()
                tool(1)
                tw += wall() - w0
                tc += cpu() - c0
            c0, w0 = cpu(), wall()
            plain(1)
            pw += wall() - w0
            pc += cpu() - c0
            if not tool_first:
                c0, w0 = cpu(), wall()
                tool(1)
                tw += wall() - w0
                tc += cpu() - c0
        out.append((pw, tw, pc, tc))
        if target is not None and len(out) >= min_blocks:
            _, lo, hi = median_ci([t / p for _, _, p, t in out])
            if (hi - lo) / 2.0 < target:
                break
    return out


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """The median and its distribution-free ``level`` interval ``(median, low, high)``.

    The interval is ``[x_(l), x_(n+1-l)]`` of the sorted values, with ``l`` the largest rank
    such that ``P(Binomial(n, 1/2) < l) <= (1 - level) / 2`` (it covers the median with
    probability ≥ ``level`` whatever the distribution). With fewer than 6 values no such
    interval exists at 95 %: the min–max is returned instead.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one value")
    med = statistics.median(xs)
    alpha = (1.0 - level) / 2.0
    cdf, rank = 0.0, 0  # rank: how many order statistics we may cut from each side
    for j in range(n + 1):
        cdf += math.comb(n, j) / 2.0**n
        if cdf > alpha:
            break
        rank = j + 1
    if rank == 0:
        return med, xs[0], xs[-1]
    return med, xs[rank - 1], xs[n - rank]


def summarize(blocks: Sequence[Sequence[float]], k: int) -> dict[str, Any]:
    """The JSON-ready summary of one (model, tool) measurement (rows of :func:`paired_blocks`).

    ``ratio`` and its interval are on CPU time (the process's own work: what the tool
    costs, whatever else the machine runs); ``wall_ratio`` and its interval on wall-clock
    time (which also moves with how often other processes took the core).
    """
    med, lo, hi = median_ci([t / p for _, _, p, t in blocks])
    wmed, wlo, whi = median_ci([t / p for p, t, _, _ in blocks])
    return {
        "ratio": med,
        "ci_low": lo,
        "ci_high": hi,
        "ci_halfwidth": (hi - lo) / 2.0,
        "wall_ratio": wmed,
        "wall_ci_low": wlo,
        "wall_ci_high": whi,
        "blocks": len(blocks),
        "block_steps": k,
        "ms_per_step": 1e3 * statistics.median(b[1] for b in blocks) / k,
        "plain_ms_per_step": 1e3 * statistics.median(b[0] for b in blocks) / k,
    }


def format_row(label: str, r: dict[str, Any]) -> str:
    """One line of the human-readable table."""
    return (
        f"{label} {r['ratio']:7.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] ±{100 * r['ci_halfwidth']:4.1f} %  "
        f"{r['wall_ratio']:7.3f} [{r['wall_ci_low']:.3f}, {r['wall_ci_high']:.3f}] "
        f"{r['blocks']:4d}×{r['block_steps']:<3d} {r['plain_ms_per_step']:8.2f} {r['ms_per_step']:8.2f}"
    )
