"""The overhead benchmark's JSON contract and its interval (a tiny run: it checks the format, not the speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "overhead.py"


@pytest.fixture(scope="module")
def paired():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _paired

        yield _paired
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_overhead_json_contract():
    cmd = [sys.executable, str(SCRIPT), "--json", "--blocks", "2", "--max-blocks", "2", "--block-steps", "2"]
    cmd += ["--models", "mlp", "--tools", "plain", "gradwatch-norms", "gradwatch-all"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert [r["tool"] for r in doc["results"]] == ["plain", "gradwatch-norms", "gradwatch-all"]
    for r in doc["results"]:
        assert r["model"] == "mlp"
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
        assert r["ci_low"] <= r["ratio"] <= r["ci_high"]
        assert r["wall_ci_low"] <= r["wall_ratio"] <= r["wall_ci_high"]
        assert r["block_steps"] == 2 and r["ms_per_step"] > 0
    for r in doc["results"][1:]:
        assert r["blocks"] == 2
    plain = doc["results"][0]
    assert plain["ratio"] == 1.0 and plain["ci_halfwidth"] == 0.0
    assert doc["threads"] == 1 and "paired" in doc["method"]


def test_median_interval_is_the_binomial_order_statistic_one(paired):
    """Against the published ranks of the distribution-free 95 % interval of a median."""
    for n, (lo, hi) in {10: (2, 9), 20: (6, 15), 40: (14, 27)}.items():
        xs = [float(i) for i in range(1, n + 1)]
        med, a, b = paired.median_ci(xs[::-1])  # order of the input does not matter
        assert (a, b) == (lo, hi)
        assert med == (n + 1) / 2
    assert paired.median_ci([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)  # too few for 95 %: min–max


def test_paired_blocks_alternate_and_sum_each_side(paired):
    calls = []
    blocks = paired.paired_blocks(
        lambda n: calls.append(("p", n)), lambda n: calls.append(("t", n)), k=3, min_blocks=2, max_blocks=2
    )
    assert len(blocks) == 2 and all(len(b) == 4 for b in blocks)
    timed = calls[2:]  # after the warm-up block
    assert timed[:6] == [("p", 1), ("t", 1), ("t", 1), ("p", 1), ("p", 1), ("t", 1)]
    assert timed[6:8] == [("t", 1), ("p", 1)]  # the next block starts the other way round
