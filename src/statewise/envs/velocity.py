"""Velocity-constrained MuJoCo locomotion on current gymnasium (the ``statewise[mujoco]`` extra).

``statewise/<Robot>Velocity-v0`` is gymnasium's ``<Robot>-v5`` with a state-wise speed limit: the cost of a
step is 1 when the robot's speed after that step exceeds the task's threshold, else 0. The reward, observation,
termination and 1000-step time limit are gymnasium's. ``info`` gets ``speed``, ``cost`` and
``constraint = speed - threshold`` (safe iff <= 0, the built-in tasks' convention; ``-threshold`` at reset).

The thresholds and the speed measure are Safety-Gymnasium's velocity tasks, version v1 (safety-gymnasium 1.0.0,
``_velocity_threshold`` in ``safety_gymnasium/tasks/safe_velocity/safety_*_velocity_v1.py``):

* HalfCheetah, Hopper, Walker2d and Swimmer: the forward velocity ``x_velocity`` (signed: running backwards
  never costs);
* Ant and Humanoid: the planar speed ``sqrt(x_velocity² + y_velocity²)``.

Both suites measure velocity the same way, (position after − position before) / dt of the torso (Swimmer: the
front tip), which gymnasium's v5 environments report as ``info["x_velocity"]`` / ``info["y_velocity"]``.
What differs is the robot model: Safety-Gymnasium 1.0.0 wraps gymnasium's v4 environments, statewise uses v5
(gymnasium 1.x), whose models and defaults were revised (e.g. Ant-v5 observes contact forces, 105 values), so
returns are close to, not identical with, Safety-Gymnasium's.
"""

from __future__ import annotations

import math

import gymnasium as gym

from statewise.errors import EnvError

MUJOCO_INSTALL = 'pip install -e ".[mujoco]" (from the statewise checkout)'


# id -> (gymnasium base id, speed threshold, planar speed)
VELOCITY_TASKS: dict[str, tuple[str, float, bool]] = {
    "statewise/HalfCheetahVelocity-v0": ("HalfCheetah-v5", 3.2096, False),
    "statewise/HopperVelocity-v0": ("Hopper-v5", 0.7402, False),
    "statewise/Walker2dVelocity-v0": ("Walker2d-v5", 2.3415, False),
    "statewise/AntVelocity-v0": ("Ant-v5", 2.6222, True),
    "statewise/SwimmerVelocity-v0": ("Swimmer-v5", 0.2282, False),
    "statewise/HumanoidVelocity-v0": ("Humanoid-v5", 1.4149, True),
}


class VelocityCost(gym.Wrapper):
    """Adds the speed-limit cost to a gymnasium MuJoCo locomotion env (see the module docstring)."""

    def __init__(self, env: gym.Env, threshold: float, planar: bool):
        super().__init__(env)
        self.threshold = float(threshold)
        self.planar = bool(planar)

    def speed(self, info: dict) -> float:
        vx = float(info["x_velocity"])
        return math.hypot(vx, float(info["y_velocity"])) if self.planar else vx

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        # speed is measured over a step; a robot placed at rest (gymnasium adds ±0.005 noise to its joint velocities)
        # starts with speed 0, so h(s_0) = -threshold (the hjr and cbf signals need h at every state)
        info["speed"] = 0.0
        info["constraint"] = -self.threshold
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        speed = self.speed(info)
        info["speed"] = speed
        info["constraint"] = speed - self.threshold
        info["cost"] = float(speed > self.threshold)
        return obs, reward, terminated, truncated, info


def make_velocity_env(base: str, threshold: float, planar: bool, **kwargs) -> gym.Env:
    """Entry point of the ``statewise/*Velocity-v0`` ids: gymnasium's ``base`` env (no time limit of its own;
    :func:`statewise.envs.make_env` adds the registered 1000 steps) with :class:`VelocityCost`."""
    try:
        import mujoco  # noqa: F401

        env = gym.make(base, max_episode_steps=None, disable_env_checker=True, **kwargs).unwrapped
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise EnvError(f"the velocity tasks need MuJoCo ({str(exc).splitlines()[0]}); install the extra: "
                       f"{MUJOCO_INSTALL}") from None
    except gym.error.Error as exc:  # e.g. gymnasium 0.29 (the Safety-Gymnasium environment) has no v5 envs
        raise EnvError(f"the velocity tasks need gymnasium >= 1.0 with MuJoCo's {base}: {exc}") from None
    return VelocityCost(env, threshold, planar)
