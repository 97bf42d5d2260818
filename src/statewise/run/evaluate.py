"""Environment set-up shared by training and evaluation, deterministic evaluation episodes and the
multiplier-calibration check against an exact feasible set (docs/algorithm.md §7)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from statewise.envs.lockstep import Lockstep
from statewise.envs.named_costs import PARTS
from statewise.errors import EnvError
from statewise.metrics import auprc, auroc, reliability, reliability_bins, violation_within


def build_env(env_id: str, max_episode_steps: int = 0, costs: list[str] | tuple[str, ...] = (),
              **kwargs: Any) -> gym.Env:
    """Make an environment and check it is usable: a time limit (the registered one, or
    ``max_episode_steps`` > 0), flat Box observations, Box actions (rescaled to [-1, 1] so the tanh
    policy covers the whole range) with finite bounds. With ``costs`` (``constraint.costs``) each step's info also
    holds those named costs as one array (:class:`statewise.envs.named_costs.NamedCosts`). ``kwargs`` go to the
    environment (e.g. render_mode)."""
    from statewise.envs import make_env
    from statewise.envs.named_costs import NamedCosts

    if max_episode_steps > 0:
        kwargs["max_episode_steps"] = max_episode_steps
    env = make_env(env_id, **kwargs)
    if not _has_time_limit(env):
        env.close()
        raise EnvError(f"environment '{env_id}' has no time limit, so episodes may never end; "
                       "set max_episode_steps (e.g. --set max_episode_steps=1000)")
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise EnvError(f"environment '{env_id}' must have a flat Box observation space, got {obs_space}")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise EnvError(f"environment '{env_id}' must have a flat Box (continuous) action space, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise EnvError(f"environment '{env_id}' has unbounded actions; statewise needs finite action bounds")
    if not (np.allclose(act_space.low, -1.0) and np.allclose(act_space.high, 1.0)):
        env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
    return NamedCosts(env, costs) if costs else env


def task_env(cfg: Any, **kwargs: Any) -> gym.Env:
    """:func:`build_env` for a run's config: its environment, time limit and named costs."""
    return build_env(cfg.env, cfg.max_episode_steps, cfg.constraint.costs, **kwargs)


def _has_time_limit(env: gym.Env) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = env.env
    return False


def check_cost_signal(env: gym.Env, seed: int, signal: str | None = None) -> None:
    """One reset and one random step: raises EnvError now (before any file is written) if the
    environment has no cost signal or returns NaN costs, or if ``signal`` needs the signed constraint h(s) and the
    environment does not report it as a finite ``info["constraint"]`` at reset and at the step."""
    from statewise.method.signals import NEEDS_CONSTRAINT
    from statewise.run.collect import info_constraint

    shape = getattr(env.observation_space, "shape", None)
    if shape is None or len(shape) != 1:
        raise EnvError(f"statewise needs a flat Box observation space, got {env.observation_space}")
    obs, reset_info = env.reset(seed=seed)
    _check_shape("reset", obs, shape)
    env.action_space.seed(seed)
    obs, _, _, _, info = env.step(env.action_space.sample())
    _check_shape("step", obs, shape)
    if signal in NEEDS_CONSTRAINT:
        for where, got in (("reset", reset_info), ("step", info)):
            if not math.isfinite(info_constraint(got)):
                name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
                raise EnvError(f"constraint.signal {signal} needs the signed constraint h(s) (a finite "
                               f"info['constraint'] at reset and at every step), and {name} reports none at {where}; "
                               f"use cvf or cdf, which need only the cost")


def _check_shape(where: str, obs: Any, shape: tuple[int, ...]) -> None:
    if np.shape(obs) != shape:
        raise EnvError(f"{where} returned an observation of shape {np.shape(obs)}, but the observation space says "
                       f"{shape}")


Policy = Callable[[np.ndarray], np.ndarray]
SLACK_M = 1.0  # calibration: λ on states with at least this much room under optimal braking (task.slack)


# purposes of evaluation episodes; each (training seed, purpose) gets its own reset seeds
EPISODE_PURPOSES = {"eval": 1, "final": 2, "calibrate-fit": 3, "calibrate-test": 4}


def episode_seeds(seed: int, purpose: str, episodes: int) -> list[int]:
    """Reset seeds of a run's evaluation episodes: 32-bit values hashed from (training seed, purpose) by numpy's
    SeedSequence, so different training seeds and the two purposes (periodic ``eval``, ``final`` evaluation)
    never share evaluation starts, and the first k seeds do not depend on how many episodes are asked for.
    (Contiguous ranges seed + offset + i overlapped: training seeds 0-4 shared 16 of 20 evaluation starts.)"""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(EPISODE_PURPOSES[purpose],))
    return [int(x) for x in ss.generate_state(episodes, dtype=np.uint32)]


@dataclass
class Episode:
    """One evaluation episode: totals, and with ``record`` the visited states and per-step costs."""

    ret: float = 0.0
    cost: float = 0.0
    length: int = 0
    violating_steps: int = 0
    feasible_start: bool | None = None
    truncated: bool = False  # ended by the time limit (the future after it is unknown), not by termination
    part_violating_steps: np.ndarray | None = None  # (M,) steps with each named cost > 0 (constraint.costs)
    states: list[np.ndarray] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    part_costs: list[np.ndarray] = field(default_factory=list)  # with record: each step's named costs (M,)

    def count_parts(self, parts: np.ndarray) -> None:
        """Count one step's named costs (``info["cost_parts"]``) that are above 0."""
        violating = np.asarray(parts) > 0.0
        self.part_violating_steps = violating.astype(int) if self.part_violating_steps is None else \
            self.part_violating_steps + violating


def rollout_members(envs: Sequence[gym.Env], policy: Callable[[np.ndarray], np.ndarray],
                    seeds: Sequence[Sequence[int]], record: bool = False) -> list[list[Episode]]:
    """Episodes of S agents at once: environment k plays one episode per reset seed in ``seeds[k]``, one after the
    other, while all S step in lockstep. ``policy`` maps the S current observations (S, obs_dim) to S actions
    (S, act_dim) in one batched call (rows of members that have finished are computed and ignored). With
    ``record``, every episode keeps its states and per-step costs (for :func:`monte_carlo_calibration_from`)."""
    n = len(envs)
    out: list[list[Episode]] = [[] for _ in range(n)]
    next_seed = [0] * n
    obs: list[np.ndarray] = [np.zeros(envs[k].observation_space.shape, dtype=np.float32) for k in range(n)]
    current: list[Episode | None] = [None] * n

    def start(k: int) -> None:
        o, info = envs[k].reset(seed=int(seeds[k][next_seed[k]]))
        next_seed[k] += 1
        obs[k] = np.asarray(o, dtype=np.float32)
        current[k] = Episode(feasible_start=info.get("feasible"))

    lockstep = Lockstep.of(envs)  # built-in tasks: every environment's step as one array operation
    active = [k for k in range(n) if len(seeds[k])]
    for k in active:
        start(k)
    while active:
        actions = policy(np.stack(obs))
        stepped = (lockstep.step(actions[active], active) if lockstep is not None and lockstep.ready()
                   else None)
        still = []
        for i, k in enumerate(active):
            ep = current[k]
            if record:
                ep.states.append(obs[k])
            if stepped is None:
                o, rew, terminated, truncated, info = envs[k].step(actions[k])
                cost = float(info["cost"])
                if PARTS in info:
                    ep.count_parts(info[PARTS])
                    if record:
                        ep.part_costs.append(np.asarray(info[PARTS], dtype=np.float64))
            else:
                o, rew, terminated, truncated = (stepped.obs[i], stepped.reward[i], stepped.terminated[i],
                                                 stepped.truncated[i])
                cost = float(stepped.cost[i])
            ep.ret += float(rew)
            ep.cost += cost
            ep.violating_steps += cost > 0.0
            ep.length += 1
            if record:
                ep.costs.append(cost)
            obs[k] = np.asarray(o, dtype=np.float32)
            if terminated or truncated:
                ep.truncated = bool(truncated and not terminated)
                out[k].append(ep)
                if next_seed[k] < len(seeds[k]):
                    start(k)
                else:
                    continue
            still.append(k)
        active = still
    return out


def summarize_episodes(episodes: Sequence[Episode], names: Sequence[str] = ()) -> dict[str, float]:
    """The mean return, mean episode cost (raw environment cost), step violation rate (fraction of steps with
    cost > 0), episode violation probability (episodes with any cost), and, where the environment reports
    ``info["feasible"]`` at reset, the violation probability of the episodes that started in a feasible state. With
    ``names`` (constraint.costs), also the step violation rate and episode violation probability of each named
    cost, as ``step_violation_rate[name]`` and ``episode_violation_prob[name]``."""
    returns = [ep.ret for ep in episodes]
    lengths = [ep.length for ep in episodes]
    violated = [ep.violating_steps > 0 for ep in episodes]
    out = {
        "return": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "cost": float(np.mean([ep.cost for ep in episodes])),
        "length": float(np.mean(lengths)),
        "step_violation_rate": sum(ep.violating_steps for ep in episodes) / max(1, sum(lengths)),
        "episode_violation_prob": float(np.mean(violated)),
    }
    known = [(ep.feasible_start, v) for ep, v in zip(episodes, violated, strict=True) if ep.feasible_start is not None]
    if known:
        feas = [v for f, v in known if f]
        out["feasible_starts"] = float(len(feas))
        out["feasible_start_violation_prob"] = float(np.mean(feas)) if feas else float("nan")
    parts = [ep.part_violating_steps for ep in episodes]
    if names and all(p is not None for p in parts):
        steps = np.sum(parts, axis=0)
        for i, name in enumerate(names):
            out[f"step_violation_rate[{name}]"] = float(steps[i]) / max(1, sum(lengths))
            out[f"episode_violation_prob[{name}]"] = float(np.mean([p[i] > 0 for p in parts]))
    return out


def run_episodes(env: gym.Env, policy: Policy, seeds: Sequence[int], names: Sequence[str] = ()) -> dict[str, float]:
    """Roll out ``policy`` (obs -> action) for one episode per reset seed in ``seeds``; see
    :func:`summarize_episodes` for what is returned."""
    return summarize_episodes(rollout_members([env], lambda batch: policy(batch[0])[None], [list(seeds)])[0], names)


def calibration(env: gym.Env, lam_fn: Callable[[np.ndarray], np.ndarray],
                cost_fn: Callable[[np.ndarray], np.ndarray] | None = None, n: int = 101) -> dict[str, float]:
    """AUROC and AUPRC of λ(s) (and of Q^c(s, π(s)) as a reference) for separating the exact infeasible set from
    the feasible set on an n×n grid of the task's plane (``task.plane_feasible``, exact on the plane's slice, or
    ``task.feasible``, exact everywhere). Empty if the task has neither."""
    task = env.unwrapped
    feasible = getattr(task, "plane_feasible", None) or getattr(task, "feasible", None)  # exact on the plane
    if feasible is None or not hasattr(task, "plane"):
        return {}
    _, _, obs = task.plane().grid(n)
    infeasible = ~np.asarray(feasible(obs), dtype=bool)
    lam = lam_fn(obs)
    out = {"lambda_auroc": auroc(lam, infeasible), "lambda_auprc": auprc(lam, infeasible),
           "lambda_mean_feasible": float(lam[~infeasible].mean()),
           "lambda_mean_infeasible": float(lam[infeasible].mean()),
           "infeasible_fraction_of_grid": float(infeasible.mean())}
    slack = getattr(task, "plane_slack", None) or getattr(task, "slack", None)
    if slack is not None:  # states with at least SLACK_M metres to spare: λ should be ~0 there
        roomy = np.asarray(slack(obs)) >= SLACK_M
        if roomy.any():
            out.update(lambda_max_slack1=float(lam[roomy].max()),
                       lambda_q95_slack1=float(np.quantile(lam[roomy], 0.95)),
                       lambda_le1_share_slack1=float(np.mean(lam[roomy] <= 1.0)))
    if cost_fn is not None:
        cost = cost_fn(obs)
        out.update(cost_value_auroc=auroc(cost, infeasible), cost_value_auprc=auprc(cost, infeasible))
    return out


def calibration_per_constraint(env: gym.Env, lam_fn: Callable[[np.ndarray], np.ndarray],
                               cost_fn: Callable[[np.ndarray], np.ndarray], names: Sequence[str],
                               n: int = 101) -> dict[str, dict[str, float]]:
    """Per named constraint k: how well λ_k(s) (and Q^c_k(s, π(s))) separate constraint k's own exact infeasible set
    (``task.constraint_feasible(obs)[name]``) from its feasible set on an n×n grid of the task's plane. ``lam_fn`` and
    ``cost_fn`` map (N, obs) to (M, N). Empty where the task does not know each constraint's feasible set."""
    task = env.unwrapped
    if not hasattr(task, "constraint_feasible") or not hasattr(task, "plane"):
        return {}
    _, _, obs = task.plane().grid(n)
    truth, lam, cost = task.constraint_feasible(obs), lam_fn(obs), cost_fn(obs)
    out = {}
    for k, name in enumerate(names):
        if name not in truth:
            continue
        infeasible = ~np.asarray(truth[name], dtype=bool)
        out[name] = {"lambda_auroc": auroc(lam[k], infeasible), "lambda_auprc": auprc(lam[k], infeasible),
                     "cost_value_auroc": auroc(cost[k], infeasible),
                     "infeasible_fraction_of_grid": float(infeasible.mean())}
    return out


def labelled_states(episodes: Sequence[Episode], horizon: int, part: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(states, y) from recorded episodes, y = 1[a cost > 0 within the next ``horizon`` transitions]: the labelling of
    both the training-time check (:func:`monte_carlo_calibration_from`, summary.json) and ``statewise calibrate``
    (:mod:`statewise.analysis.calibrate`). States with an unknown label are left out (censored): those of an episode
    ended by the time limit with fewer than ``horizon`` steps left and no violation in between, since a violation
    after the time limit cannot be seen. ``part``: label by that named cost alone (constraint.costs)."""
    obs, labels = [], []
    for ep in episodes:
        costs = ep.costs if part is None else [c[part] for c in ep.part_costs]
        y = violation_within(costs, horizon)
        known = np.ones(len(y), dtype=bool)
        if ep.truncated:  # the last steps before the time limit: a later violation would not have been seen
            left = len(y) - np.arange(len(y))
            known = y | (left >= horizon)
        obs.append(np.asarray(ep.states, dtype=np.float32)[known])
        labels.append(y[known])
    return np.concatenate(obs), np.concatenate(labels)


def reliability_entry(score: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, list]:
    """The reliability curve of one risk score as summary.json keeps it: per quantile bin of the score
    (:func:`statewise.metrics.reliability`, tied scores in one bin) its mean score, violation frequency and number of
    states; the counts let curves of several seeds be pooled (:func:`statewise.analysis.plots.pooled_reliability`)."""
    score = np.asarray(score, dtype=np.float64).ravel()
    mean_score, freq = reliability(score, y, bins)
    if len(score) == 0:
        return {"mean_score": [], "violation_freq": [], "states": []}
    count = np.bincount(reliability_bins(score, bins), minlength=bins)
    return {"mean_score": mean_score.tolist(), "violation_freq": freq.tolist(),
            "states": [int(c) for c in count if c > 0]}


def monte_carlo_calibration(env: gym.Env, policy: Policy, scores: dict[str, Callable[[np.ndarray], np.ndarray]],
                            seeds: Sequence[int], horizon: int = 50, bins: int = 10) -> dict[str, Any]:
    """Calibration without ground truth (docs/algorithm.md §7): roll out ``policy``, label every visited
    state with y_H = 1[a violation within the next ``horizon`` steps] (states whose label the time limit hides left
    out, :func:`labelled_states`, as in ``statewise calibrate``), and score each risk function (e.g. λ(s),
    Q^c(s, π(s))) by AUROC and by its reliability curve (violation frequency per quantile bin)."""
    episodes = rollout_members([env], lambda batch: policy(batch[0])[None], [list(seeds)], record=True)[0]
    return monte_carlo_calibration_from(episodes, scores, horizon, bins)


def monte_carlo_calibration_from(episodes: Sequence[Episode], scores: dict[str, Callable[[np.ndarray], np.ndarray]],
                                 horizon: int = 50, bins: int = 10) -> dict[str, Any]:
    """:func:`monte_carlo_calibration` on episodes already recorded by :func:`rollout_members`."""
    obs_all, y = labelled_states(episodes, horizon)
    out: dict[str, Any] = {"horizon": horizon, "states": int(len(y)),
                           "censored_states": int(sum(len(ep.costs) for ep in episodes) - len(y)),
                           "positive_fraction": float(y.mean()) if len(y) else float("nan"), "bins": bins}
    for name, fn in scores.items():
        score = np.asarray(fn(obs_all), dtype=np.float64) if len(y) else np.zeros(0)
        out[f"{name}_auroc"] = auroc(score, y)
        out[f"{name}_reliability"] = reliability_entry(score, y, bins)
    return out
