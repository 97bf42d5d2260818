"""Throughput of vectorised collection (``--num-envs``, ``--vector-mode``) on this machine.

For each environment and each (mode, N): environment steps per second of collection alone (random actions through
``statewise.run.collect``, no policy, no learning), and of training (SAC-ALaM, [64, 64] networks, batch 256, one
gradient step per collected transition unless stated, one torch thread, evaluation excluded as far as possible).

    python benchmarks/collection_throughput.py                          # statewise/HopperVelocity-v0
    python benchmarks/collection_throughput.py SafetyPointGoal1-v0      # in the Safety-Gymnasium venv
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import statewise
from statewise.run.collect import make_collector
from statewise.run.evaluate import build_env

SETTINGS = [("single", 1, 1.0), ("sync", 4, 1.0), ("async", 4, 1.0), ("sync", 4, 0.25), ("async", 4, 0.25)]
COLLECT_STEPS = 4000
TRAIN_STEPS, START_STEPS = 4000, 1000


def collection_rate(env_id: str, mode: str, n: int) -> float:
    collector = make_collector(functools.partial(build_env, env_id, 0), n, mode)
    try:
        space = collector.single_action_space
        space.seed(0)
        collector.reset(0)
        start = time.perf_counter()
        for _ in range(COLLECT_STEPS // n):
            collector.step(np.stack([space.sample() for _ in range(n)]))
        return COLLECT_STEPS / (time.perf_counter() - start)
    finally:
        collector.close()


def training_rates(env_id: str, mode: str, n: int, ratio: float, out: Path) -> tuple[float, float]:
    """(env steps/s, gradient updates/s) over the whole training loop, random phase included."""
    cfg = statewise.Config(algo="sac-alam", env=env_id, steps=TRAIN_STEPS, seed=0, num_envs=n, vector_mode=mode,
                           run_dir=str(out / f"{mode}-{n}-{ratio}"), progress=False, eval_every=10 * TRAIN_STEPS,
                           eval_episodes=1, final_eval_episodes=1, max_episode_steps=200, log_every=500, threads=1)
    cfg.sac.hidden = cfg.multiplier.hidden = [64, 64]
    cfg.sac.start_steps, cfg.sac.update_ratio = START_STEPS, ratio
    summary = statewise.train(cfg).summary
    return summary["env_steps_per_s"], summary["gradient_updates"] / summary["wall_time_s"]


def main() -> None:
    env_id = sys.argv[1] if len(sys.argv) > 1 else "statewise/HopperVelocity-v0"
    print(f"{env_id}: collection {COLLECT_STEPS} random steps; training {TRAIN_STEPS} steps "
          f"({START_STEPS} random, then updates), [64, 64], batch 256, 200-step episodes")
    print("| mode | N | update ratio | collection env steps/s | training env steps/s | updates/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mode, n, ratio in SETTINGS:
            collect = collection_rate(env_id, mode, n)
            train, updates = training_rates(env_id, mode, n, ratio, Path(tmp))
            print(f"| {mode} | {n} | {ratio} | {collect:.0f} | {train:.0f} | {updates:.0f} |", flush=True)


if __name__ == "__main__":
    main()
