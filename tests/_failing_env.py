"""An environment that raises in the middle of a run (a bug in a user's environment), for tests of how a grid
reports a work item that crashed."""

import gymnasium as gym

from statewise.envs.double_integrator import DoubleIntegratorEnv


class CrashingEnv(DoubleIntegratorEnv):
    def step(self, action):
        self._n = getattr(self, "_n", 0) + 1
        if self._n > 120:
            raise RuntimeError("the simulator crashed")
        return super().step(action)


if "Crashing-v0" not in gym.registry:
    gym.register("Crashing-v0", entry_point=CrashingEnv, max_episode_steps=200)
