"""The training loop: collect, update, log, evaluate, checkpoint (docs/algorithm.md §3)."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from statewise import runio
from statewise.agent import Agent
from statewise.buffer import ReplayBuffer
from statewise.collect import Collector, make_collector
from statewise.config import Config
from statewise.diagnostics import ValueBiasProbe
from statewise.errors import ConfigError, RunDirError
from statewise.evaluate import (
    build_env, calibration, check_cost_signal, episode_seeds, monte_carlo_calibration, run_episodes)
from statewise.logger import RunLogger
from statewise.sac import SAC

LAMBDA_GRID_N = 41  # λ(s) snapshots on the task plane at every evaluation


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]


def default_run_dir(cfg: Config) -> Path:
    env_name = cfg.env.split("/")[-1].split(":")[-1]
    return Path("runs") / env_name / f"{cfg.label}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: Config | dict | str | Path) -> TrainResult:
    """Train one agent as described by ``config`` (a Config, a dict of keys, or a YAML path).

    Writes a new run directory (``config.run_dir``, or ``runs/<env>/<algo>-s<seed>-<time>``) with
    config.yaml, versions.json, metrics.csv, eval.csv, tb/ events, checkpoint.pt, probe.npz and
    summary.json. Raises a :class:`statewise.errors.StatewiseError` on bad input, before writing.
    """
    if isinstance(config, (str, Path)):
        cfg = Config.from_yaml(config)
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    else:
        cfg = copy.deepcopy(config)  # the caller's object is left as it was (validate resolves 'auto')
    cfg.validate()
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if run_dir.exists():
        raise RunDirError(f"run directory {run_dir} already exists; choose another --run-dir (nothing was overwritten)")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # denormal floats (tiny gradients late in training) make CPU kernels several times slower
    torch.set_flush_denormal(True)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    with contextlib.ExitStack() as cleanup:  # closes what was opened, in reverse order, on any exit
        eval_env = build_env(cfg.env, cfg.max_episode_steps)
        cleanup.callback(eval_env.close)
        check_cost_signal(eval_env, cfg.seed)  # fails loudly (EnvError) before the run directory is created
        collector = make_collector(functools.partial(build_env, cfg.env, cfg.max_episode_steps), cfg.num_envs,
                                   cfg.vector_mode)
        cleanup.callback(collector.close)
        bias_probe = None
        if cfg.value_bias:
            probe_env = build_env(cfg.env, cfg.max_episode_steps)
            cleanup.callback(probe_env.close)
            bias_probe = ValueBiasProbe(probe_env, cfg.seed)  # EnvError (one line) before anything is written
        obs_dim = collector.single_observation_space.shape[0]
        act_dim = collector.single_action_space.shape[0]

        agent = SAC(obs_dim, act_dim, cfg).to(device)
        buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.sac.buffer_size, cfg.steps + cfg.num_envs), device, cfg.seed)
        run_dir = runio.create_run_dir(run_dir)
        cfg.run_dir = str(run_dir)
        runio.atomic_write(run_dir / runio.CONFIG_FILE, cfg.to_yaml())
        runio.write_json(run_dir / runio.VERSIONS_FILE, runio.versions())
        logger = RunLogger(run_dir, runio.TRAIN_CSV, runio.EVAL_CSV,
                           extra={"value_bias": runio.VALUE_BIAS_CSV} if bias_probe else None)
        cleanup.callback(logger.close)
        summary = _loop(cfg, collector, eval_env, agent, buffer, logger, run_dir, device, obs_dim, act_dim,
                        bias_probe)
    return TrainResult(run_dir, summary)


def _loop(cfg: Config, collector: Collector, eval_env, agent: SAC, buffer: ReplayBuffer, logger: RunLogger,
          run_dir: Path, device: torch.device, obs_dim: int, act_dim: int,
          bias_probe: ValueBiasProbe | None = None) -> dict[str, Any]:
    s = cfg.sac
    signal = agent.signal
    task = eval_env.unwrapped
    plane_obs = None
    if hasattr(task, "plane"):
        _, _, grid = task.plane().grid(LAMBDA_GRID_N)
        plane_obs = torch.as_tensor(grid, dtype=torch.float32, device=device)
    probe_obs: torch.Tensor | None = None
    probe_history: list[np.ndarray] = []
    probe_steps: list[int] = []
    grid_history: list[np.ndarray] = []
    grid_steps: list[int] = []

    n = collector.num_envs
    ep_returns: deque[float] = deque(maxlen=10)
    ep_costs: deque[float] = deque(maxlen=10)
    window_steps = window_violations = 0
    total_violations = warmup_violations = warmup_steps = 0
    ep_ret, ep_cost = np.zeros(n), np.zeros(n)
    last_eval: dict[str, float] = {}
    last_bias: dict[str, float] = {}
    last_row: dict[str, float] = {}
    last_log_time, last_log_step, last_updates = time.perf_counter(), 0, 0
    start_time = last_log_time

    eval_seeds = episode_seeds(cfg.seed, "eval", cfg.eval_episodes)  # the same starts at every evaluation
    obs = collector.reset(cfg.seed)
    random_actions = collector.single_action_space
    random_actions.seed(cfg.seed)
    view = Agent(agent, cfg, run_dir)  # numpy-facing act / multiplier / cost_value, shared with statewise.load

    bar = tqdm(total=cfg.steps, disable=not cfg.progress, unit="step", dynamic_ncols=True, mininterval=0.5,
               desc=f"{cfg.label} {cfg.env.split('/')[-1]} s{cfg.seed}")
    pending_bar = 0
    t = updates_done = 0  # t counts collected transitions (env steps over all environments)
    while t < cfg.steps:
        prev, t = t, t + n
        if t <= s.start_steps:
            act = np.stack([random_actions.sample() for _ in range(n)])
        else:
            act = view.act(obs, deterministic=False)
        step = collector.step(act)
        cost = step.cost
        buffer.add(obs, act, step.reward * s.reward_scale, signal.train_cost(cost) if signal else cost,
                   step.next_obs, step.terminated)
        ep_ret += step.reward
        ep_cost += cost
        violations = int(np.count_nonzero(cost > 0.0))
        window_steps += n
        window_violations += violations
        if t <= s.start_steps:  # random warm-up actions: counted apart, so the learners' ratio excludes them
            warmup_steps += n
            warmup_violations += violations
        for i in np.flatnonzero(step.done):
            ep_returns.append(float(ep_ret[i]))
            ep_costs.append(float(ep_cost[i]))
            ep_ret[i] = ep_cost[i] = 0.0
        obs = step.obs

        if _crossed(prev, t, s.start_steps) and agent.multiplier is not None:  # distinct states (no duplicates)
            gen = torch.Generator(device=device).manual_seed(cfg.seed + 7)
            idx = torch.randperm(len(buffer), generator=gen, device=device)[: cfg.probe_size]
            probe_obs = buffer.obs[idx].clone()

        log_now = _crossed(prev, t, cfg.log_every, every=True)
        stats: dict[str, torch.Tensor] = {}
        if t > s.start_steps:
            # the update ratio is per collected transition: N environments earn N times the updates per step
            due = math.floor((t - s.start_steps) * s.update_ratio + 1e-9)
            todo, updates_done = due - updates_done, due
            for k in range(todo):
                out = agent.update(buffer, log=log_now and k == todo - 1)
                if out:
                    stats.update(out)

        if log_now:
            now = time.perf_counter()
            total_violations += window_violations
            row: dict[str, float] = {
                "time_s": now - start_time,
                "env_steps_per_s": (t - last_log_step) / (now - last_log_time),
                "updates_per_s": (agent.n_updates - last_updates) / (now - last_log_time),
                "episode_return": float(np.mean(ep_returns)) if ep_returns else float("nan"),
                "episode_cost": float(np.mean(ep_costs)) if ep_costs else float("nan"),
                "train_violation_ratio": window_violations / window_steps,
                "cumulative_violations": float(total_violations),
            }
            row.update({k: float(v) for k, v in stats.items()})
            if probe_obs is not None:
                lam_probe = agent.lam(probe_obs)
                q = torch.quantile(lam_probe, torch.tensor([0.5, 0.9], device=device))
                row.update(lam_probe_mean=float(lam_probe.mean()), lam_probe_max=float(lam_probe.max()),
                           lam_probe_q50=float(q[0]), lam_probe_q90=float(q[1]))
                probe_history.append(lam_probe.cpu().numpy())
                probe_steps.append(t)
            logger.log("train", t, row)
            window_steps = window_violations = 0
            last_log_time, last_log_step, last_updates = now, t, agent.n_updates
            last_row = row
            bar.set_postfix(_postfix(last_row, last_eval), refresh=False)

        if _crossed(prev, t, cfg.eval_every, every=True) or t >= cfg.steps:
            last_eval = run_episodes(eval_env, view.act, eval_seeds)
            if plane_obs is not None and agent.multiplier is not None:
                grid_history.append(agent.lam(plane_obs).cpu().numpy())
                grid_steps.append(t)
            logger.log("eval", t, last_eval)
            if bias_probe is not None and t > s.start_steps:
                last_bias = bias_probe.measure(agent, buffer, t)
                logger.log("value_bias", t, last_bias)
            bar.set_postfix(_postfix(last_row, last_eval), refresh=False)

        if cfg.checkpoint_every and _crossed(prev, t, cfg.checkpoint_every, every=True):
            save_checkpoint(run_dir, agent, t, obs_dim, act_dim)
        pending_bar += n
        if pending_bar >= 100 or t >= cfg.steps:
            bar.update(pending_bar)
            pending_bar = 0
    bar.close()
    wall = time.perf_counter() - start_time

    save_checkpoint(run_dir, agent, t, obs_dim, act_dim)
    if probe_obs is not None:
        arrays = dict(obs=probe_obs.cpu().numpy(), steps=np.asarray(probe_steps),
                      lam=np.asarray(probe_history, dtype=np.float32))
        if grid_history:
            arrays.update(grid_steps=np.asarray(grid_steps), grid_lam=np.asarray(grid_history, dtype=np.float32))
        runio.atomic_save(arrays, run_dir / runio.PROBE_FILE, saver=lambda obj, fh: np.savez_compressed(fh, **obj))

    final_seeds = episode_seeds(cfg.seed, "final", cfg.final_eval_episodes)
    final = run_episodes(eval_env, view.act, final_seeds)
    calib, mc_calib = {}, {}
    if agent.multiplier is not None:
        calib = calibration(eval_env, view.multiplier, view.cost_value)
        scores = {"lambda": view.multiplier, "cost_value": view.cost_value}
        mc_calib = monte_carlo_calibration(eval_env, view.act, scores, final_seeds)
    summary = {
        "algo": cfg.algo, "label": cfg.label, "env": cfg.env, "seed": cfg.seed, "steps": t, "num_envs": n,
        "wall_time_s": wall, "env_steps_per_s": t / wall, "gradient_updates": agent.n_updates,
        # fraction of collected transitions with cost > 0 while the agent acted (after the random warm-up), and
        # over all transitions including the warm-up
        "train_violation_ratio": (total_violations + window_violations - warmup_violations) / max(1, t - warmup_steps),
        "train_violation_ratio_total": (total_violations + window_violations) / t,
        "final_eval": final, "calibration": calib, "mc_calibration": mc_calib,
    }
    if last_bias:
        summary["value_bias"] = last_bias
    runio.write_json(run_dir / runio.SUMMARY_FILE, summary)
    return summary


def _crossed(prev: int, t: int, mark: int, every: bool = False) -> bool:
    """Whether the step counter passed ``mark`` (or, with ``every``, a multiple of it) going from prev to t."""
    return t // mark > prev // mark if every else prev < mark <= t


def _postfix(row: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
    out = {}
    if "episode_return" in row:
        out.update(ret=f"{row['episode_return']:.2f}", cost=f"{row['episode_cost']:.1f}")
    if "lam_probe_mean" in row:
        out["lam"] = f"{row['lam_probe_mean']:.3f}"
    if last_eval:
        out.update(eval_ret=f"{last_eval['return']:.2f}", eval_cost=f"{last_eval['cost']:.1f}")
    return out


def save_checkpoint(run_dir: Path, agent: SAC, step: int, obs_dim: int, act_dim: int) -> None:
    ckpt = {"meta": {"step": step, "obs_dim": obs_dim, "act_dim": act_dim},
            "agent": agent.state_dict(), "optimizers": agent.optimizer_states()}
    runio.atomic_save(ckpt, run_dir / runio.CHECKPOINT_FILE)
