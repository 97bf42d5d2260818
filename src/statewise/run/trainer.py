"""The training loop: collect, update, log, evaluate, checkpoint (docs/algorithm.md §3)."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from statewise.run import runio
from statewise.analysis.agent import Agent
from statewise.method.buffer import ReplayBuffer
from statewise.run.collect import Collector, Transitions, make_collector
from statewise.config import Config
from statewise.run.value_bias import ValueBiasProbe
from statewise.errors import ConfigError, EnvError, RunDirError
from statewise.run.evaluate import (
    build_env, calibration, check_cost_signal, episode_seeds, monte_carlo_calibration_from, rollout_members,
    summarize_episodes)
from statewise.run.logger import RunLogger
from statewise.run.resume import rng_state as resume_rng_state
from statewise.run.resume import save as resume_save
from statewise.run.resume import set_rng_state as resume_rng
from statewise.method.sac import SAC, stream_seed

# metrics.csv: the loop's own columns, then SAC.stat_names(), then λ on the probe states (constrained runs)
TRAIN_LOG_FIELDS = ("time_s", "env_steps_per_s", "updates_per_s", "episode_return", "episode_cost",
                    "train_violation_ratio", "cumulative_violations")
PROBE_LOG_FIELDS = ("lam_probe_mean", "lam_probe_max", "lam_probe_q50", "lam_probe_q90")
LAMBDA_GRID_N = 41  # λ(s) snapshots on the task plane at every evaluation


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)  # RUN_DIR/plots/*.png (none when trained with plots=False)

    @property
    def failed(self) -> bool:
        """The run stopped early because something became non-finite (``summary["failure"]`` says what)."""
        return self.summary.get("status") == "failed"


def default_run_dir(cfg: Config) -> Path:
    env_name = cfg.env.split("/")[-1].split(":")[-1]
    return Path("runs") / env_name / f"{cfg.label}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def population_configs(config: Config, seeds: list[int], run_dir: str | Path | None = None) -> list[Config]:
    """One config per seed, identical otherwise. With ``run_dir``, member k writes ``run_dir/<label>-s<seed>`` (the
    names ``statewise bench`` gives); without, each gets its own default directory."""
    if not seeds:
        raise ConfigError("a population needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"population seeds must be distinct, got {seeds}")
    out = []
    for seed in seeds:
        cfg = copy.deepcopy(config)
        cfg.seed = int(seed)
        cfg.validate()
        cfg.run_dir = str(Path(run_dir) / f"{cfg.label}-s{seed}") if run_dir else ""
        out.append(cfg)
    return out


_MEMBER_KEYS = ("seed", "run_dir")


def train(config: Config | dict | str | Path, plots: bool = True) -> TrainResult:
    """Train one agent as described by ``config`` (a Config, a dict of keys, or a YAML path).

    Writes a new run directory (``config.run_dir``, or ``runs/<env>/<algo>-s<seed>-<time>``) with
    config.yaml, versions.json, metrics.csv, eval.csv, tb/ events, checkpoint.pt, probe.npz, summary.json and
    (unless ``plots=False``) plots/: the run directory ``statewise train`` writes. Raises a :class:`statewise.errors.StatewiseError` on bad input, before writing.
    A single run is a population of one (:func:`train_population`).
    """
    if isinstance(config, (str, Path)):
        cfg = Config.from_yaml(config)
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    else:
        cfg = copy.deepcopy(config)  # the caller's object is left as it was (validate resolves 'auto')
    return train_population([cfg], plots=plots)[0]


def resume(path: str | Path, progress: bool | None = None, plots: bool = True) -> list[TrainResult]:
    """Continue a killed run (``statewise train --resume``) from its newest resume state: ``path`` is a run directory,
    or a directory of runs trained together as a population (``--seeds``; runs that finished or failed are left as
    they are). On CPU the continued run writes exactly the files an uninterrupted run writes (timings aside)."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"nothing to resume: {path} is not a directory")
    if (path / runio.CONFIG_FILE).is_file():
        candidates = [path]
    else:
        candidates = sorted(d for d in path.iterdir()
                            if not runio.moved_aside(d) and (d / runio.CONFIG_FILE).is_file())
    todo = [d for d in candidates if not (d / runio.SUMMARY_FILE).is_file()]
    if not todo:
        raise RunDirError(f"nothing to resume in {path}: " + ("every run has finished (summary.json)" if candidates
                                                              else "no run directory (config.yaml) found"))
    return resume_runs(todo, progress=progress, plots=plots)


def resume_runs(run_dirs: list[Path], progress: bool | None = None, threads: int | None = None,
                plots: bool = True) -> list[TrainResult]:
    """Continue these runs as one population from the newest resume state they all have (see :func:`resume`)."""
    from statewise.run import resume as resume_io

    for d in run_dirs:
        resume_io.remove_temporaries(d)
    states = resume_io.load_common(run_dirs)
    configs = []
    for d in run_dirs:
        cfg = Config.from_yaml(d / runio.CONFIG_FILE)
        cfg.run_dir = str(d)
        if progress is not None:
            cfg.progress = progress
        if threads is not None:
            cfg.threads = threads
        configs.append(cfg)
    return train_population(configs, _resumed=states, plots=plots)


def train_population(configs: list[Config], _resumed: list[dict[str, Any]] | None = None,
                     plots: bool = True) -> list[TrainResult]:
    """Train S independent agents in one process, one batched update for all (``statewise train --seeds``).

    ``configs`` differ only in ``seed`` and ``run_dir`` (see :func:`population_configs`). Member k writes exactly the
    run directory that ``train(configs[k])`` would write, with identical files on CPU apart from timings: every
    network, optimiser state, multiplier, replay buffer and random stream has its own member slice. (Compiled, that
    holds between populations of two or more; a compiled population of one rounds differently: docs/algorithm.md
    §6b.) With ``plots`` each run directory gets its plots/ (learning curves, λ map), as from ``statewise train``.
    """
    configs = [copy.deepcopy(c) for c in configs]
    for cfg in configs:
        cfg.validate()
    first = configs[0]
    shared = {k: v for k, v in first.to_dict().items() if k not in _MEMBER_KEYS}
    for cfg in configs[1:]:
        other = {k: v for k, v in cfg.to_dict().items() if k not in _MEMBER_KEYS}
        if other != shared:
            diff = sorted(k for k in shared if shared[k] != other.get(k))
            raise ConfigError(f"members of a population may differ only in seed and run_dir, not in {', '.join(diff)}")
    seeds = [cfg.seed for cfg in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"population seeds must be distinct, got {seeds}")
    run_dirs = [Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg) for cfg in configs]
    if len(set(run_dirs)) != len(run_dirs):
        raise RunDirError("members of a population need distinct run directories")
    for run_dir in run_dirs:
        if _resumed is None and runio.exists(run_dir):
            raise RunDirError(f"run directory {run_dir} already exists; choose another --run-dir "
                              "(nothing was overwritten)")

    if first.threads:
        torch.set_num_threads(first.threads)
    keep_freed_memory()
    # denormal floats (tiny gradients late in training) make CPU kernels several times slower
    torch.set_flush_denormal(True)
    device = torch.device(first.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    torch.manual_seed(first.seed)
    np.random.seed(first.seed)

    with contextlib.ExitStack() as cleanup:  # closes what was opened, in reverse order, on any exit
        members: list[_Member] = []
        for cfg, run_dir in zip(configs, run_dirs):
            eval_env = build_env(cfg.env, cfg.max_episode_steps)
            cleanup.callback(eval_env.close)
            # fails loudly (EnvError) before any run directory is created
            check_cost_signal(eval_env, cfg.seed, cfg.constraint.signal if cfg.constrained else None)
            collector = make_collector(functools.partial(build_env, cfg.env, cfg.max_episode_steps), cfg.num_envs,
                                       cfg.vector_mode)
            cleanup.callback(collector.close)
            bias_probe = None
            if cfg.value_bias:
                probe_env = build_env(cfg.env, cfg.max_episode_steps)
                cleanup.callback(probe_env.close)
                bias_probe = ValueBiasProbe(probe_env, cfg.seed)  # EnvError (one line) before anything is written
            members.append(_Member(cfg, run_dir, collector, eval_env, bias_probe))
        obs_dim = members[0].collector.single_observation_space.shape[0]
        act_dim = members[0].collector.single_action_space.shape[0]

        agent = SAC(obs_dim, act_dim, first, seeds).to(device)
        note = agent.compile(first.compile, device)
        if note:
            print(f"statewise: {note}", file=sys.stderr)
        buffer = ReplayBuffer(obs_dim, act_dim, min(first.sac.buffer_size, first.steps + first.num_envs), device,
                              [stream_seed(seed, "replay") for seed in seeds])
        extra = {"value_bias": runio.VALUE_BIAS_CSV} if first.value_bias else None
        if _resumed is not None:
            _restore(agent, buffer, members, _resumed)
        for k, m in enumerate(members):
            if _resumed is None:
                m.run_dir = runio.create_run_dir(m.run_dir)
                m.cfg.run_dir = str(m.run_dir)
                # config.yaml holds no 'auto': the values the run used
                if m.cfg.sac.target_entropy == "auto":
                    m.cfg.sac.target_entropy = float(-act_dim)
                m.cfg.compile = agent.compiled
                runio.atomic_write(m.run_dir / runio.CONFIG_FILE, m.cfg.to_yaml())
                runio.write_json(m.run_dir / runio.VERSIONS_FILE, runio.versions())
                m.logger = RunLogger(m.run_dir, runio.TRAIN_CSV, runio.EVAL_CSV, extra=extra,
                                     train_fields=[*TRAIN_LOG_FIELDS, *agent.stat_names(),
                                                   *(PROBE_LOG_FIELDS if agent.constrained else ())])
            else:
                m.logger = RunLogger(m.run_dir, runio.TRAIN_CSV, runio.EVAL_CSV, extra=extra,
                                     resume=(_resumed[k]["member"]["logs"], _resumed[k]["step"]))
            cleanup.callback(m.logger.close)
        try:
            summaries = _loop(members, agent, buffer, device, obs_dim, act_dim, _resumed)
        except Exception:  # not on Ctrl-C: an interrupted run keeps its logs
            _remove_unfinished(members)
            raise
    results = [TrainResult(m.run_dir, summary) for m, summary in zip(members, summaries)]
    if plots:
        from statewise.analysis.plots import plot_runs

        for result in results:
            result.plots = plot_runs([result.run_dir], result.run_dir / "plots")
    return results


def _restore(agent: SAC, buffer: ReplayBuffer, members: list["_Member"], states: list[dict[str, Any]]) -> None:
    """Put every member's saved slice back into the batched agent and buffer (the inverse of ``save_resume``)."""
    parts = [st["member"] for st in states]
    agent.load_member_states([(p["module"], p["optimizers"]) for p in parts])
    for k, p in enumerate(parts):
        for purpose, state in p["generators"].items():
            agent.generators[purpose][k].set_state(state)
        buffer.load_member_state(k, p["buffer"])
        members[k].restore_stats(p["stats"])
    agent.n_updates = int(states[0]["loop"]["n_updates"])


def _remove_unfinished(members: list["_Member"]) -> None:
    """On an error inside the loop: a run directory that holds neither a checkpoint nor a summary has
    nothing worth keeping, so it goes (no half-written run is left to be mistaken for a result)."""
    import shutil

    for m in members:
        if m.logger is not None:
            m.logger.close()
        if m.checkpoint_step is None and not m.summary and m.run_dir.is_dir():
            shutil.rmtree(m.run_dir, ignore_errors=True)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the OS (Linux only; a no-op elsewhere).

    An update allocates and frees tens of megabytes of activations; with glibc's defaults, blocks of this size are
    mapped fresh from the OS and page-faulted in on every update, which made elementwise kernels on a population's
    activations several times slower than their arithmetic (benchmarks/throughput.py). Memory in use then stays at
    its peak for the life of the process, which a training process reaches anyway."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): leave the allocator alone
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_trim_threshold, 2**31 - 1)
    libc.mallopt(m_top_pad, 64 << 20)
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum: larger blocks are still mapped


@dataclass
class _Member:
    """What one member of a population owns outside the batched agent: its config, files, environments and
    running statistics."""

    cfg: Config
    run_dir: Path
    collector: Collector
    eval_env: Any
    bias_probe: ValueBiasProbe | None
    logger: RunLogger | None = None

    def __post_init__(self) -> None:
        n = self.cfg.num_envs
        self.ep_returns: deque[float] = deque(maxlen=10)
        self.ep_costs: deque[float] = deque(maxlen=10)
        self.ep_ret, self.ep_cost = np.zeros(n), np.zeros(n)
        self.window_violations = self.total_violations = self.warmup_violations = 0
        self.eval_seeds = episode_seeds(self.cfg.seed, "eval", self.cfg.eval_episodes)
        self.last_eval: dict[str, float] = {}
        self.last_bias: dict[str, float] = {}
        self.grid_history: list[np.ndarray] = []
        self.probe_history: list[np.ndarray] = []
        self.failure: dict[str, Any] | None = None  # set once, when the run diverges (``fail`` in the loop)
        self.checkpoint_step: int | None = None  # step of the last checkpoint written
        self.summary: dict[str, Any] = {}

    @property
    def alive(self) -> bool:
        return self.failure is None

    _STATS = ("ep_ret", "ep_cost", "window_violations", "total_violations", "warmup_violations", "last_eval",
              "last_bias", "grid_history", "probe_history", "checkpoint_step")

    def stats(self) -> dict[str, Any]:
        """The running statistics a resume needs (statewise.run.resume)."""
        out = {name: copy.deepcopy(getattr(self, name)) for name in self._STATS}
        out.update(ep_returns=list(self.ep_returns), ep_costs=list(self.ep_costs))
        return out

    def restore_stats(self, stats: dict[str, Any]) -> None:
        for name in self._STATS:
            setattr(self, name, stats[name])
        self.ep_returns.extend(stats["ep_returns"])
        self.ep_costs.extend(stats["ep_costs"])


def _loop(members: list[_Member], agent: SAC, buffer: ReplayBuffer, device: torch.device, obs_dim: int,
          act_dim: int, resumed: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    cfg = members[0].cfg  # the shared settings
    s = cfg.sac
    signal = agent.signal
    needs_h = signal is not None and signal.needs_constraint
    task = members[0].eval_env.unwrapped
    plane_obs = None
    if hasattr(task, "plane"):
        _, _, grid = task.plane().grid(LAMBDA_GRID_N)
        plane_obs = torch.as_tensor(grid, dtype=torch.float32, device=device).expand(agent.members, *grid.shape)
    probe_obs: torch.Tensor | None = None  # (S, P, obs)
    probe_steps: list[int] = []
    grid_steps: list[int] = []

    n = cfg.num_envs
    failed: list[int] = []  # members that diverged (their slices keep computing; nothing of theirs is used)
    window_steps = warmup_steps = 0
    last_row: dict[str, float] = {}
    last_log_time, last_log_step, last_updates = time.perf_counter(), 0, 0
    start_time = last_log_time

    t = updates_done = 0  # t counts collected transitions per member (env steps over its environments)
    if resumed is None:
        obs = np.stack([m.collector.reset(m.cfg.seed) for m in members])  # (S, N, obs)
        for m in members:
            m.collector.single_action_space.seed(m.cfg.seed)
    else:
        loop = resumed[0]["loop"]
        t, updates_done = loop["t"], loop["updates_done"]
        window_steps, warmup_steps = loop["window_steps"], loop["warmup_steps"]
        probe_steps, grid_steps = list(loop["probe_steps"]), list(loop["grid_steps"])
        last_log_step, last_updates = loop["last_log_step"], loop["n_updates"]
        start_time -= loop["elapsed_s"]
        rows = [state["member"]["obs"] for state in resumed]
        for k, (m, state) in enumerate(zip(members, resumed)):
            if state["member"]["envs"] is not None:
                m.collector.set_state(state["member"]["envs"])
            else:  # not picklable (async workers, some simulators): the environments start fresh episodes
                seed = int(np.random.SeedSequence(entropy=(m.cfg.seed, t)).generate_state(1)[0])
                rows[k] = m.collector.reset(seed)
                m.ep_ret[:], m.ep_cost[:] = 0.0, 0.0  # the interrupted episodes are not finished or counted
                m.collector.single_action_space.seed(m.cfg.seed + t)
                tqdm.write(f"statewise: the environments of {m.run_dir} could not be saved; they start new "
                           "episodes (this resume is correct but not bit-identical)", file=sys.stderr)
        obs = np.stack(rows)
        if resumed[0]["member"]["probe_obs"] is not None:
            probe_obs = torch.stack([torch.as_tensor(st["member"]["probe_obs"]) for st in resumed]).to(device)
        resume_rng(resumed[0]["rng"])
    last_resume_time = time.perf_counter()

    def save_resume(t: int) -> None:
        """Every member's resume.pt (statewise.run.resume) as things stand at the end of step t."""
        shared = {"t": t, "updates_done": updates_done, "window_steps": window_steps, "warmup_steps": warmup_steps,
                  "probe_steps": list(probe_steps), "grid_steps": list(grid_steps), "last_log_step": last_log_step,
                  "n_updates": agent.n_updates, "elapsed_s": time.perf_counter() - start_time}
        rng = resume_rng_state()
        for k, m in enumerate(members):
            if not m.alive:
                continue
            module, optimizers = agent.member_state(k)
            member = {
                "module": module, "optimizers": optimizers,
                "generators": {p: gens[k].get_state() for p, gens in agent.generators.items()},
                "buffer": buffer.member_state(k),
                "envs": m.collector.get_state(), "obs": obs[k].copy(),
                "probe_obs": None if probe_obs is None else probe_obs[k].cpu(),
                "stats": m.stats(), "logs": m.logger.state(),
            }
            resume_save(m.run_dir, {"step": t, "loop": shared, "rng": rng, "member": member})

    def act_batch(batch: np.ndarray, deterministic: bool) -> np.ndarray:
        x = torch.as_tensor(np.asarray(batch, dtype=np.float32), device=device)
        act = agent.act(x, deterministic).cpu().numpy()
        if failed:  # a diverged member's (non-finite) actions never reach an environment
            act[failed] = 0.0
        return act

    def fail(k: int, t: int, quantity: str) -> None:
        """Member k diverged at step t: one line now, a summary that says so, and no further steps or files."""
        m = members[k]
        if not m.alive:
            return
        m.failure = {"step": t, "quantity": quantity}
        failed.append(k)
        tqdm.write(f"statewise: run {m.run_dir} failed at step {t}: non-finite {quantity}", file=sys.stderr)
        m.summary = {"status": "failed", "failure": m.failure, "algo": cfg.algo, "label": cfg.label, "env": cfg.env,
                     "seed": m.cfg.seed, "steps": t, "num_envs": n, "population": agent.members,
                     "last_checkpoint_step": m.checkpoint_step}
        runio.write_json(m.run_dir / runio.SUMMARY_FILE, m.summary)

    def evaluate(seeds: list[list[int]], record: bool = False) -> list[list[Any]]:
        """Deterministic episodes of every member at once, one batched policy call per step."""
        return rollout_members([m.eval_env for m in members],
                               lambda batch: act_batch(batch[:, None], True)[:, 0], seeds, record)

    desc = f"{cfg.label} {cfg.env.split('/')[-1]} s{','.join(str(m.cfg.seed) for m in members)}"
    bar = tqdm(total=cfg.steps, disable=not cfg.progress, unit="step", dynamic_ncols=True, mininterval=0.5, desc=desc)
    pending_bar = 0
    while t < cfg.steps:
        prev, t = t, t + n
        if t <= s.start_steps:
            act = np.stack([np.stack([m.collector.single_action_space.sample() for _ in range(n)]) for m in members])
        else:
            act = act_batch(obs, deterministic=False)
        steps = []
        for k, m in enumerate(members):
            st = None
            if m.alive and not np.isfinite(act[k]).all():
                fail(k, t, "action from the policy")
            if m.alive:
                try:
                    st = m.collector.step(act[k])
                except EnvError as exc:  # e.g. a non-finite cost in the middle of a run
                    fail(k, t, f"environment output ({exc})")
                else:
                    if not np.isfinite(st.next_obs).all() or not np.isfinite(st.obs).all():
                        fail(k, t, "observation from the environment")
                    elif not np.isfinite(st.reward).all():
                        fail(k, t, "reward from the environment")
                    elif needs_h and not (np.isfinite(st.h).all() and np.isfinite(st.h_next).all()):
                        fail(k, t, "constraint h(s) from the environment (info['constraint'])")
            if not m.alive:  # a placeholder step: the diverged member's environment is not stepped again
                zeros = np.zeros(n)
                st = Transitions(next_obs=np.zeros_like(obs[k]), reward=zeros, cost=zeros, terminated=zeros > 0,
                                 done=zeros > 0, obs=np.zeros_like(obs[k]), h=zeros, h_next=zeros)
            steps.append(st)
        raw_cost = np.stack([st.cost for st in steps])
        h, h_next = ((np.stack([st.h for st in steps]), np.stack([st.h_next for st in steps])) if needs_h
                     else (None, None))  # only hjr and cbf read the constraint values
        buffer.add(obs, act, np.stack([st.reward for st in steps]) * s.reward_scale,
                   signal.transition_value(raw_cost, h, h_next) if signal else raw_cost,
                   np.stack([st.next_obs for st in steps]),
                   np.stack([st.terminated for st in steps]))
        window_steps += n
        if t <= s.start_steps:
            warmup_steps += n
        for m, st in zip(members, steps):
            m.ep_ret += st.reward
            m.ep_cost += st.cost
            violations = int(np.count_nonzero(st.cost > 0.0))
            m.window_violations += violations
            if t <= s.start_steps:  # random warm-up actions: counted apart, so the learners' ratio excludes them
                m.warmup_violations += violations
            for i in np.flatnonzero(st.done):
                m.ep_returns.append(float(m.ep_ret[i]))
                m.ep_costs.append(float(m.ep_cost[i]))
                m.ep_ret[i] = m.ep_cost[i] = 0.0
        obs = np.stack([st.obs for st in steps])

        if _crossed(prev, t, s.start_steps) and agent.multiplier is not None:  # distinct states (no duplicates)
            rows = []
            for k, m in enumerate(members):
                gen = torch.Generator(device=device).manual_seed(m.cfg.seed + 7)
                idx = torch.randperm(len(buffer), generator=gen, device=device)[: cfg.probe_size]
                rows.append(buffer.obs[k, idx])
            probe_obs = torch.stack(rows)

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
            shared_row = {"time_s": now - start_time, "env_steps_per_s": (t - last_log_step) / (now - last_log_time),
                          "updates_per_s": (agent.n_updates - last_updates) / (now - last_log_time)}
            names = list(stats)
            values = torch.stack([stats[k].float() for k in names], 1).tolist() if names else [[]] * len(members)
            lam_probe = quantiles = None
            if probe_obs is not None:
                lam_probe = agent.lam(probe_obs)  # (S, P)
                quantiles = torch.quantile(lam_probe, torch.tensor([0.5, 0.9], device=device), dim=1).T.tolist()
                lam_np = lam_probe.cpu().numpy()
                probe_steps.append(t)
            finite = agent.finite_members()  # networks, targets, α and λ: one host sync per log
            for k, m in enumerate(members):
                if not m.alive:
                    continue
                m.total_violations += m.window_violations
                row: dict[str, float] = {
                    **shared_row,
                    "episode_return": float(np.mean(m.ep_returns)) if m.ep_returns else float("nan"),
                    "episode_cost": float(np.mean(m.ep_costs)) if m.ep_costs else float("nan"),
                    "train_violation_ratio": m.window_violations / window_steps,
                    "cumulative_violations": float(m.total_violations),
                }
                row.update(zip(names, values[k]))
                if lam_probe is not None:
                    row.update(lam_probe_mean=float(lam_np[k].mean(dtype=np.float32)), lam_probe_max=float(lam_np[k].max()),
                               lam_probe_q50=quantiles[k][0], lam_probe_q90=quantiles[k][1])
                    m.probe_history.append(lam_np[k])
                m.logger.log("train", t, row)
                m.window_violations = 0
                bad = [name for name in names if not math.isfinite(row[name])]
                if bad:
                    fail(k, t, ", ".join(bad))
                elif not finite[k]:
                    fail(k, t, "network parameters")
                elif lam_probe is not None and not np.isfinite(lam_np[k]).all():
                    fail(k, t, "λ")
                if k == 0:
                    last_row = row
            window_steps = 0
            last_log_time, last_log_step, last_updates = now, t, agent.n_updates
            bar.set_postfix(_postfix(last_row, members[0].last_eval), refresh=False)

        if _crossed(prev, t, cfg.eval_every, every=True) or t >= cfg.steps:
            results = evaluate([m.eval_seeds if m.alive else [] for m in members])
            grid_lam = None
            if plane_obs is not None and agent.multiplier is not None:
                grid_lam = agent.lam(plane_obs).cpu().numpy()
                grid_steps.append(t)
            for k, m in enumerate(members):
                if not m.alive:
                    continue
                m.last_eval = summarize_episodes(results[k])
                if grid_lam is not None:
                    m.grid_history.append(grid_lam[k])
                m.logger.log("eval", t, m.last_eval)
                if m.bias_probe is not None and t > s.start_steps:
                    m.last_bias = m.bias_probe.measure(agent.member(k), buffer.obs[k, :len(buffer)], t)
                    m.logger.log("value_bias", t, m.last_bias)
            bar.set_postfix(_postfix(last_row, members[0].last_eval), refresh=False)

        due_steps = cfg.checkpoint_every and _crossed(prev, t, cfg.checkpoint_every, every=True)
        due_time = cfg.checkpoint_minutes and time.perf_counter() - last_resume_time >= 60.0 * cfg.checkpoint_minutes
        if (due_steps or due_time) and t < cfg.steps:
            finite = agent.finite_members()  # a checkpoint is never written with non-finite parameters
            for k, m in enumerate(members):
                if m.alive and not finite[k]:
                    fail(k, t, "network parameters")
                if m.alive:
                    save_checkpoint(m.run_dir, agent, k, t, obs_dim, act_dim)
                    m.checkpoint_step = t
            save_resume(t)
            last_resume_time = time.perf_counter()
        pending_bar += n
        if pending_bar >= 100 or t >= cfg.steps:
            bar.update(pending_bar)
            pending_bar = 0
        if len(failed) == len(members):
            break
    bar.close()
    wall = time.perf_counter() - start_time

    finite = agent.finite_members()
    for k in range(len(members)):
        if not finite[k]:  # diverged since the last log
            fail(k, t, "network parameters")
    final_seeds = [episode_seeds(m.cfg.seed, "final", cfg.final_eval_episodes) if m.alive else [] for m in members]
    finals = evaluate(final_seeds, record=agent.multiplier is not None)
    summaries = []
    for k, m in enumerate(members):
        if not m.alive:
            summaries.append(m.summary)
            continue
        save_checkpoint(m.run_dir, agent, k, t, obs_dim, act_dim)
        if probe_obs is not None:
            arrays = dict(obs=probe_obs[k].cpu().numpy(), steps=np.asarray(probe_steps),
                          lam=np.asarray(m.probe_history, dtype=np.float32))
            if m.grid_history:
                arrays.update(grid_steps=np.asarray(grid_steps), grid_lam=np.asarray(m.grid_history, dtype=np.float32))
            runio.atomic_save(arrays, m.run_dir / runio.PROBE_FILE,
                              saver=lambda obj, fh: np.savez_compressed(fh, **obj))
        final = summarize_episodes(finals[k])
        calib, mc_calib = {}, {}
        if agent.multiplier is not None:
            view = Agent(agent.member(k), m.cfg, m.run_dir)  # numpy-facing, exactly as statewise.load gives it
            calib = calibration(m.eval_env, view.multiplier, view.cost_value)
            scores = {"lambda": view.multiplier, "cost_value": view.cost_value}
            mc_calib = monte_carlo_calibration_from(finals[k], scores)
        summary = {
            "status": "ok", "algo": cfg.algo, "label": cfg.label, "env": cfg.env, "seed": m.cfg.seed, "steps": t, "num_envs": n,
            "population": agent.members,
            "wall_time_s": wall, "env_steps_per_s": t / wall, "gradient_updates": agent.n_updates,
            "compiled": agent.compiled, "compile_s": agent.compile_seconds,
            # fraction of collected transitions with cost > 0 while the agent acted (after the random warm-up), and
            # over all transitions including the warm-up
            "train_violation_ratio": (m.total_violations + m.window_violations - m.warmup_violations)
            / max(1, t - warmup_steps),
            "train_violation_ratio_total": (m.total_violations + m.window_violations) / t,
            "final_eval": final, "calibration": calib, "mc_calibration": mc_calib,
        }
        if m.last_bias:
            summary["value_bias"] = m.last_bias
        runio.write_json(m.run_dir / runio.SUMMARY_FILE, summary)
        for name in (runio.RESUME_FILE, runio.RESUME_PREV_FILE):  # a finished run has nothing to resume
            (m.run_dir / name).unlink(missing_ok=True)
        summaries.append(summary)
    return summaries


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


def save_checkpoint(run_dir: Path, agent: SAC, member: int, step: int, obs_dim: int, act_dim: int) -> None:
    """Member ``member``'s checkpoint: a population of one, loadable by :func:`statewise.load`."""
    module, optimizers = agent.member_state(member)
    meta = {"format": runio.CHECKPOINT_FORMAT, "step": step, "obs_dim": obs_dim, "act_dim": act_dim}
    ckpt = {"meta": meta, "agent": module, "optimizers": optimizers}
    runio.atomic_save(ckpt, run_dir / runio.CHECKPOINT_FILE)
