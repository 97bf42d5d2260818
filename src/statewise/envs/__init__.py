"""Environments of statewise.

Importing this package registers the built-in environments with gymnasium:

* ``statewise/DoubleIntegrator-v0`` (:class:`DoubleIntegratorEnv`): 1-D double integrator
  with a position limit and an exactly known feasible set;
* ``statewise/PointHazard-v0`` (:class:`PointHazardEnv`): 2-D point robot, goal and
  circular hazards.

Both have a 200-step time limit. Build environments with :func:`make_env`, which also
accepts any gymnasium id (``module:Name-v0`` form included) and Safety-Gymnasium-style
6-tuple envs, and checks that a per-step cost is reported in ``info["cost"]``.
"""

from __future__ import annotations

import gymnasium as gym

from statewise.envs.base import BUILTIN_ENVS, PlaneSlice

_ENTRY_POINTS = {
    "statewise/DoubleIntegrator-v0": "statewise.envs.double_integrator:DoubleIntegratorEnv",
    "statewise/PointHazard-v0": "statewise.envs.point_hazard:PointHazardEnv",
}

# Register at import time; the guard keeps re-imports (e.g. importlib.reload) from
# re-registering, which gymnasium would warn about.
for _env_id in BUILTIN_ENVS:
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_ENTRY_POINTS[_env_id], max_episode_steps=200)
del _env_id

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
    "make_env",
]
