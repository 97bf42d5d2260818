"""The benchmark scripts run (a smoke test: numbers are not checked, only that they come out finite)."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_smoke(tmp_path):
    out = tmp_path / "throughput.json"
    script = ROOT / "benchmarks" / "throughput.py"
    subprocess.run([sys.executable, str(script), "--smoke", "--algos", "sac,sac-alam", "--sizes", "64x64", "--json",
                    str(out)], check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert [(r["algo"], r["size"]) for r in result["updates"]] == [("sac", "64x64"), ("sac-alam", "64x64")]
    for row in result["updates"]:
        assert row["eager_updates_per_s"] > 0 and row["mflop_per_update"] > 0
        assert math.isfinite(row["eager_fraction_of_gemm"])
    assert [r["members"] for r in result["populations"]] == [1, 2]  # --smoke keeps populations of at most 2
    for row in result["populations"]:
        assert row["updates_per_s_eager"] > 0 and row["env_steps_per_s_eager"] > 0


def test_checkpoint_cost_smoke():
    script = ROOT / "benchmarks" / "checkpoint_cost.py"
    done = subprocess.run([sys.executable, str(script), "--smoke"], check=True, capture_output=True, text=True,
                          timeout=300)
    row = done.stdout.strip().splitlines()[-1].split()
    size_mib, seconds = float(row[3]), float(row[4])
    assert 0 < size_mib < 50 and 0 < seconds < 30
