"""Windup of a multiplier network: its raw softplus output against the cap λ_max it is clamped to when used.

Dual ascent (FAC) keeps pushing the raw output up wherever g > 0, also above λ_max, so a λ at the cap can
sit far above it; the regression target of SAC-ALaM is clipped at λ_max, so its raw output cannot wind up.
Prints the median raw output on the task plane's grid inside and outside the exact feasible set.

    python benchmarks/multiplier_windup.py bench/di-dual-step/DoubleIntegrator-v0/*-s100
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import statewise
from statewise.run.evaluate import build_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--grid", type=int, default=41, help="grid points per axis of the task plane")
    args = parser.parse_args()
    print("| run | λ_max | median raw λ, feasible | median raw λ, infeasible |\n|---|---|---|---|")
    for run_dir in args.run_dirs:
        agent = statewise.load(run_dir)
        if agent.config.multiplier.kind != "network":
            continue
        env = build_env(agent.config.env)
        task = env.unwrapped
        _, _, obs = task.plane().grid(args.grid)
        with torch.no_grad():
            raw = agent.sac.multiplier.net(torch.as_tensor(obs, dtype=torch.float32, device=agent.device))
        raw = raw.cpu().numpy()
        feasible = task.feasible(obs)
        print(f"| {run_dir} | {agent.config.multiplier.lam_max:g} | {np.median(raw[feasible]):.4g} | "
              f"{np.median(raw[~feasible]):.4g} |")
        env.close()


if __name__ == "__main__":
    main()
