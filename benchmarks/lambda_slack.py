"""Where is λ(s) high although the constraint is slack? A check of a network multiplier's map on the double integrator.

For every finished run, at its final checkpoint: the 101 × 101 probe grid of the task's plane, the states with at
least 1 m of slack under full braking (``task.slack``), and on them
  * the share with λ ≤ 1 and the median λ;
  * for the slack states with λ > 1: the median λ, the share moving towards the nearer wall, the Monte-Carlo cost
    value of the final policy from there (is the policy actually unsafe there?) and the median residual
    g = Q^c(s, π(s)) − d that the dual target sees (negative: the target lowers λ there).
Then mean ± Student-t 95% CI over the runs of each variant.

    python benchmarks/lambda_slack.py bench/di-main/DoubleIntegrator-v0
    python benchmarks/lambda_slack.py --over-training bench/di-main/DoubleIntegrator-v0   # the share in time
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from value_bias import ci_cell, run_dirs

import statewise
from statewise.analysis.plots import run_label
from statewise.run.evaluate import SLACK_M, build_env
from statewise.run.value_bias import monte_carlo_values

COLUMNS = ("slack states with λ ≤ 1", "visited slack states, λ ≤ 1", "median λ, slack states",
           "median λ where λ > 1",
           "toward the wall where λ > 1", "MC cost where λ > 1", "P(MC cost > d) where λ > 1",
           "median g where λ > 1")


def measure(run) -> list[float] | None:
    agent = statewise.load(run)
    if agent.config.multiplier.kind != "network":
        return None
    task = build_env(agent.config.env, agent.config.max_episode_steps).unwrapped
    if not hasattr(task, "slack"):
        raise SystemExit(f"{agent.config.env} has no exact slack (task.slack); this check needs the double integrator")
    _, _, obs = task.plane().grid(101)
    roomy = np.asarray(task.slack(obs)) >= SLACK_M
    lam = np.asarray(agent.multiplier(obs), dtype=np.float64).ravel()
    high = roomy & (lam > 1.0)
    visited = visited_states(agent.sac, task, build_env(agent.config.env, agent.config.max_episode_steps))
    visited = visited[np.asarray(task.slack(visited)) >= SLACK_M]
    lam_visited = np.asarray(agent.multiplier(visited), dtype=np.float64).ravel()
    row = [float(np.mean(lam[roomy] <= 1.0)), float(np.mean(lam_visited <= 1.0)), float(np.median(lam[roomy]))]
    if not high.any():
        return row + [float("nan")] * 5
    x, v = obs[high, 0], obs[high, 1]
    values = monte_carlo_values(agent.sac, task, obs[high], rollouts=4, horizon=300,
                                generator=torch.Generator().manual_seed(0))
    d = agent.config.constraint.threshold
    return row + [float(np.median(lam[high])), float(np.mean(x * v > 0)), float(np.median(values["qc_mc"])),
                  float(np.mean(values["qc_mc"] > d)), float(np.median(values["qc"] - d))]


def visited_states(sac, task, env, episodes: int = 200) -> np.ndarray:
    """The states the final deterministic policy visits in ``episodes`` episodes from the task's own initial
    distribution (reset seeds 10^6 + i, disjoint from every evaluation's), all episodes stepped at once."""
    state = np.stack([env.reset(seed=1_000_000 + i)[0] for i in range(episodes)]).astype(np.float64)
    alive = np.ones(episodes, dtype=bool)
    seen = []
    for _ in range(env.spec.max_episode_steps):
        seen.append(state[alive])
        with torch.no_grad():
            act = sac.actor.mode(torch.as_tensor(state, dtype=torch.float32)[None])[0].numpy()
        state, _, _, terminated = task.transition(state, act)
        alive &= ~terminated
        if not alive.any():
            break
    return np.concatenate(seen).astype(np.float32)


def over_training(runs: list) -> None:
    """The share of ≥ 1 m-slack states with λ > 1 in each λ map saved during training (probe.npz, 41 × 41 grid),
    mean over the runs of each variant with a multiplier network."""
    from statewise.run import runio
    from statewise.run.diagnostics import LAMBDA_GRID_N

    by_label: dict[str, list[np.ndarray]] = defaultdict(list)
    steps: dict[str, np.ndarray] = {}
    for run in runs:
        probe_path = run / runio.PROBE_FILE
        if not probe_path.is_file():
            continue
        cfg = runio.read_config(run)
        probe = runio.read_npz(probe_path)
        if cfg["multiplier"]["kind"] != "network" or "grid_lam" not in probe:
            continue
        task = build_env(cfg["env"]).unwrapped
        _, _, obs = task.plane().grid(LAMBDA_GRID_N)
        roomy = np.asarray(task.slack(obs)) >= SLACK_M
        label = run_label(run)[0]
        by_label[label].append(np.array([np.mean(grid[roomy] > 1.0) for grid in probe["grid_lam"]]))
        steps[label] = probe["grid_steps"]
    print("share of ≥ 1 m slack states with λ > 1, per λ map saved in training (mean over seeds)")
    for label, shares in sorted(by_label.items()):
        mean = np.mean(np.stack(shares), axis=0)
        print(f"{label + f' (n={len(shares)})':22s} "
              + "  ".join(f"{int(t)}: {m:.2f}" for t, m in zip(steps[label], mean, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories, or directories holding runs")
    parser.add_argument("--over-training", action="store_true",
                        help="instead: how the share of slack states with λ > 1 evolved (from probe.npz)")
    args = parser.parse_args()
    if args.over_training:
        over_training(list(run_dirs(args.paths)))
        return
    by_label: dict[str, list[list[float]]] = defaultdict(list)
    for run in run_dirs(args.paths):
        row = measure(run)
        if row is not None:
            by_label[run_label(run)[0]].append(row)
    if not by_label:
        raise SystemExit("no run with a multiplier network")
    print("mean ± Student-t 95% CI over seeds (non-finite: no slack state with λ > 1 in that run)")
    print(f"{'variant':22s} " + " ".join(f"{c:>28s}" for c in COLUMNS))
    for label, rows in sorted(by_label.items()):
        cells = [ci_cell([r[k] for r in rows], 28) for k in range(len(COLUMNS))]
        print(f"{label + f' (n={len(rows)})':22s} " + " ".join(cells))


if __name__ == "__main__":
    main()
