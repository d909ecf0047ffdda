"""The overhead benchmark's JSON contract (a tiny run: it checks the format, not the speed)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


def test_overhead_json_contract():
    cmd = [sys.executable, str(SCRIPT), "--json", "--reps", "1", "--steps", "2", "--models", "mlp"]
    cmd += ["--tools", "plain", "gradwatch-norms", "gradwatch-all"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    tools = {r["tool"] for r in doc["results"]}
    assert tools == {"plain", "gradwatch-norms", "gradwatch-all"}
    for r in doc["results"]:
        assert r["model"] == "mlp"
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
    plain = next(r for r in doc["results"] if r["tool"] == "plain")
    assert plain["ratio"] == 1.0
