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


class CrashingAtStartEnv(DoubleIntegratorEnv):
    """Its constructor raises: the work item itself fails (an environment that raises in ``step`` fails its run)."""

    def __init__(self, **kwargs):
        raise RuntimeError("the simulator crashed")


if "CrashingAtStart-v0" not in gym.registry:
    gym.register("CrashingAtStart-v0", entry_point=CrashingAtStartEnv, max_episode_steps=200)


class DyingEnv(DoubleIntegratorEnv):
    """Its worker process dies (SIGKILL, as the OS's out-of-memory killer would) a few steps into a run. Only ever in
    a worker process: in the process that runs the tests it raises instead."""

    def step(self, action):
        import multiprocessing
        import os
        import signal

        self._n = getattr(self, "_n", 0) + 1
        if self._n > 10:
            if multiprocessing.parent_process() is None:
                raise RuntimeError("Dying-v0 kills its process only in a worker")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


class NaNRewardEnv(DoubleIntegratorEnv):
    """Its rewards turn NaN after 80 steps: a run on it diverges (and fails) at its next log."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._n = getattr(self, "_n", 0) + 1
        return obs, float("nan") if self._n > 80 else reward, terminated, truncated, info


if "Dying-v0" not in gym.registry:
    gym.register("Dying-v0", entry_point=DyingEnv, max_episode_steps=200)
if "NaNReward-v0" not in gym.registry:
    gym.register("NaNReward-v0", entry_point=NaNRewardEnv, max_episode_steps=200)
