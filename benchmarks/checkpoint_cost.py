"""What a resume checkpoint costs: file size and write time of resume.pt for buffers of growing size.

    python benchmarks/checkpoint_cost.py            # ~1 min on 2 cores

Each row builds a SAC-ALaM agent ([256, 256] networks) and a replay buffer filled with n transitions of an
observation of the given size, then times ``statewise.run.resume.save`` of member 0's state (what the training loop
writes every ``checkpoint_every`` steps): serialisation, fsync and the atomic rename.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from statewise.config import Config
from statewise.method.buffer import ReplayBuffer
from statewise.method.sac import SAC
from statewise.run import resume


def measure(obs_dim: int, act_dim: int, n: int, repeats: int = 3) -> tuple[float, float]:
    cfg = Config(algo="sac-alam").validate()
    agent = SAC.from_config(obs_dim, act_dim, cfg)
    buffer = ReplayBuffer(obs_dim, act_dim, n, "cpu", [0])
    rng = np.random.default_rng(0)
    chunk = 10_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        buffer.add(rng.normal(size=(1, m, obs_dim)), rng.uniform(-1, 1, (1, m, act_dim)), rng.normal(size=(1, m)),
                   np.zeros((1, m)), rng.normal(size=(1, m, obs_dim)), np.zeros((1, m)))
    module, optimizers = agent.member_state(0)
    state = {"step": n, "loop": {}, "rng": resume.rng_state(),
             "member": {"module": module, "optimizers": optimizers, "buffer": buffer.member_state(0), "envs": None}}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            resume.save(Path(tmp), state)
            times.append(time.perf_counter() - start)
        size = (Path(tmp) / "resume.pt").stat().st_size
    return size / 2**20, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny row (for the test suite)")
    args = parser.parse_args()
    rows = [(2, 1, 1_000)] if args.smoke else [(2, 1, 20_000), (2, 1, 100_000), (11, 3, 100_000), (11, 3, 1_000_000),
                                               (27, 8, 1_000_000)]
    print(f"{'obs dim':>8s} {'act dim':>8s} {'transitions':>12s} {'resume.pt [MiB]':>16s} {'write [s]':>10s}")
    for obs_dim, act_dim, n in rows:
        size, seconds = measure(obs_dim, act_dim, n)
        print(f"{obs_dim:8d} {act_dim:8d} {n:12,d} {size:16.1f} {seconds:10.3f}")


if __name__ == "__main__":
    main()
