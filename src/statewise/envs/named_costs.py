"""Several named costs of one environment as one array: what ``constraint.costs`` constrains (docs/algorithm.md §2c).

An environment reports its costs by name in ``info["costs"]`` (a mapping name -> value, as the built-in
``statewise/DoubleIntegratorSpeedLimit-v0`` does) or as keys of ``info`` itself (Safety-Gymnasium's ``cost_hazards``,
``cost_vases_contact``, …). :class:`NamedCosts` reads the configured names at every step and adds
``info["cost_parts"]``: a float64 array with one value per name, in the configured order. ``info["cost"]`` (the
total) stays what the environment reported. Bad reports are one line (an :class:`statewise.errors.EnvError`): a
missing name, a non-numeric or non-finite value, ``info["costs"]`` that is not a mapping, or a mapping whose names
change from one step to the next.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from statewise.errors import EnvError

PARTS = "cost_parts"  # the info key NamedCosts adds


class NamedCosts(gym.Wrapper):
    """Adds ``info["cost_parts"]``, the costs named by ``names``; see the module docstring."""

    def __init__(self, env: gym.Env, names: list[str] | tuple[str, ...]):
        super().__init__(env)
        self.names = tuple(names)
        self._keys: tuple[str, ...] | None = None  # the names of info["costs"] at the first step
        self._t = 0

    def _env_id(self) -> str:
        spec = self.env.spec
        return spec.id if spec is not None else type(self.env.unwrapped).__name__

    def reset(self, **kwargs: Any):
        self._t = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        info[PARTS] = self.parts(info)
        return obs, reward, terminated, truncated, info

    def parts(self, info: dict[str, Any]) -> np.ndarray:
        """The named costs of one step's ``info``, (M,) float64."""
        source, where = self._source(info)
        values = np.empty(len(self.names))
        for i, name in enumerate(self.names):
            if name not in source:
                held = sorted(k for k in source if isinstance(k, str) and (where != "info" or k.startswith("cost")))
                raise EnvError(f"environment '{self._env_id()}' reports no cost '{name}' (constraint.costs) at step "
                               f"{self._t}; its {where} holds {held}")
            try:
                values[i] = float(source[name])
            except (TypeError, ValueError):
                raise EnvError(f"environment '{self._env_id()}' reports a non-numeric cost '{name}' = "
                               f"{source[name]!r} at step {self._t}") from None
            if not math.isfinite(values[i]):
                raise EnvError(f"environment '{self._env_id()}' reported a non-finite cost '{name}' ({values[i]}) at "
                               f"step {self._t}")
        return values

    def _source(self, info: dict[str, Any]) -> tuple[Mapping, str]:
        """Where the named costs are: info["costs"] if the environment reports it, else info."""
        costs = info.get("costs")
        if costs is None:
            return info, "info"
        if not isinstance(costs, Mapping):
            raise EnvError(f"environment '{self._env_id()}' reports info['costs'] as {type(costs).__name__}, not a "
                           "mapping of cost names to values")
        keys = tuple(sorted(str(k) for k in costs))
        if self._keys is None:
            self._keys = keys
        elif keys != self._keys:
            raise EnvError(f"environment '{self._env_id()}' changed the names of its costs at step {self._t}: "
                           f"{list(self._keys)} before, {list(keys)} now")
        return costs, "info['costs']"
