"""The training loop as an object: collect, update, log, evaluate, checkpoint, finish (docs/algorithm.md §3).

:class:`Trainer` trains a population of S members (one per seed; a single run is a population of one) with one
batched :class:`statewise.method.sac.SAC`. Its state is explicit: :class:`LoopState` (the shared counters) and one
:class:`MemberStats` per member (running statistics), plus each observer's own (:mod:`statewise.run.diagnostics`).
A resume file holds exactly these objects, with the member's slice of the agent, the buffer, the environments and
the random streams (:meth:`Trainer.snapshot`, :meth:`Trainer.restore`).

One pass of :meth:`Trainer.step`::

    act → collect (finiteness checks) → store → observers.on_step → update (due updates) → log → evaluate → checkpoint
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from statewise.config import Config
from statewise.envs.adapters import EnvStepError, raised_by
from statewise.envs.perturb import perturbed
from statewise.errors import CheckpointError, ConfigError, EnvError
from statewise.method.buffer import ReplayBuffer
from statewise.method.sac import SAC, planned_updates, stream_seed
from statewise.run import resume as resume_io
from statewise.run import runio
from statewise.run.collect import Collector, LockstepCollectors, Transitions, make_collector
from statewise.run.diagnostics import Observer, make_observers
from statewise.run.evaluate import (
    calibration,
    calibration_per_constraint,
    check_cost_signal,
    episode_seeds,
    monte_carlo_calibration_from,
    rollout_members,
    summarize_episodes,
    task_env,
)
from statewise.run.logger import RunLogger

# metrics.csv: the loop's own columns, then SAC.stat_names(), then the observers' columns (the λ probe's)
TRAIN_LOG_FIELDS = ("time_s", "env_steps_per_s", "updates_per_s", "episode_return", "episode_cost",
                    "train_violation_ratio", "cumulative_violations")
EPISODE_WINDOW = 10  # episode_return / episode_cost in metrics.csv average the last this many episodes


@dataclass
class LoopState:
    """The loop's counters, shared by every member (saved whole in each resume file)."""

    t: int = 0  # transitions collected per member (environment steps over its environments)
    updates_done: int = 0  # gradient updates due so far (sac.update_ratio accumulates fractions)
    window_steps: int = 0  # transitions since the last row of metrics.csv
    warmup_steps: int = 0  # transitions collected with random warm-up actions
    last_log_step: int = 0
    last_log_updates: int = 0
    elapsed_s: float = 0.0  # wall time before this process (a resumed run's earlier processes)


@dataclass
class MemberStats:
    """One member's running statistics (saved whole in its resume file)."""

    ep_ret: np.ndarray  # return and cost of the episodes in progress, one entry per environment
    ep_cost: np.ndarray
    ep_returns: deque = field(default_factory=lambda: deque(maxlen=EPISODE_WINDOW))  # the last finished episodes
    ep_costs: deque = field(default_factory=lambda: deque(maxlen=EPISODE_WINDOW))
    window_violations: int = 0  # transitions with cost > 0 since the last log
    total_violations: int = 0  # ... up to the last log
    warmup_violations: int = 0  # ... during the random warm-up
    # the same three counts per named cost (constraint.costs; empty without): window, up to the last log, warm-up
    part_violations: list[list[int]] = field(default_factory=list)
    last_eval: dict[str, float] = field(default_factory=dict)
    checkpoint_step: int | None = None  # step of the last checkpoint written

    def __post_init__(self) -> None:
        self.ep_returns = deque(self.ep_returns, maxlen=EPISODE_WINDOW)
        self.ep_costs = deque(self.ep_costs, maxlen=EPISODE_WINDOW)

    def record(self, st: Transitions, warmup: bool) -> None:
        """Add one collection step: episode sums, violations, finished episodes."""
        self.ep_ret += st.reward
        self.ep_cost += st.cost
        violations = int(np.count_nonzero(st.cost > 0.0))
        self.window_violations += violations
        if warmup:  # random warm-up actions: counted apart, so the learners' ratio excludes them
            self.warmup_violations += violations
        if st.cost_parts is not None:
            self._record_parts(np.count_nonzero(st.cost_parts > 0.0, axis=0), warmup)
        for i in np.flatnonzero(st.done):
            self.ep_returns.append(float(self.ep_ret[i]))
            self.ep_costs.append(float(self.ep_cost[i]))
            self.ep_ret[i] = self.ep_cost[i] = 0.0

    def _record_parts(self, violations: np.ndarray, warmup: bool) -> None:
        if not self.part_violations:
            self.part_violations = [[0] * len(violations) for _ in range(3)]
        window, _, warm = self.part_violations
        for i, v in enumerate(violations.tolist()):
            window[i] += v
            if warmup:
                warm[i] += v

    def close_window(self) -> None:
        """A log row was written: the window's violations move to the totals."""
        self.total_violations += self.window_violations
        self.window_violations = 0
        if self.part_violations:
            window, total, _ = self.part_violations
            for i, v in enumerate(window):
                total[i] += v
                window[i] = 0

    def saved(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(ep_returns=list(self.ep_returns), ep_costs=list(self.ep_costs))
        return out


@dataclass
class Member:
    """What one member owns outside the batched agent: its config, files, environments and statistics."""

    cfg: Config
    run_dir: Path
    collector: Collector
    eval_env: Any
    stats: MemberStats
    logger: RunLogger | None = None
    failure: dict[str, Any] | None = None  # set once, when the run diverges (Trainer.fail)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.failure is None


class Progress:
    """The progress bar on stderr, updated every 100 steps."""

    def __init__(self, cfg: Config, members: list[Member], start: int):
        desc = f"{cfg.label} {cfg.env.split('/')[-1]} s{','.join(str(m.cfg.seed) for m in members)}"
        self.bar = tqdm(total=cfg.steps, disable=not cfg.progress, unit="step", dynamic_ncols=True, mininterval=0.5,
                        desc=desc, initial=start)
        self.pending = 0
        self.last_row: dict[str, float] = {}

    def advance(self, n: int, done: bool) -> None:
        self.pending += n
        if self.pending >= 100 or done:
            self.bar.update(self.pending)
            self.pending = 0

    def show(self, last_eval: dict[str, float], row: dict[str, float] | None = None) -> None:
        self.last_row = row if row is not None else self.last_row
        out = {}
        if "episode_return" in self.last_row:
            out.update(ret=f"{self.last_row['episode_return']:.2f}", cost=f"{self.last_row['episode_cost']:.1f}")
        if "lam_probe_mean" in self.last_row:
            out["lam"] = f"{self.last_row['lam_probe_mean']:.3f}"
        if last_eval:
            out.update(eval_ret=f"{last_eval['return']:.2f}", eval_cost=f"{last_eval['cost']:.1f}")
        self.bar.set_postfix(out, refresh=False)

    def close(self) -> None:
        self.bar.close()


def training_env(cfg: Config) -> Callable[[], Any]:
    """What builds one training environment: the task, with the perturbation test's extra cost when it is on."""
    make = functools.partial(task_env, cfg)
    p = cfg.perturbation
    if p.steps == 0:
        return make
    return functools.partial(perturbed, make, p.center, p.radius, p.start, p.steps, p.cost, cfg.num_envs)


def crossed(prev: int, t: int, mark: int, every: bool = False) -> bool:
    """Whether the step counter passed ``mark`` (or, with ``every``, a multiple of it) going from prev to t."""
    return t // mark > prev // mark if every else prev < mark <= t


class Trainer:
    """Trains the members ``configs`` describe (validated; they differ only in seed and run_dir), writing one run
    directory each; ``resumed`` continues them from their resume states (:func:`statewise.run.resume.load_common`).

    Use as a context manager: environments and logs are closed on any exit. :meth:`run` returns the summaries."""

    def __init__(self, configs: list[Config], run_dirs: list[Path], resumed: list[dict[str, Any]] | None = None):
        self.configs, self.run_dirs, self.resumed = configs, run_dirs, resumed
        self.cfg = configs[0]  # the shared settings
        self.device = torch.device(self.cfg.device)
        self.cleanup = contextlib.ExitStack()
        self.loop = LoopState()
        self.members: list[Member] = []
        self.observers: list[Observer] = []
        self.failed: list[int] = []  # members that diverged (their slices keep computing; nothing of theirs is used)
        self.obs: np.ndarray | None = None  # (S, N, obs): what each member's environments act on next
        self.lockstep: LockstepCollectors | None = None  # the members' environments stepped at once, where possible
        self.start_time = self.last_log_time = self.last_resume_time = time.perf_counter()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup.close()

    # ------------------------------------------------------------------ set-up
    def open_env(self, cfg: Config) -> Any:
        env = task_env(cfg)
        self.cleanup.callback(env.close)
        return env

    def open(self) -> Trainer:
        """Environments, agent, buffer and observers; then the run directories (new, or restored for a resume).
        Every check that can refuse the run happens before the first file is written."""
        cfg = self.cfg
        for c, run_dir in zip(self.configs, self.run_dirs, strict=True):
            eval_env = self.open_env(c)
            check_cost_signal(eval_env, c.seed, c.constraint.signal if c.constrained else None)  # EnvError, early
            collector = make_collector(training_env(c), c.num_envs, c.vector_mode)
            self.cleanup.callback(collector.close)
            stats = MemberStats(np.zeros(c.num_envs), np.zeros(c.num_envs))
            self.members.append(Member(c, run_dir, collector, eval_env, stats))
        space = self.members[0].collector
        self.obs_dim, self.act_dim = space.single_observation_space.shape[0], space.single_action_space.shape[0]
        seeds = [c.seed for c in self.configs]
        self.agent = SAC.from_config(self.obs_dim, self.act_dim, cfg, seeds).to(self.device)
        note = self.agent.compile(cfg.compile, self.device, planned_updates(cfg))
        if note:
            print(f"statewise: {note}", file=sys.stderr)
        capacity = min(cfg.sac.buffer_size, cfg.steps + cfg.num_envs)
        self.buffer = ReplayBuffer(self.obs_dim, self.act_dim, capacity, self.device,
                                   [stream_seed(seed, "replay") for seed in seeds],
                                   self.agent.signal.shape if self.agent.signal is not None else ())
        self.observers = make_observers(self)
        if self.resumed is None:
            self._start_new_runs()
        else:
            self.restore(self.resumed)
        # after restore, which may replace the environments
        self.lockstep = LockstepCollectors.of([m.collector for m in self.members])
        return self

    def _start_new_runs(self) -> None:
        """New run directories (config.yaml with every value resolved, versions.json, logs) and first episodes."""
        for m in self.members:
            m.run_dir = runio.create_run_dir(m.run_dir)
            m.cfg.run_dir = str(m.run_dir)
            if m.cfg.sac.target_entropy == "auto":  # config.yaml holds no 'auto': the values the run used
                m.cfg.sac.target_entropy = float(-self.act_dim)
            m.cfg.compile = self.agent.compiled
            runio.atomic_write(m.run_dir / runio.CONFIG_FILE, m.cfg.to_yaml())
            runio.write_json(m.run_dir / runio.VERSIONS_FILE, runio.versions())
            fields = [*TRAIN_LOG_FIELDS, *self._part_fields(), *self.agent.stat_names(),
                      *(f for o in self.observers for f in o.log_fields)]
            m.logger = self._logger(m, train_fields=fields)
        self.obs = np.stack([m.collector.reset(m.cfg.seed) for m in self.members])  # (S, N, obs)
        for m in self.members:
            m.collector.single_action_space.seed(m.cfg.seed)

    def _logger(self, m: Member, **kwargs: Any) -> RunLogger:
        extra = {stream: name for o in self.observers for stream, name in o.csv_files.items()} or None
        logger = RunLogger(m.run_dir, runio.TRAIN_CSV, runio.EVAL_CSV, extra=extra, **kwargs)
        self.cleanup.callback(logger.close)
        return logger

    # ------------------------------------------------------------------ resume
    def snapshot(self, k: int) -> dict[str, Any]:
        """Member k's resume state at the end of the current step: the loop's state, the member's own, and its slice
        of the agent, the buffer, the environments and the random streams."""
        m, agent = self.members[k], self.agent
        module, optimizers = agent.member_state(k)
        loop = dataclasses.replace(self.loop, elapsed_s=time.perf_counter() - self.start_time)
        return {
            "step": self.loop.t, "loop": dataclasses.asdict(loop), "rng": resume_io.rng_state(),
            "member": {
                "agent": {"module": module, "optimizers": optimizers, "n_updates": agent.n_updates,
                          "generators": {p: gens[k].get_state() for p, gens in agent.generators.items()}},
                "buffer": self.buffer.member_state(k), "envs": m.collector.get_state(), "obs": self.obs[k].copy(),
                "stats": m.stats.saved(), "logs": m.logger.state(),
                "observers": {o.name: o.state(k) for o in self.observers},
            },
        }

    def restore(self, states: list[dict[str, Any]]) -> None:
        """The inverse of :meth:`snapshot`, for every member at once (the states share one step)."""
        parts = [st["member"] for st in states]
        for m, p in zip(self.members, parts, strict=True):
            self._check_fits(m, p)
        self.agent.load_member_states([(p["agent"]["module"], p["agent"]["optimizers"]) for p in parts])
        self.agent.n_updates = int(parts[0]["agent"]["n_updates"])
        self.loop = LoopState(**states[0]["loop"])
        self.start_time -= self.loop.elapsed_s
        rows = []
        for k, (m, p) in enumerate(zip(self.members, parts, strict=True)):
            for purpose, state in p["agent"]["generators"].items():
                self.agent.generators[purpose][k].set_state(state)
            self.buffer.load_member_state(k, p["buffer"])
            m.stats = MemberStats(**p["stats"])
            m.logger = self._logger(m, resume=(p["logs"], self.loop.t))
            rows.append(self._restore_envs(m, p))
        self.obs = np.stack(rows)
        for o in self.observers:
            o.restore([p["observers"][o.name] for p in parts], self.device)
        resume_io.set_rng_state(states[0]["rng"])

    def _check_fits(self, m: Member, part: dict[str, Any]) -> None:
        """One line, before anything is loaded, where member m's resume state does not fit the networks, buffer and
        environments its config.yaml builds (an edited config.yaml, or a resume file copied from another run)."""
        module, _ = self.agent.member_state(0)
        expected = {**{f"network {k}": tuple(v.shape) for k, v in module.items()},
                    **{f"buffer {f}": tuple(getattr(self.buffer, f).shape[2:]) for f in self.buffer.FIELDS},
                    "observations": (m.collector.num_envs, *m.collector.single_observation_space.shape)}
        found = {**{f"network {k}": tuple(v.shape) for k, v in part["agent"]["module"].items()},
                 **{f"buffer {f}": tuple(v.shape[1:]) for f, v in part["buffer"]["rows"].items()},
                 "observations": tuple(np.shape(part["obs"]))}
        for name in sorted(set(expected) | set(found)):
            if expected.get(name) != found.get(name):
                raise CheckpointError(
                    f"{m.run_dir}: the resume state does not fit its config.yaml ({name}: {_shape(found.get(name))} "
                    f"in the file, {_shape(expected.get(name))} for the config); was config.yaml edited, or the "
                    "resume file copied from another run?")

    def _restore_envs(self, m: Member, part: dict[str, Any]) -> np.ndarray:
        if part["envs"] is not None:
            m.collector.set_state(part["envs"])
            return part["obs"]
        # not picklable (async workers, some simulators): the environments start fresh episodes
        t = self.loop.t
        obs = m.collector.reset(int(np.random.SeedSequence(entropy=(m.cfg.seed, t)).generate_state(1)[0]))
        m.stats.ep_ret[:], m.stats.ep_cost[:] = 0.0, 0.0  # the interrupted episodes are not finished or counted
        m.collector.single_action_space.seed(m.cfg.seed + t)
        why = part.get("envs_note") or "could not be saved"
        tqdm.write(f"statewise: the environments of {m.run_dir} {why}; they start new episodes (this resume is "
                   "correct but not bit-identical)", file=sys.stderr)
        return obs

    def save_resume(self) -> None:
        for k, m in enumerate(self.members):
            if m.alive:
                resume_io.save(m.run_dir, self.snapshot(k))

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[dict[str, Any]]:
        """Train to ``steps`` and finish; on an error, runs that hold nothing worth keeping are removed."""
        try:
            self.progress = Progress(self.cfg, self.members, self.loop.t)
            self.last_resume_time = time.perf_counter()
            while True:
                try:
                    while self.loop.t < self.cfg.steps and len(self.failed) < len(self.members):
                        self.step()
                    self.progress.close()
                    return self.finish()
                except EnvStepError as exc:  # an evaluation environment raised (training ones fail in collect)
                    k = next((k for k, m in enumerate(self.members) if m.alive and raised_by(exc, m.eval_env)), None)
                    if k is None:
                        raise
                    self.fail(k, self.loop.t, "environment step", exc)  # the others go on from the next step
        except Exception:  # not on Ctrl-C: an interrupted run keeps its logs
            self.remove_unfinished()
            raise

    def step(self) -> None:
        """One collection step of every member's environments, and whatever falls due at its end."""
        cfg, loop = self.cfg, self.loop
        prev, t = loop.t, loop.t + cfg.num_envs
        loop.t = t
        act = self.actions(t)
        steps = self.collect(act, t)
        self.store(act, steps, t)
        for o in self.observers:
            o.on_step(self, prev, t, steps)
        log_now = crossed(prev, t, cfg.log_every, every=True)
        stats = self.update(t, log_now)
        if log_now:
            self.log(t, stats)
        if crossed(prev, t, cfg.eval_every, every=True) or t >= cfg.steps:
            self.evaluate(t)
        due_steps = cfg.checkpoint_every and crossed(prev, t, cfg.checkpoint_every, every=True)
        due_time = (cfg.checkpoint_minutes
                    and time.perf_counter() - self.last_resume_time >= 60.0 * cfg.checkpoint_minutes)
        if (due_steps or due_time) and t < cfg.steps:
            self.checkpoint(t)
        self.progress.advance(cfg.num_envs, t >= cfg.steps)

    def act(self, batch: np.ndarray, deterministic: bool) -> np.ndarray:
        x = torch.as_tensor(np.asarray(batch, dtype=np.float32), device=self.device)
        act = self.agent.act(x, deterministic).cpu().numpy()
        if self.failed:  # a diverged member's (non-finite) actions never reach an environment
            act[self.failed] = 0.0
        return act

    def actions(self, t: int) -> np.ndarray:
        """Uniformly random during the warm-up, then the stochastic policy, (S, N, act)."""
        if t <= self.cfg.sac.start_steps:
            n = self.cfg.num_envs
            return np.stack([np.stack([m.collector.single_action_space.sample() for _ in range(n)])
                             for m in self.members])
        return self.act(self.obs, deterministic=False)

    def collect(self, act: np.ndarray, t: int) -> list[Transitions]:
        """Step every living member's environments (all at once where they allow it, :meth:`_lockstep_steps`); a
        member whose action or environment output is not finite fails here, and gets a placeholder step."""
        for k, m in enumerate(self.members):
            if m.alive and not np.isfinite(act[k]).all():
                self.fail(k, t, "action from the policy")
        living = [k for k, m in enumerate(self.members) if m.alive]
        together = self._lockstep_steps(act, living)
        steps = []
        for k, m in enumerate(self.members):
            st = None
            if m.alive:
                st = self._checked(k, together[k] if together else self._step_envs(k, act[k], t), t)
            if not m.alive:  # a placeholder step: the diverged member's environment is not stepped again
                zeros = np.zeros(self.cfg.num_envs)
                st = Transitions(next_obs=np.zeros_like(self.obs[k]), reward=zeros, cost=zeros, terminated=zeros > 0,
                                 done=zeros > 0, obs=np.zeros_like(self.obs[k]), h=zeros, h_next=zeros,
                                 cost_parts=self._no_parts())
            steps.append(st)
        return steps

    def _lockstep_steps(self, act: np.ndarray, living: list[int]) -> dict[int, Transitions] | None:
        """The living members' steps as one array operation (built-in tasks, one environment each), or None."""
        if self.lockstep is None or not living:
            return None
        steps = self.lockstep.step(act[living], living)
        return None if steps is None else dict(zip(living, steps, strict=True))

    def _step_envs(self, k: int, act: np.ndarray, t: int) -> Transitions | None:
        try:
            return self.members[k].collector.step(act)
        except EnvStepError as exc:  # the environment raised: a bug in it, whose traceback the user needs
            self.fail(k, t, "environment step", exc)
            return None
        except EnvError as exc:  # e.g. a non-finite cost in the middle of a run
            self.fail(k, t, f"environment output ({exc})")
            return None

    def _checked(self, k: int, st: Transitions | None, t: int) -> Transitions | None:
        """Member k's step, or None where it failed: non-finite observations, rewards or h fail the member."""
        if st is None:
            return None
        if not np.isfinite(st.next_obs).all() or not np.isfinite(st.obs).all():
            self.fail(k, t, "observation from the environment")
        elif not np.isfinite(st.reward).all():
            self.fail(k, t, "reward from the environment")
        elif self._needs_h and not (np.isfinite(st.h).all() and np.isfinite(st.h_next).all()):
            self.fail(k, t, "constraint h(s) from the environment (info['constraint'])")
        return st

    @property
    def _needs_h(self) -> bool:
        """Whether the constraint signal reads h(s) (hjr, cbf)."""
        return self.agent.signal is not None and self.agent.signal.needs_constraint

    def store(self, act: np.ndarray, steps: list[Transitions], t: int) -> None:
        """The step into the replay buffer (costs as the signal stores them) and into the running statistics."""
        s, signal = self.cfg.sac, self.agent.signal
        raw_cost = np.stack([st.cost_parts if signal is not None and signal.shape else st.cost for st in steps])
        h, h_next = ((np.stack([st.h for st in steps]), np.stack([st.h_next for st in steps])) if self._needs_h
                     else (None, None))
        self.buffer.add(self.obs, act, np.stack([st.reward for st in steps]) * s.reward_scale,
                        signal.transition_value(raw_cost, h, h_next) if signal else raw_cost,
                        np.stack([st.next_obs for st in steps]), np.stack([st.terminated for st in steps]))
        warmup = t <= s.start_steps
        self.loop.window_steps += self.cfg.num_envs
        if warmup:
            self.loop.warmup_steps += self.cfg.num_envs
        for m, st in zip(self.members, steps, strict=True):
            m.stats.record(st, warmup)
        self.obs = np.stack([st.obs for st in steps])

    def update(self, t: int, log_now: bool) -> dict[str, torch.Tensor]:
        """The gradient updates due by step t (per collected transition: N environments earn N times the updates);
        statistics from the last one when a log row is due."""
        s, stats = self.cfg.sac, {}
        if t <= s.start_steps:
            return stats
        due = math.floor((t - s.start_steps) * s.update_ratio + 1e-9)
        todo, self.loop.updates_done = due - self.loop.updates_done, due
        for k in range(todo):
            out = self.agent.update(self.buffer, log=log_now and k == todo - 1)
            if out:
                stats.update(out)
        return stats

    # ------------------------------------------------------------------ log, evaluate, checkpoint
    def log(self, t: int, stats: dict[str, torch.Tensor]) -> None:
        """One row of metrics.csv per living member; a member with a non-finite statistic, parameter or observed
        value fails here."""
        now, loop = time.perf_counter(), self.loop
        since = now - self.last_log_time
        shared = {"time_s": now - self.start_time, "env_steps_per_s": (t - loop.last_log_step) / since,
                  "updates_per_s": (self.agent.n_updates - loop.last_log_updates) / since}
        names = list(stats)
        values = torch.stack([stats[k].float() for k in names], 1).tolist() if names else [[]] * len(self.members)
        observed = [o.on_log(self, t) for o in self.observers]
        finite = self.agent.finite_members()  # networks, targets, α and λ: one host sync per log
        for k, m in enumerate(self.members):
            if not m.alive:
                continue
            row = self._train_row(m, shared, dict(zip(names, values[k], strict=True)))
            for rows in observed:
                row.update(rows[k])
            m.logger.log("train", t, row)
            self._check_row(k, t, row, names, finite[k], observed)
            if k == 0:
                self.progress.show(self.members[0].stats.last_eval, row)
        loop.window_steps = 0
        self.last_log_time, loop.last_log_step, loop.last_log_updates = now, t, self.agent.n_updates

    def _part_fields(self) -> list[str]:
        """metrics.csv's training violation ratio per named cost (constraint.costs), after the overall one."""
        return [f"train_violation_ratio[{name}]" for name in self.cfg.constraint.costs]

    def _train_row(self, m: Member, shared: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        """Member m's row of metrics.csv; the violations of the window since the last row move to the totals."""
        ms = m.stats
        row = {**shared,
               "episode_return": float(np.mean(ms.ep_returns)) if ms.ep_returns else float("nan"),
               "episode_cost": float(np.mean(ms.ep_costs)) if ms.ep_costs else float("nan"),
               "train_violation_ratio": ms.window_violations / self.loop.window_steps}
        if ms.part_violations:
            row.update({name: v / self.loop.window_steps
                        for name, v in zip(self._part_fields(), ms.part_violations[0], strict=True)})
        ms.close_window()
        return {**row, "cumulative_violations": float(ms.total_violations), **stats}

    def _check_row(self, k: int, t: int, row: dict[str, float], names: list[str], finite: bool,
                   observed: list[list[dict[str, float]]]) -> None:
        bad = [name for name in names if not math.isfinite(row[name])]
        if bad:
            self.fail(k, t, ", ".join(bad))
        elif not finite:
            self.fail(k, t, "network parameters")
        else:
            for o, rows in zip(self.observers, observed, strict=True):
                if not all(math.isfinite(v) for v in rows[k].values()):
                    self.fail(k, t, o.quantity)
                    break

    def evaluate_members(self, seeds: list[list[int]], record: bool = False) -> list[list[Any]]:
        """Deterministic episodes of every member at once, one batched policy call per step."""
        return rollout_members([m.eval_env for m in self.members],
                               lambda batch: self.act(batch[:, None], True)[:, 0], seeds, record)

    def evaluate(self, t: int) -> None:
        results = self.evaluate_members([self._eval_seeds(m) for m in self.members])
        for k, m in enumerate(self.members):
            if m.alive:
                m.stats.last_eval = summarize_episodes(results[k], self.cfg.constraint.costs)
                m.logger.log("eval", t, m.stats.last_eval)
        for o in self.observers:
            o.on_eval(self, t)
        self.progress.show(self.members[0].stats.last_eval)

    def _eval_seeds(self, m: Member) -> list[int]:
        return episode_seeds(m.cfg.seed, "eval", m.cfg.eval_episodes) if m.alive else []

    def checkpoint(self, t: int) -> None:
        """checkpoint.pt and resume.pt of every living member (never with non-finite parameters)."""
        finite = self.agent.finite_members()
        for k, m in enumerate(self.members):
            if m.alive and not finite[k]:
                self.fail(k, t, "network parameters")
            if m.alive:
                self.save_checkpoint(k, t)
                m.stats.checkpoint_step = t
        self.save_resume()
        self.last_resume_time = time.perf_counter()

    def save_checkpoint(self, k: int, step: int) -> None:
        """Member k's checkpoint: a population of one, loadable by :func:`statewise.load`."""
        module, optimizers = self.agent.member_state(k)
        meta = {"format": runio.CHECKPOINT_FORMAT, "step": step, "obs_dim": self.obs_dim, "act_dim": self.act_dim}
        runio.atomic_save({"meta": meta, "agent": module, "optimizers": optimizers},
                          self.members[k].run_dir / runio.CHECKPOINT_FILE)

    # ------------------------------------------------------------------ failure and the end
    def fail(self, k: int, t: int, quantity: str, error: EnvStepError | None = None) -> None:
        """Member k diverged at step t, or its environment raised ``error``: one line now (then the environment's
        traceback), a summary that says so, and no further steps or files."""
        m, cfg = self.members[k], self.cfg
        if not m.alive:
            return
        m.failure = {"step": t, "quantity": quantity}
        self.failed.append(k)
        if error is None:
            tqdm.write(f"statewise: run {m.run_dir} failed at step {t}: non-finite {quantity}", file=sys.stderr)
        else:
            m.failure["error"] = str(error)
            tqdm.write(f"statewise: run {m.run_dir} failed at step {t}: {error}; its traceback:\n"
                       f"{error.trace.rstrip()}", file=sys.stderr)
        m.summary = {"status": "failed", "failure": m.failure, "algo": cfg.algo, "label": cfg.label, "env": cfg.env,
                     "seed": m.cfg.seed, "steps": t, "num_envs": cfg.num_envs, "population": self.agent.members,
                     "last_checkpoint_step": m.stats.checkpoint_step}
        runio.write_json(m.run_dir / runio.SUMMARY_FILE, m.summary)

    def finish(self) -> list[dict[str, Any]]:
        """Final evaluation, checkpoint, probe.npz and summary.json of every living member."""
        t, wall = self.loop.t, time.perf_counter() - self.start_time
        finite = self.agent.finite_members()
        for k in range(len(self.members)):
            if not finite[k]:  # diverged since the last log
                self.fail(k, t, "network parameters")
        seeds = [episode_seeds(m.cfg.seed, "final", self.cfg.final_eval_episodes) if m.alive else []
                 for m in self.members]
        finals = self.evaluate_members(seeds, record=self.agent.multiplier is not None)
        for k, m in enumerate(self.members):
            if m.alive:
                m.summary = self._finish_member(k, finals[k], wall)
        return [m.summary for m in self.members]

    def _finish_member(self, k: int, episodes: list[Any], wall: float) -> dict[str, Any]:
        m, cfg, t = self.members[k], self.cfg, self.loop.t
        self.save_checkpoint(k, t)
        arrays, extra = {}, {}
        for o in self.observers:
            a, e = o.finish(self, k)
            arrays.update(a)
            extra.update(e)
        if arrays:
            runio.atomic_save(arrays, m.run_dir / runio.PROBE_FILE,
                              saver=lambda obj, fh: np.savez_compressed(fh, **obj))
        ms = m.stats
        summary = {
            "status": "ok", "algo": cfg.algo, "label": cfg.label, "env": cfg.env, "seed": m.cfg.seed, "steps": t,
            "num_envs": cfg.num_envs, "population": self.agent.members,
            "wall_time_s": wall, "env_steps_per_s": t / wall, "gradient_updates": self.agent.n_updates,
            "compiled": self.agent.compiled, "compile_s": self.agent.compile_seconds,
            # fraction of collected transitions with cost > 0 while the agent acted (after the random warm-up), and
            # over all transitions including the warm-up
            "train_violation_ratio": (ms.total_violations + ms.window_violations - ms.warmup_violations)
            / max(1, t - self.loop.warmup_steps),
            "train_violation_ratio_total": (ms.total_violations + ms.window_violations) / t,
            **self._part_summary(m, t),
            "final_eval": summarize_episodes(episodes, cfg.constraint.costs), **self._calibration(k, m, episodes),
            **extra,
        }
        runio.write_json(m.run_dir / runio.SUMMARY_FILE, summary)
        for name in (runio.RESUME_FILE, runio.RESUME_PREV_FILE):  # a finished run has nothing to resume
            (m.run_dir / name).unlink(missing_ok=True)
        return summary

    def _no_parts(self) -> np.ndarray | None:
        """A placeholder step's named costs: zeros, or None without constraint.costs."""
        return np.zeros((self.cfg.num_envs, len(self.cfg.constraint.costs))) if self.cfg.constraint.costs else None

    def _part_summary(self, m: Member, t: int) -> dict[str, Any]:
        """Per named cost: the training violation ratios after the warm-up and over all steps (none without)."""
        if not m.stats.part_violations:
            return {}
        window, total, warm = m.stats.part_violations
        names = self.cfg.constraint.costs
        after = max(1, t - self.loop.warmup_steps)
        return {"constraints": {name: {"train_violation_ratio": (total[i] + window[i] - warm[i]) / after,
                                       "train_violation_ratio_total": (total[i] + window[i]) / t}
                                for i, name in enumerate(names)}}

    def _calibration(self, k: int, m: Member, episodes: list[Any]) -> dict[str, Any]:
        """How well λ(s) (and Q^c(s, π(s))) separate infeasible states: on the task's plane and on the final
        evaluation's episodes (docs/algorithm.md §7)."""
        if self.agent.multiplier is None:
            return {"calibration": {}, "mc_calibration": {}}
        one = self.agent.member(k)
        lam, cost_value = _numpy_score(one, one.lam), _numpy_score(one, one.cost_value)
        out = {"calibration": calibration(m.eval_env, lam, cost_value),
               "mc_calibration": monte_carlo_calibration_from(episodes, {"lambda": lam, "cost_value": cost_value})}
        if self.cfg.constraint.costs:  # λ_k against constraint k's own infeasible set
            out["constraint_calibration"] = calibration_per_constraint(
                m.eval_env, _numpy_score(one, one.lam_k), _numpy_score(one, one.cost_value_k),
                self.cfg.constraint.costs)
        return out

    def remove_unfinished(self) -> None:
        """On an error inside the loop: a run directory that holds neither a checkpoint nor a summary has
        nothing worth keeping, so it goes (no half-written run is left to be mistaken for a result)."""
        for m in self.members:
            if m.logger is not None:
                m.logger.close()
            if m.stats.checkpoint_step is None and not m.summary and m.run_dir.is_dir():
                shutil.rmtree(m.run_dir, ignore_errors=True)


def _numpy_score(sac: SAC, fn: Any) -> Any:
    """A per-state score of a single agent (``sac.lam``, ``sac.cost_value``) as numpy in, numpy out."""
    device = next(sac.parameters()).device

    def score(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
        return fn(x[None] if x.ndim == 2 else x[None, None])[0].cpu().numpy()

    return score


def check_population(configs: list[Config]) -> None:
    """Members may differ only in seed and run_dir; seeds must be distinct (ConfigError, one line)."""
    member_keys = ("seed", "run_dir")
    shared = {k: v for k, v in configs[0].to_dict().items() if k not in member_keys}
    for cfg in configs[1:]:
        other = {k: v for k, v in cfg.to_dict().items() if k not in member_keys}
        if other != shared:
            diff = sorted(k for k in shared if shared[k] != other.get(k))
            raise ConfigError(f"members of a population may differ only in seed and run_dir, not in {', '.join(diff)}")
    seeds = [cfg.seed for cfg in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"population seeds must be distinct, got {seeds}")


def prepare_process(cfg: Config) -> None:
    """Process-wide settings of a training process: threads, the allocator, denormals, the global seeds."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    # denormal floats (tiny gradients late in training) make CPU kernels several times slower
    torch.set_flush_denormal(True)
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the OS (Linux only; a no-op elsewhere).

    An update allocates and frees tens of megabytes of activations; with glibc's defaults, blocks of this size are
    mapped fresh from the OS and page-faulted in on every update, which made elementwise kernels on a population's
    activations several times slower than their arithmetic (benchmarks/throughput.py). Memory in use then stays at
    its peak for the life of the process, which a training process reaches anyway."""
    import ctypes

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


def _shape(shape: tuple[int, ...] | None) -> str:
    return "absent" if shape is None else "[" + ", ".join(map(str, shape)) + "]"
