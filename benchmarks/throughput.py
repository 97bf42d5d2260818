"""Training throughput against this machine's matrix-multiply rate: one command, every ratio of docs/results/speed.md.

1. single-run update at [64, 64] and [256, 256] for every algorithm, eager and compiled (``torch.compile``): gradient
   updates per second, FLOPs per update (torch's FlopCounterMode), % of the measured GEMM rate, compile time;
2. populations S = 1, 2, 4, 8, 16 of SAC-ALaM on the double integrator ([64, 64]): aggregate updates/s (eager and
   compiled) and aggregate env steps/s of real training runs (collection, updates, logging, evaluation);
3. whole processes: ``statewise train`` of one seed against ``statewise train --seeds 0-7`` on the double
   integrator (its config, the value-bias check on, ``--whole-steps`` steps), wall time from start to exit, so
   start-up, warm-up, evaluation, the Monte-Carlo checks, checkpoints and plots all count;
4. the double-integrator grid (7 variants x 5 seeds, shortened to ``--grid-steps``): wall time of populations vs
   one process per run (``statewise bench --no-populations``), both with 2 workers.

    python benchmarks/throughput.py                 # everything (about 30 minutes on 2 cores)
    python benchmarks/throughput.py --quick         # shorter timings, no whole processes, no grid
    python benchmarks/throughput.py --device cuda   # on a GPU machine
    python benchmarks/throughput.py --smoke         # seconds: checks that it runs (tests/test_benchmarks.py)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from statewise import Config
from statewise.api import population_configs, train_population
from statewise.method.buffer import ReplayBuffer
from statewise.method.sac import SAC
from statewise.run.trainer import keep_freed_memory

ALGOS = ["sac", "sac-lag", "fac", "sac-alam"]
# (label, hidden, batch, obs_dim, act_dim): the library's default size at a Safety-Gymnasium-like
# shape (PointGoal1: 60-d observation, 2-d action), and the small size the built-in tasks use.
SIZES = [("256x256", [256, 256], 256, 60, 2), ("64x64", [64, 64], 256, 2, 1)]


def gemm_rate(n: int, k: int, m: int, device: torch.device, seconds: float = 1.0) -> float:
    """Measured fp32 GFLOP/s of an (n x k) @ (k x m) matmul."""
    a, b = torch.randn(n, k, device=device), torch.randn(k, m, device=device)
    warm = time.perf_counter()
    while time.perf_counter() - warm < 0.5:  # wake the thread pool and the clock before timing
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ b
        reps += 20
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2.0 * n * k * m * reps / (time.perf_counter() - start) / 1e9


def make_agent(algo: str, hidden: list[int], batch: int, obs_dim: int, act_dim: int, device: torch.device,
               members: int = 1):
    cfg = Config(algo=algo, device=device.type)
    cfg.sac.hidden = hidden
    cfg.multiplier.hidden = hidden
    cfg.sac.batch_size = batch
    cfg.validate()
    agent = SAC.from_config(obs_dim, act_dim, cfg, seeds=list(range(members))).to(device)
    buf = ReplayBuffer(obs_dim, act_dim, 10_000, device, seeds=list(range(members)))
    rng = np.random.default_rng(0)
    n, s = 2_000, members  # the buffer takes N transitions per member: (S, N, ...) on every field
    buf.add(rng.normal(size=(s, n, obs_dim)), rng.uniform(-1, 1, (s, n, act_dim)), rng.normal(size=(s, n)),
            (rng.random((s, n)) < 0.1).astype(np.float32), rng.normal(size=(s, n, obs_dim)), rng.random((s, n)) < 0.01)
    return agent, buf


def update_rate(agent: SAC, buf: ReplayBuffer, seconds: float) -> float:
    for _ in range(20):
        agent.update(buf)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            agent.update(buf)
        n += 10
    if buf.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def compiled_rate(agent: SAC, buf: ReplayBuffer, seconds: float, device: torch.device) -> tuple[float, float]:
    """(updates/s, compile seconds) of the same agent after ``agent.compile(True)``; (nan, nan) without a compiler."""
    note = agent.compile(True, device)
    if not agent.compiled:
        print(f"  ({note})")
        return float("nan"), float("nan")
    period = agent.multiplier.schedule.period if agent.multiplier is not None else 1
    start = time.perf_counter()
    for _ in range(period):  # the first calls compile (the update and the multiplier step)
        agent.update(buf)
    compile_s = time.perf_counter() - start
    return update_rate(agent, buf, seconds), compile_s


def flops_per_update(agent: SAC, buf: ReplayBuffer) -> float:
    """FLOPs of one update averaged over a multiplier period (the multiplier runs every m_λ steps), per member."""
    period = agent.multiplier.schedule.period if agent.multiplier is not None else 1
    counter = FlopCounterMode(display=False)
    with counter:
        for _ in range(period):
            agent.update(buf)
    return counter.get_total_flops() / period / agent.members


def training_rate(algo: str, steps: int, device: torch.device, hidden: list[int], members: int = 1,
                  compile_mode: bool | str = False, start_steps: int = 1_000) -> float:
    """Aggregate env steps per second (over all members) of a real run on DoubleIntegrator-v0 (batch 256), after
    the random warm-up and the first logging window (which holds the compile time)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(algo=algo, env="statewise/DoubleIntegrator-v0", steps=steps, device=device.type,
                     progress=False, eval_every=steps, eval_episodes=1, final_eval_episodes=1,
                     log_every=min(500, steps // 4), compile=compile_mode)
        cfg.sac.hidden = hidden
        cfg.multiplier.hidden = hidden
        cfg.sac.start_steps = start_steps
        results = train_population(population_configs(cfg, list(range(members)), tmp))
        rows = np.atleast_1d(np.genfromtxt(results[0].run_dir / "metrics.csv", delimiter=",", names=True))
        learning = rows[rows["step"] > start_steps + cfg.log_every]  # skip the first window after the warm-up
        return members * float(np.mean(learning["env_steps_per_s"]))


def whole_process_time(steps: int, seeds: str) -> float:
    """Wall seconds of ``statewise train`` (a new process) on the double integrator with the grid's settings."""
    config = Path(__file__).parents[1] / "configs" / "double_integrator.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "statewise.cli", "train", "--config", str(config), "--steps", str(steps),
               "--seeds", seeds, "--set", "value_bias=true", "--run-dir", str(Path(tmp) / "run")]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def grid_wall_time(steps: int, populations: bool, workers: int) -> float:
    """Wall seconds of ``statewise bench`` on the double-integrator grid (7 variants x 5 seeds) at ``steps``."""
    grid = Path(__file__).parent / "grids" / "double_integrator.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "statewise.cli", "bench", "--grid", str(grid), "--steps", str(steps),
               "--out", tmp, "--workers", str(workers), "--populations" if populations else "--no-populations"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="shorter timings, no grid")
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--sizes", default=",".join(label for label, *_ in SIZES), help="network sizes to measure")
    parser.add_argument("--populations", default="1,2,4,8,16", help="population sizes S")
    parser.add_argument("--train-steps", type=int, default=4_000)
    parser.add_argument("--whole-steps", type=int, default=6_000, help="steps per run of the whole-process comparison")
    parser.add_argument("--whole-members", type=int, default=8, help="population size of the whole-process comparison")
    parser.add_argument("--grid-steps", type=int, default=6_000, help="steps per run of the grid comparison")
    parser.add_argument("--skip-updates", action="store_true", help="skip section 1 (the single-run update table)")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds of everything, numbers meaningless (the test suite runs this)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [size for size in SIZES if size[0] in args.sizes.split(",")]
    if not sizes:
        parser.error(f"--sizes: choose from {', '.join(label for label, *_ in SIZES)}")
    pops = [int(x) for x in args.populations.split(",")]
    if args.smoke:
        pops = [p for p in pops if p <= 2] or [1]
    seconds = 0.05 if args.smoke else 1.0 if args.quick else 3.0
    train_steps, start_steps = (400, 256) if args.smoke else (args.train_steps, 1_000)
    use_compile = not (args.no_compile or args.smoke)
    keep_freed_memory()  # as training does

    peak = {label: gemm_rate(batch, h[0], h[1], device, seconds=min(1.0, 4 * seconds))
            for label, h, batch, _, _ in sizes}
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("measured fp32 GEMM rate: " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()) + "  (256 x hidden x hidden matmul)")
    print("\n1. single-run update (batch 256): eager and compiled")
    print(f"{'algo':9s} {'size':8s} {'MFLOP/upd':>9s} {'eager/s':>8s} {'% GEMM':>6s} {'compiled/s':>10s} "
          f"{'% GEMM':>6s} {'speed-up':>8s} {'compile s':>9s}")
    results = []
    for label, hidden, batch, obs_dim, act_dim in ([] if args.skip_updates else sizes):
        for algo in args.algos.split(","):
            agent, buf = make_agent(algo, hidden, batch, obs_dim, act_dim, device)
            flops = flops_per_update(agent, buf)
            eager = update_rate(agent, buf, seconds)
            comp, compile_s = compiled_rate(agent, buf, seconds, device) if use_compile else (float("nan"),) * 2
            row = dict(algo=algo, size=label, batch=batch, obs_dim=obs_dim, act_dim=act_dim,
                       mflop_per_update=flops / 1e6, eager_updates_per_s=eager, compiled_updates_per_s=comp,
                       eager_fraction_of_gemm=eager * flops / 1e9 / peak[label],
                       compiled_fraction_of_gemm=comp * flops / 1e9 / peak[label], compile_s=compile_s)
            results.append(row)
            print(f"{algo:9s} {label:8s} {flops / 1e6:9.1f} {eager:8.0f} {100 * row['eager_fraction_of_gemm']:5.0f}% "
                  f"{comp:10.0f} {100 * row['compiled_fraction_of_gemm']:5.0f}% {comp / eager:7.2f}x "
                  f"{compile_s:9.0f}", flush=True)

    print("\n2. populations of SAC-ALaM, [64, 64], batch 256 per member (aggregate over the S members)")
    print(f"{'S':>3s} {'updates/s eager':>15s} {'compiled':>9s} {'env steps/s eager':>17s} {'compiled':>9s}")
    population_rows = []
    for members in pops:
        agent, buf = make_agent("sac-alam", [64, 64], 256, 2, 1, device, members)
        eager = members * update_rate(agent, buf, seconds)
        comp = members * compiled_rate(agent, buf, seconds, device)[0] if use_compile else float("nan")
        train_eager = training_rate("sac-alam", train_steps, device, [64, 64], members, False, start_steps)
        train_comp = (training_rate("sac-alam", train_steps, device, [64, 64], members, True, start_steps)
                      if use_compile else float("nan"))
        population_rows.append(dict(members=members, updates_per_s_eager=eager, updates_per_s_compiled=comp,
                                    env_steps_per_s_eager=train_eager, env_steps_per_s_compiled=train_comp))
        print(f"{members:3d} {eager:15.0f} {comp:9.0f} {train_eager:17.0f} {train_comp:9.0f}", flush=True)
    base = population_rows[0]["env_steps_per_s_eager"] if pops[0] == 1 else float("nan")
    if pops[0] == 1:
        print("env steps/s relative to one eager single run: " + ", ".join(
            f"S={r['members']} {r['env_steps_per_s_eager'] / base:.1f}x eager, "
            f"{r['env_steps_per_s_compiled'] / base:.1f}x compiled" for r in population_rows))

    whole, grid = {}, {}
    if not args.quick:
        steps, members = (300, 2) if args.smoke else (args.whole_steps, args.whole_members)
        print(f"\n3. whole processes: statewise train on the double integrator, {steps} steps per run")
        one = whole_process_time(steps, "0")
        print(f"one run:                 {one:6.0f} s   {steps / one:6.0f} env steps/s", flush=True)
        pop = whole_process_time(steps, f"0-{members - 1}")
        print(f"a population of {members:2d}:    {pop:6.0f} s   {members * steps / pop:6.0f} env steps/s   "
              f"({members * one / pop:.1f}x one run's throughput)", flush=True)
        whole = dict(steps=steps, members=members, one_run_s=one, population_s=pop, ratio=members * one / pop)
    if not (args.quick or args.smoke):
        print(f"\n4. double-integrator grid (7 variants x 5 seeds, {args.grid_steps} steps per run, 2 workers)")
        pool = grid_wall_time(args.grid_steps, populations=False, workers=2)
        print(f"one process per run (--no-populations): {pool:6.0f} s", flush=True)
        pop = grid_wall_time(args.grid_steps, populations=True, workers=2)
        print(f"populations (default):                   {pop:6.0f} s   ({pool / pop:.1f}x faster)", flush=True)
        grid = dict(steps=args.grid_steps, process_pool_s=pool, populations_s=pop)
    if args.json:
        args.json.write_text(json.dumps({"gemm_gflops": peak, "updates": results, "populations": population_rows,
                                         "whole_process": whole, "grid": grid, "device": str(device),
                                         "threads": torch.get_num_threads()},
                                        indent=2))


if __name__ == "__main__":
    main()
