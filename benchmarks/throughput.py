"""Training throughput of every algorithm against this machine's matrix-multiply rate.

For each algorithm and network size it prints gradient updates per second (the update alone, replay
buffer on the training device), the FLOPs of one update (counted by torch's FlopCounterMode), the
fraction of the measured GEMM rate that the update reaches, and environment steps per second of a
real training run (collection + one update per step) on the built-in DoubleIntegrator task.

    python benchmarks/throughput.py                 # full table (about 3 minutes on 2 cores)
    python benchmarks/throughput.py --quick         # fewer repetitions
    python benchmarks/throughput.py --device cuda   # on a GPU machine
    python benchmarks/throughput.py --smoke         # seconds: checks that it runs (tests/test_benchmarks.py)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from statewise import Config, train
from statewise.buffer import ReplayBuffer
from statewise.sac import SAC

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
    agent = SAC(obs_dim, act_dim, cfg, seeds=list(range(members))).to(device)
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


def flops_per_update(agent: SAC, buf: ReplayBuffer) -> float:
    """FLOPs of one update averaged over a multiplier period (the multiplier runs every m_λ steps)."""
    period = agent.cfg.multiplier.period if agent.multiplier is not None else 1
    counter = FlopCounterMode(display=False)
    with counter:
        for _ in range(period):
            agent.update(buf)
    return counter.get_total_flops() / period


def training_rate(algo: str, steps: int, device: torch.device, hidden: list[int], start_steps: int = 1_000) -> float:
    """Env steps per second of a real run on DoubleIntegrator-v0 (batch 256), after the random warm-up."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(algo=algo, env="statewise/DoubleIntegrator-v0", steps=steps, device=device.type,
                     run_dir=str(Path(tmp) / "run"), progress=False, eval_every=steps, eval_episodes=1,
                     final_eval_episodes=1, log_every=min(500, steps // 4))
        cfg.sac.hidden = hidden
        cfg.multiplier.hidden = hidden
        cfg.sac.start_steps = start_steps
        result = train(cfg)
        rows = np.atleast_1d(np.genfromtxt(result.run_dir / "metrics.csv", delimiter=",", names=True))
        learning = rows[rows["step"] > start_steps + cfg.log_every]  # skip the first window after the warm-up
        return float(np.mean(learning["env_steps_per_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--sizes", default=",".join(label for label, *_ in SIZES), help="network sizes to measure")
    parser.add_argument("--train-steps", type=int, default=3_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds of everything, numbers meaningless (the test suite runs this)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [size for size in SIZES if size[0] in args.sizes.split(",")]
    if not sizes:
        parser.error(f"--sizes: choose from {', '.join(label for label, *_ in SIZES)}")
    seconds = 0.05 if args.smoke else 1.0 if args.quick else 4.0
    train_steps, start_steps = (400, 256) if args.smoke else (args.train_steps, 1_000)

    peak = {label: gemm_rate(batch, h[0], h[1], device, seconds=min(1.0, 4 * seconds))
            for label, h, batch, _, _ in sizes}
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("measured fp32 GEMM rate: " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()) + "  (256 x hidden x hidden matmul)")
    header = f"{'algo':9s} {'size':8s} {'updates/s':>10s} {'MFLOP/update':>13s} {'GFLOP/s':>8s} {'% of GEMM':>9s}"
    print(header)
    results = []
    for label, hidden, batch, obs_dim, act_dim in sizes:
        for algo in args.algos.split(","):
            agent, buf = make_agent(algo, hidden, batch, obs_dim, act_dim, device)
            flops = flops_per_update(agent, buf)
            ups = update_rate(agent, buf, seconds)
            achieved = ups * flops / 1e9
            row = dict(algo=algo, size=label, batch=batch, obs_dim=obs_dim, act_dim=act_dim, updates_per_s=ups,
                       mflop_per_update=flops / 1e6, gflops=achieved, fraction_of_gemm=achieved / peak[label])
            results.append(row)
            print(f"{algo:9s} {label:8s} {ups:10.0f} {flops / 1e6:13.1f} {achieved:8.1f} "
                  f"{100 * achieved / peak[label]:8.0f}%", flush=True)
    print("\nenv steps/s of training on statewise/DoubleIntegrator-v0 (batch 256, 1 update per env step, "
          "including collection, logging and evaluation):")
    train_rates = {}
    for label, hidden, _, _, _ in sizes:
        for algo in args.algos.split(","):
            rate = training_rate(algo, train_steps, device, hidden, start_steps)
            train_rates[f"{algo} {label}"] = rate
            print(f"{algo:9s} {label:8s} {rate:8.0f} env steps/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"gemm_gflops": peak, "updates": results, "train_env_steps_per_s": train_rates,
                                         "device": str(device), "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
