"""How far a trained cost critic is from the truth: Q^c(s, π(s)) against Monte-Carlo discounted cost.

Draws initial states of the run's task (keeping the feasible ones where the task reports
``info["feasible"]``), rolls the run's *stochastic* policy out ``--rollouts`` times from each for
``--horizon`` steps, and compares the discounted (γ_c, binary) cost of those rollouts with the critic.

    python benchmarks/cost_critic_bias.py RUN_DIR
"""

from __future__ import annotations

import argparse

import numpy as np

import statewise
from statewise.evaluate import build_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    agent = statewise.load(args.run_dir)
    cfg = agent.config
    probe_env = build_env(cfg.env, cfg.max_episode_steps)
    starts, i = [], 0
    while len(starts) < args.states:
        obs, info = probe_env.reset(seed=args.seed + i)
        i += 1
        if info.get("feasible", True):
            starts.append(obs)
    starts = np.asarray(starts, dtype=np.float32)

    # every (state, rollout) pair is one bare environment, stepped in lockstep with a batched policy
    envs = [build_env(cfg.env, cfg.max_episode_steps).unwrapped for _ in range(len(starts) * args.rollouts)]
    obs = np.repeat(starts, args.rollouts, axis=0)
    for env, s in zip(envs, obs):
        env.reset(seed=args.seed, options={"state": s})
    discounted = np.zeros(len(envs))
    alive = np.ones(len(envs), dtype=bool)
    weight = 1.0
    for _ in range(args.horizon):
        actions = agent.act(obs, deterministic=False)
        for k, env in enumerate(envs):
            if alive[k]:
                obs[k], _, terminated, _, info = env.step(actions[k])
                discounted[k] += weight * float(info["cost"] > 0.0)
                alive[k] = not terminated
        weight *= cfg.constraint.gamma_c
    mc = discounted.reshape(len(starts), args.rollouts).mean(axis=1)
    critic = agent.cost_value(starts)
    d = cfg.constraint.threshold
    print(f"{cfg.algo} on {cfg.env}, {len(starts)} feasible start states x {args.rollouts} rollouts, "
          f"gamma_c {cfg.constraint.gamma_c}, threshold d {d}")
    print(f"Monte-Carlo discounted cost (stochastic policy): median {np.median(mc):.3f}, mean {mc.mean():.3f}, "
          f"fraction > d {np.mean(mc > d):.2f}")
    print(f"cost critic Q^c(s, pi(s)):                       median {np.median(critic):.3f}, mean {critic.mean():.3f}, "
          f"fraction > d {np.mean(critic > d):.2f}")


if __name__ == "__main__":
    main()
