"""The benchmark scripts run on tiny inputs, and what they print, write and draw is checked against numbers worked
out here: by hand (FLOP and byte counts) or from the run directories they read (eval.csv, summary.json, probe.npz)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _csv_rows(path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _ci_cell(values):
    """The report's cell of finite values, mean ± Student-t 95% half-width (computed here from the t table)."""
    t975 = {1: 12.706, 2: 4.303}  # Student's t 0.975 quantile, by degrees of freedom
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.3g}"
    half = t975[len(values) - 1] * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return f"{mean:.3g} ± {half:.2g}"


def _sweep_figure(folder, out):
    """What stability_sweep.figure draws for the runs under ``folder``: per panel, method -> (dual steps, means)."""
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stability_sweep
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    figures, close = [], plt.close
    plt.close = lambda fig=None: figures.append(fig) or close(fig)
    try:
        out.mkdir()
        stability_sweep.figure(*stability_sweep.collect(folder), out)
    finally:
        plt.close = close
    return [{bars.get_label(): (bars.lines[0].get_xdata().tolist(), bars.lines[0].get_ydata().tolist())
             for bars in ax.containers} for ax in figures[0].axes]


def test_throughput_smoke(tmp_path):
    out = tmp_path / "throughput.json"
    script = ROOT / "benchmarks" / "throughput.py"
    subprocess.run([sys.executable, str(script), "--smoke", "--algos", "sac,sac-alam", "--sizes", "64x64", "--json",
                    str(out)], check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert [(r["algo"], r["size"]) for r in result["updates"]] == [("sac", "64x64"), ("sac-alam", "64x64")]
    # the forward matmuls of one SAC update at the 64x64 size (batch 256, 2-d observation, 1-d action), each network
    # 2·B·Σ in·out FLOPs: actor (2-64-64-2) on s' and on s; two target critics (3-64-64-1) on s'; two critics on
    # (s, a) for their loss and again on (s, ã) for the actor's. Backward passes cost at most twice the forward.
    forward = 2 * 256 * (2 * (2 * 64 + 64 * 64 + 64 * 2) + 6 * (3 * 64 + 64 * 64 + 64 * 1)) / 1e6
    for row in result["updates"]:
        assert (row["batch"], row["obs_dim"], row["act_dim"]) == (256, 2, 1)
        assert row["eager_updates_per_s"] > 0 and math.isnan(row["compiled_updates_per_s"])  # --smoke: no compile
        assert row["eager_fraction_of_gemm"] == pytest.approx(
            row["eager_updates_per_s"] * row["mflop_per_update"] / 1e3 / result["gemm_gflops"]["64x64"], rel=1e-9)
    sac, alam = (r["mflop_per_update"] for r in result["updates"])
    assert forward < sac < 3 * forward
    assert sac < alam  # the same update plus a multiplier network in the actor loss and its rounds
    assert [r["members"] for r in result["populations"]] == [1, 2]  # --smoke keeps populations of at most 2
    for row in result["populations"]:
        assert row["updates_per_s_eager"] > 0 and row["env_steps_per_s_eager"] > 0
        assert math.isnan(row["updates_per_s_compiled"]) and math.isnan(row["env_steps_per_s_compiled"])
    whole = result["whole_process"]  # two real `statewise train` processes, one seed and a population of two
    assert whole["members"] == 2 and whole["one_run_s"] > 0 and whole["population_s"] > 0
    assert whole["ratio"] == pytest.approx(2 * whole["one_run_s"] / whole["population_s"])


def test_checkpoint_cost_smoke():
    script = ROOT / "benchmarks" / "checkpoint_cost.py"
    done = subprocess.run([sys.executable, str(script), "--smoke"], check=True, capture_output=True, text=True,
                          timeout=300)
    row = done.stdout.strip().splitlines()[-1].split()
    assert row[:3] == ["2", "1", "1,000"]  # --smoke: one row, 2-d observations, 1-d actions, 1000 transitions
    size_mib, seconds = float(row[3]), float(row[4])

    def mlp(*widths):  # weights and biases of a stack of linear layers
        return sum(i * o + o for i, o in zip(widths[:-1], widths[1:], strict=True))

    # what member 0's resume state holds, in float32 numbers: SAC-ALaM at [256, 256] on (obs 2, act 1)
    actor, critics, lam = mlp(2, 256, 256, 2), 4 * mlp(3, 256, 256, 1), mlp(2, 256, 256, 1)
    module = 1 + actor + 2 * critics + 2 * lam  # log α, actor, critics and their targets, λ and λ_prev
    adam = 2 * (1 + actor + critics + lam)  # two moments of every optimised parameter (targets and λ_prev are not)
    buffer = 1000 * (2 + 1 + 1 + 1 + 2 + 1)  # obs, action, reward, cost, next obs, terminated
    expected_mib = 4 * (module + adam + buffer) / 2**20
    assert expected_mib == pytest.approx(5.91, abs=0.01)
    assert abs(size_mib - expected_mib) <= 0.05 + 0.02  # printed to 0.1 MiB; a few kB of framing
    assert 0 < seconds < 30


def test_signal_study_smoke(tmp_path):
    """Two tiny runs of one variant on each built-in task: one table row each, whose return, training violation
    ratio and exact-set λ AUROC are the mean ± CI of the runs' own eval.csv and summary.json."""
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
    for env, line in zip(TASKS, rows, strict=True):  # one table per task, in the order given
        cells = [c.strip() for c in line.strip("|").split("|")]
        runs = [tmp_path / env.split("/")[-1] / f"sac-alam-hjr-s{seed}" for seed in (0, 1)]
        summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
        # the last 10% of two evaluations (steps 150 and 200) is the last one, read back from eval.csv
        last_returns = [float(_csv_rows(run / "eval.csv")[-1]["return"]) for run in runs]
        assert cells[1] == _ci_cell(last_returns)
        assert cells[2] == _ci_cell([s["train_violation_ratio"] for s in summaries])
        # λ AUROC against the exact infeasible set of the plane: what each run's training measured at its end
        aurocs = [s["calibration"]["lambda_auroc"] for s in summaries]
        assert all(math.isfinite(a) for a in aurocs) and cells[4] == _ci_cell(aurocs), line


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
    # each cell holds its one run's oscillation amplitude, computed here from the run's probe.npz
    from statewise.metrics import oscillation_amplitude

    def amplitude(run, q):
        return oscillation_amplitude(np.load(grid / run / "probe.npz")["lam"], 100.0)[q]  # lam_max 100 (default)

    expected = {}
    for measure, q in (("λ oscillation amplitude (median state)", "median"),
                       ("λ oscillation amplitude (90th pct. state)", "q90")):
        section = text.split(f"#### {measure}\n")[1].split("####")[0]
        table = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
                 for line in section.splitlines() if line.startswith("| ") and not line.startswith("| method")}
        expected[measure] = {m: [amplitude(f"{m}-lr{lr}-s0", q) for lr in lrs]
                             for m, lrs in (("fac", ["3e-3"]), ("sac-alam", ["3e-3", "3e-2"]))}
        assert table == {"fac": [f"{expected[measure]['fac'][0]:.3g}", "– [1 of 1 failed]"],
                         "sac-alam": [f"{v:.3g}" for v in expected[measure]["sac-alam"]]}, section
    assert len({v for per in expected.values() for vs in per.values() for v in vs}) > 1  # not all one value
    # the figure draws the same numbers: one point per (method, dual step) with a run that did not fail
    drawn = _sweep_figure(tmp_path / "grid", tmp_path / "fig")
    for panel, measure in enumerate(expected):
        assert drawn[panel] == {"fac": ([0.003], expected[measure]["fac"]),
                                "sac-alam": ([0.003, 0.03], expected[measure]["sac-alam"])}


def test_perturbation_study_pairs_twins_smoke(tmp_path):
    """A perturbed tiny run and its unperturbed twin (same label and seed) agree until the window and are paired; a
    twin that differs before the window is refused, never silently compared."""
    sys.path.insert(0, str(ROOT / "tests"))
    import statewise
    from conftest import tiny_config

    for folder, steps in (("ref", 0), ("pert", 100)):
        cfg = tiny_config(tmp_path / folder / "sac-alam-lr3e-4-s0", "sac-alam", steps=400)
        cfg.label = "sac-alam-lr3e-4"
        # a region large enough that the agent of this tiny run enters it during the window (steps 200-300)
        cfg.perturbation.center, cfg.perturbation.radius = [0.0, 0.0], 8.0
        cfg.perturbation.start, cfg.perturbation.steps = 200, steps
        statewise.train(cfg, plots=False)
    cmd = [sys.executable, "perturbation_study.py", str(tmp_path / "pert"), str(tmp_path / "ref"), "--out",
           str(tmp_path / "o")]
    done = subprocess.run(cmd, cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sac-alam-lr3e-4 (n=1)" in done.stdout and "Pairs not used" not in done.stdout
    # the table read against the two probe files, computed here: the twins agree up to the window's start (step
    # 200); λ's deviation per band of distance from the region (centre 0, radius 8), its median over the band's
    # states, and the largest of those over the run
    pert, ref = (np.load(tmp_path / f / "sac-alam-lr3e-4-s0" / "probe.npz") for f in ("pert", "ref"))
    assert np.array_equal(pert["obs"], ref["obs"]) and np.array_equal(pert["steps"], ref["steps"])
    before = pert["steps"] <= 200
    assert before.any() and np.array_equal(pert["lam"][before], ref["lam"][before])
    assert not np.array_equal(pert["lam"], ref["lam"])  # the extra cost moved λ
    distance = np.hypot(pert["obs"][:, 0], pert["obs"][:, 1]) / 8.0
    deviation = np.abs(pert["lam"] - ref["lam"])
    edges = [0.0, 0.5, 1.0, 2.0, 4.0, np.inf]
    text = (tmp_path / "o" / "perturbation.md").read_text()
    counts = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = (distance >= lo) & (distance < hi)
        name = f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+"
        counts.append(f"{name}: {int(band.sum())}")
        if band.any():
            peak = float(np.median(deviation[:, band], axis=1).max())
            assert f"| peak |Δλ| to the end, {name} | {peak:.3g} |" in text, name
    assert "Probe states per band (first run): " + ", ".join(counts) in text
    other = tiny_config(tmp_path / "ref2" / "sac-alam-lr3e-4-s0", "sac-alam", steps=400)
    other.label, other.sac.lr_actor = "sac-alam-lr3e-4", 1e-3  # not a twin: differs from the start
    statewise.train(other, plots=False)
    cmd[3] = str(tmp_path / "ref2")
    done = subprocess.run(cmd, cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "λ differs before the window opens" in done.stderr
