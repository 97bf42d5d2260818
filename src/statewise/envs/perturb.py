"""The perturbation test's environment side: extra cost in one small region for a window of training.

:class:`RegionCost` adds ``cost`` to ``info["cost"]`` of every transition that leaves a state within ``radius`` of
``center`` while the training step it ends lies in (start, start + steps]. The training step is counted in
transitions per member, as the trainer counts it: with N environments collecting at once, each environment's k-th
step ends training step k·N. The counter is part of the wrapper, so it is saved with the environment on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from statewise.errors import EnvError


class RegionCost(gym.Wrapper):
    def __init__(self, env: gym.Env, center: list[float], radius: float, start: int, steps: int, cost: float,
                 num_envs: int = 1):
        super().__init__(env)
        shape = env.observation_space.shape
        self.center = np.asarray(center, dtype=np.float64)
        if self.center.shape != shape:
            raise EnvError(f"perturbation.center has {self.center.size} values; the observations of this "
                           f"environment have shape {shape}")
        self.radius, self.start, self.end, self.cost = float(radius), int(start), int(start) + int(steps), cost
        self.num_envs = int(num_envs)
        self._steps = 0
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs, dtype=np.float64)
        return obs, info

    def inside(self, obs: np.ndarray) -> bool:
        return bool(np.linalg.norm(np.asarray(obs, dtype=np.float64) - self.center) < self.radius)

    def step(self, action: Any):
        self._steps += 1
        t = self._steps * self.num_envs  # the training step this transition ends
        hit = self._obs is not None and self.start < t <= self.end and self.inside(self._obs)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs = np.asarray(obs, dtype=np.float64)
        if hit:
            info = dict(info)
            info["cost"] = float(info.get("cost", 0.0)) + self.cost
        return obs, reward, terminated, truncated, info


def perturbed(make: Callable[[], gym.Env], center: list[float], radius: float, start: int, steps: int, cost: float,
              num_envs: int) -> gym.Env:
    """``make()`` wrapped in :class:`RegionCost` (a module-level function, so a ``functools.partial`` of it can be
    sent to worker processes)."""
    return RegionCost(make(), center, radius, start, steps, cost, num_envs)
