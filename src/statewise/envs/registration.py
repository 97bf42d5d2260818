"""Registers the built-in environments with gymnasium (on import; :mod:`statewise.envs` imports it first): the
:data:`statewise.envs.base.BUILTIN_ENVS` with a 200-step time limit and the velocity-constrained MuJoCo tasks of
:mod:`statewise.envs.velocity` with a 1000-step one."""

from __future__ import annotations

import gymnasium as gym

from statewise.envs.base import BUILTIN_ENVS
from statewise.envs.velocity import VELOCITY_TASKS

ENTRY_POINTS = {
    "statewise/DoubleIntegrator-v0": "statewise.envs.double_integrator:DoubleIntegratorEnv",
    "statewise/PointHazard-v0": "statewise.envs.point_hazard:PointHazardEnv",
    "statewise/DoubleIntegratorSpeedLimit-v0": "statewise.envs.speed_limit:DoubleIntegratorSpeedLimitEnv",
}


def register() -> None:
    """Register what is not registered yet; the guard keeps re-imports (e.g. importlib.reload) from re-registering,
    which gymnasium would warn about."""
    for env_id in BUILTIN_ENVS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINTS[env_id], max_episode_steps=200)
    for env_id, (base, threshold, planar) in VELOCITY_TASKS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="statewise.envs.velocity:make_velocity_env", max_episode_steps=1000,
                         kwargs={"base": base, "threshold": threshold, "planar": planar})


register()
