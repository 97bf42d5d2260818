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


def test_signal_study_smoke(tmp_path):
    """Two tiny runs of one variant on each built-in task: one table row each, the task's exact-set AUROC finite."""
    sys.path.insert(0, str(ROOT / "tests"))
    import statewise
    from conftest import TASKS, tiny_config

    for env in TASKS:
        for seed in (0, 1):
            cfg = tiny_config(tmp_path / env.split("/")[-1] / f"sac-alam-hjr-s{seed}", "sac-alam", env, 200, seed)
            cfg.label, cfg.constraint.signal = "sac-alam-hjr", "hjr"
            statewise.train(cfg, plots=False)
    done = subprocess.run([sys.executable, "signal_study.py", *[str(p) for p in sorted(tmp_path.iterdir())]],
                          cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| sac-alam-hjr")]
    assert len(rows) == 2 and all(line.startswith("| sac-alam-hjr (n=2) |") for line in rows)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        auroc = cells[4]  # λ AUROC against the exact infeasible set of the plane
        assert auroc != "–" and "non-finite" not in auroc, line


def test_di_variants_change_one_thing(monkeypatch):
    """The bias and slack studies' environment variants differ from the double integrator only where they say."""
    import gymnasium as gym
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / "envs"))
    import di_variants  # noqa: F401  (registers the variants)

    def starts(env_id, n=3000):
        env = gym.make(env_id)
        states = np.array([env.reset(seed=i)[0] for i in range(n)], dtype=np.float64)
        return env.unwrapped, states

    task, base = starts("statewise/DoubleIntegrator-v0")
    _, feasible = starts("di_variants:DIFeasibleStarts-v0")
    _, fast = starts("di_variants:DIFastStarts-v0")
    assert 0.1 < 1 - task.feasible(base).mean() < 0.17  # ~13% of the task's starts are infeasible
    assert task.feasible(feasible).all()
    assert np.abs(base[:, 1]).max() <= 3.0 and np.abs(fast[:, 1]).max() > 3.9  # velocities reach the plane's edge
    assert np.abs(fast[:, 0]).max() <= 4.5 and np.abs(fast[:, 1]).max() <= 4.0
    assert ((np.abs(fast[:, 1]) > 3) & (task.slack(fast) >= 1)).any()  # slack states outside the task's starts
    options = {"state": [1.0, -2.0]}
    for env_id in ("di_variants:DIFeasibleStarts-v0", "di_variants:DIFastStarts-v0"):  # an explicit state is kept
        np.testing.assert_array_equal(gym.make(env_id).reset(seed=0, options=options)[0], [1.0, -2.0])
    no_term = gym.make("di_variants:DINoTermination-v0").unwrapped
    _, _, cost, terminated = no_term.transition(np.array([[10.5, 1.0]]), np.array([[1.0]]))
    assert cost[0] == 1.0 and not terminated[0]
    _, _, _, terminated = task.transition(np.array([[10.5, 1.0]]), np.array([[1.0]]))
    assert terminated[0]


def test_stability_sweep_smoke(tmp_path):
    """Tiny runs labelled <method>-lr<step> (one failed): one table row per method, a column per step, the failed
    run shown in its cell, and the figure written."""
    sys.path.insert(0, str(ROOT / "tests"))
    import statewise
    from conftest import tiny_config

    grid = tmp_path / "grid" / "DoubleIntegrator-v0"
    for algo, lr in (("fac", "3e-3"), ("sac-alam", "3e-3"), ("sac-alam", "3e-2")):
        cfg = tiny_config(grid / f"{algo}-lr{lr}-s0", algo, steps=300)
        cfg.label, cfg.multiplier.lr = f"{algo}-lr{lr}", float(lr)
        statewise.train(cfg, plots=False)
    failed = grid / "fac-lr3e-2-s0"
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "label": "fac-lr3e-2", "algo": "fac"}))
    done = subprocess.run([sys.executable, "stability_sweep.py", str(tmp_path / "grid"), "--out", str(tmp_path / "o")],
                          cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "o" / "sweep.md").read_text()
    assert "| method | 0.003 | 0.03 |" in text
    amplitude = text.split("#### λ oscillation amplitude (median state)")[1].split("####")[0]
    assert "| fac | " in amplitude and "[1 of 1 failed]" in amplitude and "| sac-alam | " in amplitude
    assert (tmp_path / "o" / "sweep.png").stat().st_size > 0


def test_perturbation_study_pairs_twins_smoke(tmp_path):
    """A perturbed tiny run and its unperturbed twin (same label and seed) agree until the window and are paired; a
    twin that differs before the window is refused, never silently compared."""
    sys.path.insert(0, str(ROOT / "tests"))
    import statewise
    from conftest import tiny_config

    for folder, steps in (("ref", 0), ("pert", 100)):
        cfg = tiny_config(tmp_path / folder / "sac-alam-lr3e-4-s0", "sac-alam", steps=400)
        cfg.label = "sac-alam-lr3e-4"
        cfg.perturbation.center, cfg.perturbation.radius = [0.0, 0.0], 2.0
        cfg.perturbation.start, cfg.perturbation.steps = 200, steps
        statewise.train(cfg, plots=False)
    cmd = [sys.executable, "perturbation_study.py", str(tmp_path / "pert"), str(tmp_path / "ref"), "--out",
           str(tmp_path / "o")]
    done = subprocess.run(cmd, cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sac-alam-lr3e-4 (n=1)" in done.stdout and "Pairs not used" not in done.stdout
    assert (tmp_path / "o" / "perturbation.png").stat().st_size > 0
    other = tiny_config(tmp_path / "ref2" / "sac-alam-lr3e-4-s0", "sac-alam", steps=400)
    other.label, other.sac.lr_actor = "sac-alam-lr3e-4", 1e-3  # not a twin: differs from the start
    statewise.train(other, plots=False)
    cmd[3] = str(tmp_path / "ref2")
    done = subprocess.run(cmd, cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "λ differs before the window opens" in done.stderr
