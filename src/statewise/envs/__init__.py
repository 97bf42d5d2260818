"""Environments of statewise.

Importing this package registers the built-in environments with gymnasium:

* ``statewise/DoubleIntegrator-v0`` (:class:`DoubleIntegratorEnv`): 1-D double integrator
  with a position limit and an exactly known feasible set;
* ``statewise/PointHazard-v0`` (:class:`PointHazardEnv`): 2-D point robot, goal and
  circular hazards.

Both have a 200-step time limit. It also registers the velocity-constrained MuJoCo tasks
``statewise/{HalfCheetah,Hopper,Walker2d,Ant,Swimmer,Humanoid}Velocity-v0``
(:mod:`statewise.envs.velocity`; they need the ``statewise[mujoco]`` extra only when made).

Build environments with :func:`make_env`, which also accepts any gymnasium id (``module:Name-v0``
form included), Safety-Gymnasium ids (:mod:`statewise.envs.safety_gymnasium`, an optional extra)
and other Safety-Gymnasium-style 6-tuple envs, and checks that a per-step cost is reported in
``info["cost"]``.
"""

from __future__ import annotations

import gymnasium as gym

from statewise.envs.base import BUILTIN_ENVS, PlaneSlice
from statewise.envs.velocity import VELOCITY_TASKS

_ENTRY_POINTS = {
    "statewise/DoubleIntegrator-v0": "statewise.envs.double_integrator:DoubleIntegratorEnv",
    "statewise/PointHazard-v0": "statewise.envs.point_hazard:PointHazardEnv",
}

# Register at import time; the guard keeps re-imports (e.g. importlib.reload) from
# re-registering, which gymnasium would warn about.
for _env_id in BUILTIN_ENVS:
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_ENTRY_POINTS[_env_id], max_episode_steps=200)
for _env_id, (_base, _threshold, _planar) in VELOCITY_TASKS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point="statewise.envs.velocity:make_velocity_env", max_episode_steps=1000,
                     kwargs={"base": _base, "threshold": _threshold, "planar": _planar})
del _env_id, _base, _threshold, _planar

# Imported after registration: adapters imports this package.
from statewise.envs.adapters import CostSignalCheck, SafetyGymnasiumAdapter, make_env  # noqa: E402
from statewise.envs.double_integrator import DoubleIntegratorEnv  # noqa: E402
from statewise.envs.point_hazard import PointHazardEnv  # noqa: E402

__all__ = [
    "BUILTIN_ENVS",
    "CostSignalCheck",
    "DoubleIntegratorEnv",
    "PlaneSlice",
    "PointHazardEnv",
    "SafetyGymnasiumAdapter",
    "VELOCITY_TASKS",
    "make_env",
]
