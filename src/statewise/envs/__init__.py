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

from statewise.envs import registration  # noqa: F401  (registers the built-in envs first)
from statewise.envs.adapters import CostSignalCheck, SafetyGymnasiumAdapter, make_env
from statewise.envs.base import BUILTIN_ENVS, PlaneSlice
from statewise.envs.double_integrator import DoubleIntegratorEnv
from statewise.envs.point_hazard import PointHazardEnv
from statewise.envs.velocity import VELOCITY_TASKS

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
