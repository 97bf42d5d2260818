"""Diagnostics that watch a training run: observers of the :class:`statewise.run.trainer.Trainer`.

An observer sees the run at four moments and owns what it measures, its files and its share of the resume state:

* ``on_step(trainer, prev, t, steps)``: after each collection step, with its transitions (the λ probe draws its
  states when the warm-up ends; the violation runs are counted here);
* ``on_log(trainer, t)``: at each row of metrics.csv; returns one dict of extra columns per member (``log_fields``
  names them, in order, for the CSV header);
* ``on_eval(trainer, t)``: at each evaluation (the λ map on the task plane, the critics' value bias);
* ``finish(trainer, k)``: at the end, for member k: arrays for probe.npz and entries for summary.json;
* ``state(k)`` / ``restore(states)``: what member k's resume file keeps of it, and putting it back.

Observers are chosen once, by :func:`make_observers`, from the config and the task; the loop never asks which
diagnostics are on. A new study adds a class here and one line to :func:`make_observers`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from statewise.config import Config
from statewise.method.buffer import ReplayBuffer
from statewise.method.sac import SAC
from statewise.run import runio
from statewise.run.collect import Transitions
from statewise.run.value_bias import ValueBiasProbe

PROBE_LOG_FIELDS = ("lam_probe_mean", "lam_probe_max", "lam_probe_q50", "lam_probe_q90")
LAMBDA_GRID_N = 41  # λ(s) snapshots on the task plane at every evaluation, an n × n grid


class Trainer(Protocol):
    """What an observer reads of the trainer (:class:`statewise.run.trainer.Trainer` is one)."""

    cfg: Config
    agent: SAC
    buffer: ReplayBuffer
    device: torch.device
    members: list[Any]  # statewise.run.trainer.Member: cfg, eval_env, logger, alive

    def open_env(self, cfg: Config) -> Any: ...


class Observer:
    """The interface, with do-nothing defaults: a diagnostic overrides the moments it needs."""

    name = ""
    log_fields: tuple[str, ...] = ()  # extra metrics.csv columns returned by on_log
    quantity = ""  # what a non-finite value in its log columns means, for the failure message
    csv_files: dict[str, str] = {}  # extra log streams: stream -> file name in the run directory

    def on_step(self, trainer: Trainer, prev: int, t: int, steps: list[Transitions]) -> None:
        pass

    def on_log(self, trainer: Trainer, t: int) -> list[dict[str, float]]:
        return [{} for _ in trainer.members]

    def on_eval(self, trainer: Trainer, t: int) -> None:
        pass

    def finish(self, trainer: Trainer, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays for probe.npz, entries for summary.json) of member k."""
        return {}, {}

    def state(self, k: int) -> dict[str, Any]:
        return {}

    def restore(self, states: list[dict[str, Any]], device: torch.device) -> None:
        pass


class LambdaProbe(Observer):
    """λ on a fixed set of distinct replay states, drawn once when the warm-up ends: quantiles in metrics.csv at
    every log, the whole history in probe.npz (``obs``, ``steps``, ``lam``)."""

    name = "lambda_probe"
    log_fields = PROBE_LOG_FIELDS
    quantity = "λ"

    def __init__(self, seeds: list[int], size: int, start_steps: int):
        self.seeds, self.size, self.start_steps = seeds, size, start_steps
        self.obs: torch.Tensor | None = None  # (S, P, obs)
        self.steps: list[int] = []
        self.history: list[list[np.ndarray]] = [[] for _ in seeds]

    def on_step(self, trainer: Trainer, prev: int, t: int, steps: list[Transitions]) -> None:
        if not prev < self.start_steps <= t:
            return
        buffer, rows = trainer.buffer, []
        for k, seed in enumerate(self.seeds):
            gen = torch.Generator(device=trainer.device).manual_seed(seed + 7)
            idx = torch.randperm(len(buffer), generator=gen, device=trainer.device)[: self.size]
            rows.append(buffer.obs[k, idx])
        self.obs = torch.stack(rows)

    def on_log(self, trainer: Trainer, t: int) -> list[dict[str, float]]:
        if self.obs is None:
            return super().on_log(trainer, t)
        lam = trainer.agent.lam(self.obs)  # (S, P)
        quantiles = torch.quantile(lam, torch.tensor([0.5, 0.9], device=lam.device), dim=1).T.tolist()
        lam_np = lam.cpu().numpy()
        self.steps.append(t)
        rows = []
        for k, m in enumerate(trainer.members):
            if m.alive:
                self.history[k].append(lam_np[k])
            rows.append(dict(lam_probe_mean=float(lam_np[k].mean(dtype=np.float32)),
                             lam_probe_max=float(lam_np[k].max()),
                             lam_probe_q50=quantiles[k][0], lam_probe_q90=quantiles[k][1]))
        return rows

    def finish(self, trainer: Trainer, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.obs is None:
            return {}, {}
        return dict(obs=self.obs[k].cpu().numpy(), steps=np.asarray(self.steps),
                    lam=np.asarray(self.history[k], dtype=np.float32)), {}

    def state(self, k: int) -> dict[str, Any]:
        return {"obs": None if self.obs is None else self.obs[k].cpu(), "steps": list(self.steps),
                "history": list(self.history[k])}

    def restore(self, states: list[dict[str, Any]], device: torch.device) -> None:
        if states[0]["obs"] is not None:
            self.obs = torch.stack([torch.as_tensor(st["obs"]) for st in states]).to(device)
        self.steps = list(states[0]["steps"])
        self.history = [list(st["history"]) for st in states]


class LambdaPlane(Observer):
    """λ(s) on an n × n grid of the task's plane (tasks with ``plane()``) at every evaluation: probe.npz's
    ``grid_steps`` and ``grid_lam``, the λ-map snapshots that ``statewise plot`` draws."""

    name = "lambda_plane"

    def __init__(self, task: Any, members: int, device: torch.device, n: int = LAMBDA_GRID_N):
        _, _, grid = task.plane().grid(n)
        self.obs = torch.as_tensor(grid, dtype=torch.float32, device=device).expand(members, *grid.shape)
        self.steps: list[int] = []
        self.history: list[list[np.ndarray]] = [[] for _ in range(members)]

    def on_eval(self, trainer: Trainer, t: int) -> None:
        lam = trainer.agent.lam(self.obs).cpu().numpy()
        self.steps.append(t)
        for k, m in enumerate(trainer.members):
            if m.alive:
                self.history[k].append(lam[k])

    def finish(self, trainer: Trainer, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if not self.history[k]:
            return {}, {}
        return dict(grid_steps=np.asarray(self.steps), grid_lam=np.asarray(self.history[k], dtype=np.float32)), {}

    def state(self, k: int) -> dict[str, Any]:
        return {"steps": list(self.steps), "history": list(self.history[k])}

    def restore(self, states: list[dict[str, Any]], device: torch.device) -> None:
        self.steps = list(states[0]["steps"])
        self.history = [list(st["history"]) for st in states]


class ValueBias(Observer):
    """The critics against Monte-Carlo truth at every evaluation after the warm-up (value_bias.csv; the last row
    also in summary.json), every living member at once by one :class:`statewise.run.value_bias.ValueBiasProbe`."""

    name = "value_bias"
    csv_files = {"value_bias": runio.VALUE_BIAS_CSV}

    def __init__(self, probe: ValueBiasProbe, members: int, start_steps: int):
        self.probe, self.start_steps = probe, start_steps
        self.last: list[dict[str, float]] = [{} for _ in range(members)]

    def on_eval(self, trainer: Trainer, t: int) -> None:
        if t <= self.start_steps:
            return
        buffer = trainer.buffer
        alive = [m.alive for m in trainer.members]
        rows = self.probe.measure(trainer.agent, buffer.obs[:, :len(buffer)], t, alive)
        for k, m in enumerate(trainer.members):
            if alive[k]:
                self.last[k] = rows[k]
                m.logger.log("value_bias", t, rows[k])

    def finish(self, trainer: Trainer, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, ({"value_bias": self.last[k]} if self.last[k] else {})

    def state(self, k: int) -> dict[str, Any]:
        return {"last": dict(self.last[k])}

    def restore(self, states: list[dict[str, Any]], device: torch.device) -> None:
        self.last = [dict(st["last"]) for st in states]


class ViolationRuns(Observer):
    """Runs of consecutive violating training steps (cost > 0) in each environment after the random warm-up: the
    longest run, and the bursts (runs of at least ``burst`` steps) with the steps spent in them, in summary.json
    (``violation_runs``; docs/algorithm.md §7). A run still going at the end counts as it stands."""

    name = "violation_runs"
    BURST = 10

    def __init__(self, members: int, num_envs: int, start_steps: int):
        self.start_steps = start_steps
        self.current = np.zeros((members, num_envs), dtype=np.int64)  # length of the run in progress per environment
        self.totals = [{"longest": 0, "bursts": 0, "burst_steps": 0} for _ in range(members)]

    def on_step(self, trainer: Trainer, prev: int, t: int, steps: list[Transitions]) -> None:
        if t <= self.start_steps:
            return
        for k, (m, st) in enumerate(zip(trainer.members, steps, strict=True)):
            if not m.alive:
                continue
            hit = np.asarray(st.cost) > 0.0
            ended = ~hit & (self.current[k] > 0)
            for length in self.current[k][ended]:
                self._close(k, int(length))
            self.current[k] = np.where(hit, self.current[k] + 1, 0)

    def _close(self, k: int, length: int) -> None:
        """A run of ``length`` violating steps ended (the definition of :func:`statewise.metrics.violation_runs`)."""
        total = self.totals[k]
        total["longest"] = max(total["longest"], length)
        if length >= self.BURST:
            total["bursts"] += 1
            total["burst_steps"] += length

    def finish(self, trainer: Trainer, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        for length in self.current[k][self.current[k] > 0]:
            self._close(k, int(length))
        self.current[k] = 0
        return {}, {"violation_runs": {**self.totals[k], "burst_min_steps": self.BURST}}

    def state(self, k: int) -> dict[str, Any]:
        return {"current": self.current[k].tolist(), "totals": dict(self.totals[k])}

    def restore(self, states: list[dict[str, Any]], device: torch.device) -> None:
        self.current = np.array([st["current"] for st in states], dtype=np.int64)
        self.totals = [dict(st["totals"]) for st in states]


def make_observers(trainer: Trainer) -> list[Observer]:
    """The diagnostics this run has: violation runs always; the λ probe and the λ map where there is a multiplier
    (the map on tasks with a plane); the value-bias check where ``value_bias`` is set. Called before any file is
    written: a task that cannot serve a requested diagnostic fails here (EnvError, one line)."""
    cfg, agent = trainer.cfg, trainer.agent
    observers: list[Observer] = [ViolationRuns(agent.members, cfg.num_envs, cfg.sac.start_steps)]
    if agent.multiplier is not None:
        observers.append(LambdaProbe(agent.seeds, cfg.probe_size, cfg.sac.start_steps))
        task = trainer.members[0].eval_env.unwrapped
        if hasattr(task, "plane"):
            observers.append(LambdaPlane(task, agent.members, trainer.device))
    if cfg.value_bias:
        probe = ValueBiasProbe(trainer.open_env(cfg), [m.cfg.seed for m in trainer.members])
        observers.append(ValueBias(probe, agent.members, cfg.sac.start_steps))
    return observers
