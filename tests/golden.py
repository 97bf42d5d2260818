"""Golden runs: fixed-seed, eager, CPU runs whose files pin the training loop's behaviour byte for byte.

Each case is a short ``statewise train`` command line. ``python tests/golden.py`` (re)records their files into
``tests/golden/`` and should be run only when a change of behaviour is intended; ``tests/test_golden.py`` trains
the same cases and compares. What is compared: metrics.csv without its wall-clock columns, eval.csv,
value_bias.csv, the arrays of probe.npz and summary.json without wall times.

Float rounding in CPU kernels depends on the instruction set torch dispatches to, so the files are only expected to
match where torch reports the same CPU capability, with the same numpy and gymnasium, as when they were recorded
(``meta.json``; elsewhere the test is skipped and says why).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent / "golden"
CLI = [sys.executable, "-m", "statewise.cli", "train"]
BASE = ["--steps", "600", "--set", "sac.start_steps=100", "--set", "log_every=50", "--set", "eval_every=200",
        "--set", "eval_episodes=2", "--set", "final_eval_episodes=3", "--set", "probe_size=32",
        "--set", "sac.hidden=[16,16]", "--set", "multiplier.hidden=[16,16]", "--set", "sac.batch_size=32",
        "--set", "multiplier.period=5", "--set", "threads=1", "--set", "compile=false",
        "--set", "checkpoint_every=200", "--no-progress"]
# name -> extra arguments; one case per algorithm family, a population, two signals, both diagnostics
CASES: dict[str, list[str]] = {
    "sac": ["--algo", "sac"],
    "sac-lag": ["--algo", "sac-lag"],
    "sac-pid-lag": ["--algo", "sac-pid-lag"],
    "fac-cbf": ["--algo", "fac", "--set", "constraint.signal=cbf", "--set", "multiplier.anti_windup=true"],
    "sac-alam": ["--algo", "sac-alam", "--set", "value_bias=true"],
    "alam-no-qp-hazard": ["--algo", "alam-no-qp", "--env", "statewise/PointHazard-v0", "--num-envs", "2"],
    "population": ["--algo", "sac-alam", "--seeds", "0,1"],
}
KILLED = "sac-alam"  # the case that test_golden also kills (inside its second checkpoint write) and resumes
CLOCK_COLUMNS = {"time_s", "env_steps_per_s", "updates_per_s"}
TIMING = {"wall_time_s", "env_steps_per_s", "compile_s"}


def platform() -> str:
    """What the files depend on besides the code: torch's CPU kernels, numpy's and gymnasium's random streams."""
    import gymnasium

    return (f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}, numpy {np.__version__}, "
            f"gymnasium {gymnasium.__version__}")


def train(case: str, out: Path, kill_in_save: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "STATEWISE_TEST_KILL_IN_SAVE": str(kill_in_save)} if kill_in_save else None
    return subprocess.run(CLI + BASE + CASES[case] + ["--run-dir", str(out)], capture_output=True, text=True,
                          env=env)


def runs(root: Path) -> dict[str, Path]:
    """Run directories under root: root itself, or each member of a population."""
    if (root / "config.yaml").is_file():
        return {"": root}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "config.yaml").is_file()}


def fingerprint(run: Path) -> dict[str, bytes]:
    """The compared contents of one run directory, file name -> bytes."""
    out: dict[str, bytes] = {}
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    text = io.StringIO()
    writer = csv.DictWriter(text, [k for k in rows[0] if k not in CLOCK_COLUMNS], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out["metrics.csv"] = text.getvalue().encode()
    for name in ("eval.csv", "value_bias.csv"):
        if (run / name).is_file():
            out[name] = (run / name).read_bytes()
    if (run / "probe.npz").is_file():
        with np.load(run / "probe.npz") as probe:
            buf = io.BytesIO()
            np.savez(buf, **{k: probe[k] for k in sorted(probe.files)})
            out["probe.npz"] = buf.getvalue()
    summary = json.loads((run / "summary.json").read_text())
    out["summary.json"] = json.dumps({k: v for k, v in summary.items() if k not in TIMING}, indent=1,
                                     sort_keys=True).encode()
    return out


def record() -> None:
    import tempfile

    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            proc = train(case, Path(tmp) / case)
            if proc.returncode != 0:
                raise SystemExit(f"{case} failed: {proc.stderr}")
            for member, run in runs(Path(tmp) / case).items():
                folder = HERE / case / member
                folder.mkdir(parents=True, exist_ok=True)
                for name, data in fingerprint(run).items():
                    (folder / name).write_bytes(data)
    (HERE / "meta.json").write_text(json.dumps({"platform": platform()}, indent=1) + "\n")
    print(f"recorded {len(CASES)} cases into {HERE} ({platform()})")


if __name__ == "__main__":
    record()
