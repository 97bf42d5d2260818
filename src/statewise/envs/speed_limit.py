"""``statewise/DoubleIntegratorSpeedLimit-v0``: the double integrator with two state-wise constraints, a wall and a
speed limit, each with its own cost and its own exact feasible set.

It is the reference task for several constraints at once (``constraint.costs: [wall, speed]``,
docs/algorithm.md §2c): λ_wall(s) and λ_speed(s) can each be scored against their own truth.
"""

from __future__ import annotations

import numpy as np

from statewise.envs.double_integrator import DoubleIntegratorEnv

COST_NAMES = ("wall", "speed")


class DoubleIntegratorSpeedLimitEnv(DoubleIntegratorEnv):
    """The double integrator (same dynamics, reward, termination, time limit and initial states) with a second
    constraint, a speed limit ``|v| <= v_max`` (``v_max = 2``).

    **Costs** of a transition, both of the NEW state: ``wall = 1[|x'| > x_max]`` and ``speed = 1[|v'| > v_max]``,
    reported by name in ``info["costs"]``; ``info["cost"]`` is 1 if either is (any violation).

    **Constraint** ``h(s) = max(|x| - x_max, |v| - v_max)`` (safe iff both hold).

    **Exact feasible sets**, one per constraint (:meth:`constraint_feasible`):

    * ``wall``: the double integrator's own (:meth:`DoubleIntegratorEnv.feasible`, the braking analysis);
    * ``speed``: ``|v| <= v_max``. From such a state, holding the speed (a = 0) keeps it; from a faster one the state
      itself violates. Braking for the wall only lowers |v|, so no state is feasible for each constraint alone and
      infeasible for both: the jointly feasible set (:meth:`feasible`) is the intersection.

    With the initial velocities of the double integrator, ``U[-3, 3]``, a third of the starts are over the speed
    limit: a policy that brakes at once still violates for up to 10 steps.
    """

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.v_max = 2.0

    # the metres to spare that calibration reads are the wall's alone; per constraint, see constraint_feasible
    slack = None

    def constraint(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        return np.maximum(np.abs(obs[..., 0]) - self.x_max, np.abs(obs[..., 1]) - self.v_max)

    def constraint_feasible(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Exact membership in each constraint's own feasible set, name -> (...) bool."""
        obs = np.asarray(obs, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            speed = np.abs(obs[..., 1]) <= self.v_max + self.FEASIBLE_TOL
        # the wall's own set: the double integrator's braking analysis (this class's _feasible is the joint one)
        return {"wall": DoubleIntegratorEnv._feasible(self, obs[..., 0], obs[..., 1]), "speed": speed}

    def feasible(self, obs: np.ndarray) -> np.ndarray:
        """Jointly feasible: in the feasible set of both constraints."""
        parts = self.constraint_feasible(obs)
        return parts["wall"] & parts["speed"]

    def _feasible(self, x, v) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return super()._feasible(x, v) & (np.abs(v) <= self.v_max + self.FEASIBLE_TOL)

    def cost_parts(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """The costs of arriving in float64 states (..., 2), by name."""
        state = np.asarray(state, dtype=np.float64)
        tol = self.FEASIBLE_TOL
        return {"wall": (np.abs(state[..., 0]) > self.x_max + tol).astype(np.float64),
                "speed": (np.abs(state[..., 1]) > self.v_max + tol).astype(np.float64)}

    def transition(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """The double integrator's :meth:`DoubleIntegratorEnv.transition` with the cost of either constraint."""
        nxt, reward, _, terminated = super().transition(state, action)
        parts = self.cost_parts(nxt)
        return nxt, reward, np.maximum(parts["wall"], parts["speed"]), terminated

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["constraint"] = float(self.constraint(np.array([self._x, self._v])))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        parts = self.cost_parts(np.array([self._x, self._v]))
        info["costs"] = {name: float(parts[name]) for name in COST_NAMES}
        info["cost"] = max(info["costs"].values())
        info["constraint"] = float(self.constraint(np.array([self._x, self._v])))
        return obs, reward, terminated, truncated, info
