"""Environments whose output turns non-finite after a known number of steps, for tests/test_divergence.py.

Each is a 1-D walk that never terminates: x moves by 0.1·a, reward −x², cost 1[|x| > 0.5] and the signed constraint
h = |x| − 0.5 in ``info["constraint"]`` (at reset too, so the hjr and cbf signals accept it). One instance counts its
steps across resets; from step ``BAD_AFTER + 1`` of its life on, one quantity is NaN (or, for the reward, finite but
huge). With a time limit above
``BAD_AFTER`` the steps since the last reset (what CostSignalCheck reports) equal the trainer's step counter of a
run with one environment."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

BAD_AFTER = 120  # the first non-finite value comes at step 121 (before the first evaluation at step 150)
HUGE = 1e20  # a finite reward whose squared critic error, 1e40, overflows float32


class _Walk(gym.Env):
    bad = ""  # "cost" or "constraint": which output turns NaN; "reward": the reward turns huge (finite)

    def __init__(self):
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.lifetime = 0.0, 0

    def _obs(self):
        return np.array([self.x, abs(self.x)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.3, 0.3))
        return self._obs(), {"constraint": abs(self.x) - 0.5}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -2.0, 2.0))
        self.lifetime += 1
        reward, cost, h = -self.x * self.x, float(abs(self.x) > 0.5), abs(self.x) - 0.5
        if self.lifetime > BAD_AFTER:
            if self.bad == "reward":
                reward = HUGE
            elif self.bad == "cost":
                cost = float("nan")
            elif self.bad == "constraint":
                h = float("nan")
        return self._obs(), reward, False, False, {"cost": cost, "constraint": h}


class HugeRewardEnv(_Walk):
    """Finite in everything it reports: only the critic's squared error overflows (the loss, not the parameters:
    the clipped gradient stays finite)."""

    bad = "reward"


class NaNCostEnv(_Walk):
    bad = "cost"


class NaNConstraintEnv(_Walk):
    bad = "constraint"


for _name, _cls in (("HugeReward-v0", HugeRewardEnv), ("NaNCost-v0", NaNCostEnv),
                    ("NaNConstraint-v0", NaNConstraintEnv)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=500)
