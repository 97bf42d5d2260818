"""Tiny environments registered for tests/test_envs.py (imported through make_env's
``module:Name-v0`` form). Each one is a 1-D counter with a constant cost signal."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class _Counter(gym.Env):
    """Observation = number of steps since reset."""

    def __init__(self, cost: float = 0.5):
        self.cost = cost
        self.observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def _obs(self):
        return np.array([self.t], np.float32)


class ToyCostEnv(_Counter):
    """Reports its cost in info['cost'] (the statewise convention)."""

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, False, {"cost": self.cost}


class ToySafetyGymEnv(_Counter):
    """Safety-Gymnasium style: step returns (obs, reward, cost, terminated, truncated, info)."""

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.cost, False, False, {}


class ToyNoCostEnv(_Counter):
    """Reports no cost at all."""

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, False, {}


class ToyEarlyCostEnv(_Counter):
    """Costs 1 on each of the first ``early`` steps of its life (across resets), then 0."""

    early = 100

    def __init__(self):
        super().__init__()
        self.lifetime = 0

    def step(self, action):
        self.t += 1
        self.lifetime += 1
        return self._obs(), 1.0, False, False, {"cost": float(self.lifetime <= self.early)}


class ToyWrongShapeEnv(ToyCostEnv):
    """Its observations have 2 entries, its observation space says 1."""

    def _obs(self):
        return np.array([self.t, 0.0], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}


class ToyEmptyObsEnv(ToyCostEnv):
    """Its observation space has no dimension: Box of shape (0,)."""

    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Box(-np.inf, np.inf, (0,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def _obs(self):
        return np.zeros(0, np.float32)


class ToyEmptyActionEnv(ToyCostEnv):
    """Its action space has no dimension: Box of shape (0,)."""

    def __init__(self):
        super().__init__()
        self.action_space = spaces.Box(-1.0, 1.0, (0,), np.float32)


class ToyRaisingEnv(ToyCostEnv):
    """A bug in a user's environment: ``step`` raises on the ``fatal``-th step of its life (across resets)."""

    fatal = 90

    def __init__(self):
        super().__init__()
        self.lifetime = 0

    def step(self, action):
        self.lifetime += 1
        if self.lifetime == self.fatal:
            self._collide()
        return super().step(action)

    def _collide(self):
        raise ZeroDivisionError("the toy simulator divided by zero")


class ToyNaNCostLaterEnv(ToyCostEnv):
    """Reports a NaN cost from the 60th step of its life on (a fine first step, so set-up accepts it)."""

    def __init__(self):
        super().__init__()
        self.lifetime = 0

    def step(self, action):
        self.lifetime += 1
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {"cost": float("nan") if self.lifetime >= 60 else self.cost}


class ToyOutOfBoundsEnv(ToyCostEnv):
    """Observations beyond the bounds its space declares (gymnasium's env checker warns; statewise does not mind)."""

    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full(1, 5.0, np.float32), {}


_ENVS = {
    "ToyOutOfBounds-v0": ("ToyOutOfBoundsEnv", 9),
    "ToyEmptyObs-v0": ("ToyEmptyObsEnv", 9),
    "ToyEmptyAction-v0": ("ToyEmptyActionEnv", 9),
    "ToyRaising-v0": ("ToyRaisingEnv", 25),
    "ToyNaNCostLater-v0": ("ToyNaNCostLaterEnv", 25),
    "ToyWrongShape-v0": ("ToyWrongShapeEnv", None),
    "ToyEarlyCost-v0": ("ToyEarlyCostEnv", 50),
    "ToyCost-v0": ("ToyCostEnv", None),
    "ToySafetyGym-v0": ("ToySafetyGymEnv", 5),
    "ToyNoCost-v0": ("ToyNoCostEnv", None),
}
for _id, (_cls, _steps) in _ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_cls}", max_episode_steps=_steps)
