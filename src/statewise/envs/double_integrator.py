"""``statewise/DoubleIntegrator-v0``: a 1-D double integrator with a position limit.

This is the reference task of statewise because its maximal feasible set is known in
closed form (:meth:`DoubleIntegratorEnv.feasible`), so learned feasibility estimates
can be compared against the exact answer.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from statewise.envs.base import (
    PlaneSlice,
    as_action,
    as_points,
    plane_pixels,
    stamp_disc,
    state_from_options,
    world_to_pixel,
)
from statewise.errors import EnvError

_NAME = "DoubleIntegrator"


def _identity_obs(points: np.ndarray) -> np.ndarray:
    """Plane points (N, 2) = (x, v) are already observations."""
    return as_points(points).astype(np.float32)


class DoubleIntegratorEnv(gym.Env):
    """1-D double integrator: a cart on a rail that must not pass ``|x| = x_max``.

    **State = observation** ``[x, v]`` (float32 observation of a float64 internal state).

    **Dynamics** (explicit Euler, ``dt = 0.1``, ``u_max = 1``)::

        a  = u_max * clip(action, -1, 1)
        x' = x + dt * v          # the position uses the OLD velocity
        v' = v + dt * a

    **Reward** ``r = dt * v = x' - x``: the displacement to the right. Without the
    constraint the optimum accelerates right forever and crosses the limit; with it,
    the optimum rides the braking curve towards ``x = x_max`` and then stops, so the
    constraint is active on a sizeable set of states (everything near the braking curve).

    **Constraint** ``h(s) = |x| - x_max`` (safe iff ``h <= 0``), ``x_max = 5``.
    **Cost** of a transition: ``1.0`` if ``|x'| > x_max`` (the NEW state) else ``0.0``.
    **Termination** when ``|x'| > 2 * x_max`` (the cart left the domain); the time limit
    of 200 steps comes from the gymnasium registration.

    **Initial states** ``x0 ~ U[-4.5, 4.5]``, ``v0 ~ U[-3, 3]``. These deliberately include
    inherently infeasible states (too fast, too close to the limit to brake in time):
    about 13 % of initial states are infeasible (measured with 10^6 uniform samples and
    :meth:`feasible`: 0.1308). ``reset`` reports the ground truth in ``info["feasible"]``.

    **Exact feasible set** (:meth:`feasible`): see :meth:`braking_peak`. A state is
    feasible iff ``|x| <= x_max`` and the peak position under optimal braking is within
    ``[-x_max, x_max]``.

    **Floating-point tolerance.** Both :meth:`feasible` and the cost use the same absolute
    tolerance ``FEASIBLE_TOL = 1e-9`` on positions (``|x| > x_max + FEASIBLE_TOL`` is a
    violation). The closed-form peak and a step-by-step simulation agree to ~1e-15, so a
    state reported feasible really incurs zero cost under optimal braking, even for states
    exactly on the boundary of the feasible set. ``constraint`` itself is the exact signed
    value ``|x| - x_max`` with no tolerance.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    #: Absolute tolerance on positions shared by :meth:`feasible` and the cost signal.
    FEASIBLE_TOL = 1e-9

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvError(f"{_NAME}: unsupported render_mode {render_mode!r} (supported: 'rgb_array')")
        self.render_mode = render_mode
        self.dt = 0.1
        self.u_max = 1.0
        self.x_max = 5.0
        # Velocity is unbounded in principle (and positions may reach 2 * x_max + dt * |v|
        # before termination), so the observation space is unbounded.
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x = 0.0
        self._v = 0.0
        self._background: np.ndarray | None = None  # cached render background

    # ------------------------------------------------------------------ task API
    def constraint(self, obs: np.ndarray) -> np.ndarray:
        """Signed constraint ``h = |x| - x_max`` (safe iff <= 0); (..., 2) -> (...)."""
        obs = np.asarray(obs)
        return np.abs(obs[..., 0].astype(np.float64)) - self.x_max

    def braking_peak(self, obs: np.ndarray) -> np.ndarray:
        """Extreme position reached under optimal braking; (..., 2) -> (...) float64.

        For ``v > 0`` full braking (``a = -u_max`` at every step) minimises every future
        position simultaneously, because ``x_k = x + dt * sum_{j<k} v_j`` and each ``v_j``
        is minimised by braking. With ``b = dt * u_max`` the velocities under full
        braking are ``v - k b``; let ``n = ceil(v / b)`` be the number of steps with
        positive velocity. Since positions use the old velocity, the action at step
        ``n - 1`` does not change ``x_n``, so a partial brake there makes the velocity
        exactly 0 and the cart stays at::

            peak = x + dt * sum_{k=0}^{n-1} (v - k b) = x + dt * (n v - b n (n - 1) / 2)

        Any other action sequence reaches a position >= peak at step n, so this is the
        smallest achievable maximum. Symmetric (peak <= x) for ``v < 0``; ``v = 0``
        gives ``peak = x``.

        The formula is continuous in ``v``: when ``v`` is a multiple of ``b`` the extra
        term that a one-off error in ``ceil`` would add is ``dt * (v - n b) = 0``. So
        rounding in ``v / b`` (e.g. ``0.3 / 0.1 = 2.9999999999999996``) is harmless.
        """
        obs = np.asarray(obs, dtype=np.float64)
        x, v = obs[..., 0], obs[..., 1]
        return self._peak(x, v)

    def _peak(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        b = self.dt * self.u_max
        speed = np.abs(v)
        n = np.ceil(speed / b)
        stopping_distance = self.dt * (n * speed - 0.5 * b * n * (n - 1.0))
        return x + np.sign(v) * stopping_distance

    def feasible(self, obs: np.ndarray) -> np.ndarray:
        """Exact membership in the maximal feasible set; (..., 2) -> (...) bool.

        True iff some action sequence keeps ``|x_k| <= x_max`` at every step k >= 0
        (including the state itself), i.e. ``|x| <= x_max`` and
        ``|braking_peak| <= x_max`` (with tolerance ``FEASIBLE_TOL``, see class doc).
        Non-finite states are infeasible.
        """
        obs = np.asarray(obs, dtype=np.float64)
        return self._feasible(obs[..., 0], obs[..., 1])

    def _feasible(self, x, v) -> np.ndarray:
        limit = self.x_max + self.FEASIBLE_TOL
        with np.errstate(invalid="ignore"):  # inf velocities give nan peaks -> False
            peak = self._peak(x, v)
            return (np.abs(x) <= limit) & (np.abs(peak) <= limit)

    def plane(self) -> PlaneSlice:
        """The full state space: position on x, velocity on y."""
        return PlaneSlice(
            xlabel="position x",
            ylabel="velocity v",
            xlim=(-6.0, 6.0),
            ylim=(-4.0, 4.0),
            to_obs=_identity_obs,
        )

    # ------------------------------------------------------------------ gym API
    def _obs(self) -> np.ndarray:
        return np.array([self._x, self._v], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Sample ``x0 ~ U[-4.5, 4.5], v0 ~ U[-3, 3]``, or set ``options["state"] = [x, v]``.

        ``info["feasible"]`` is the exact ground truth for the (float64) initial state.
        """
        super().reset(seed=seed)
        state = state_from_options(options, _NAME, (2,))
        if state is None:
            self._x = float(self.np_random.uniform(-4.5, 4.5))
            self._v = float(self.np_random.uniform(-3.0, 3.0))
        else:
            self._x, self._v = float(state[0]), float(state[1])
        info = {
            "feasible": bool(self._feasible(np.float64(self._x), np.float64(self._v))),
            "constraint": abs(self._x) - self.x_max,
        }
        return self._obs(), info

    def transition(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """The dynamics of :meth:`step` for a batch, without an episode: states (N, 2) float64 and actions
        (N, 1) -> (next states, reward, cost, terminated), each with leading dimension N. :meth:`step` is
        this function applied to one state, so Monte-Carlo rollouts from arbitrary states
        (:mod:`statewise.run.value_bias`) follow exactly the dynamics the agent trained on."""
        state = np.asarray(state, dtype=np.float64)
        x, v = state[..., 0], state[..., 1]
        a = self.u_max * np.clip(np.asarray(action, dtype=np.float64)[..., 0], -1.0, 1.0)
        x_next = x + self.dt * v  # the position uses the old velocity
        v_next = v + self.dt * a
        abs_x = np.abs(x_next)
        reward = self.dt * v  # = x' - x, displacement to the right
        cost = (abs_x > self.x_max + self.FEASIBLE_TOL).astype(np.float64)
        terminated = abs_x > 2.0 * self.x_max
        return np.stack([x_next, v_next], axis=-1), reward, cost, terminated

    # state as an array: what statewise.envs.lockstep reads and writes to step many copies at once
    def get_state(self) -> np.ndarray:
        return np.array([self._x, self._v])

    def set_state(self, state: np.ndarray) -> None:
        self._x, self._v = float(state[0]), float(state[1])

    def observe(self, states: np.ndarray) -> np.ndarray:
        """Observations of float64 states (N, 2): the states as float32, as :meth:`step` returns them."""
        return np.asarray(states, dtype=np.float32)

    def slack(self, obs: np.ndarray) -> np.ndarray:
        """Metres to spare under optimal braking, ``x_max - max(|x|, |braking_peak|)``; (..., 2) -> (...).
        Positive inside the feasible set, negative outside it (for λ(s) calibration on slack states)."""
        obs = np.asarray(obs, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return self.x_max - np.maximum(np.abs(obs[..., 0]), np.abs(self.braking_peak(obs)))

    def step(self, action):
        act = as_action(action, 1, _NAME)
        state, reward, cost, terminated = self.transition(np.array([self._x, self._v]), act)
        self._x, self._v = float(state[0]), float(state[1])
        info = {"cost": float(cost), "constraint": abs(self._x) - self.x_max}
        return self._obs(), float(reward), bool(terminated), False, info

    # ------------------------------------------------------------------ rendering
    _SIZE = 240

    def render(self):
        """Phase-plane picture (240 x 240 x 3 uint8): white = feasible, orange = safe but
        infeasible, red = unsafe (|x| > x_max); the blue dot is the current (x, v)."""
        if self.render_mode is None:
            gym.logger.warn("DoubleIntegrator.render() called without render_mode='rgb_array'")
            return None
        plane = self.plane()
        if self._background is None:
            self._background = self._draw_background(plane)
        img = self._background.copy()
        row, col = world_to_pixel(self._x, self._v, plane.xlim, plane.ylim, self._SIZE, self._SIZE)
        stamp_disc(img, row, col, 5, (30, 70, 200))
        return img

    def _draw_background(self, plane: PlaneSlice) -> np.ndarray:
        size = self._SIZE
        xs, vs, gx, gv = plane_pixels(plane, size)
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = (245, 245, 245)  # feasible
        img[~self._feasible(gx, gv)] = (250, 205, 150)  # safe but doomed
        img[np.abs(gx) > self.x_max] = (235, 150, 150)  # unsafe
        # Axes (v = 0 and x = 0) in grey.
        img[np.argmin(np.abs(vs)), :] = (150, 150, 150)
        img[:, np.argmin(np.abs(xs))] = (150, 150, 150)
        return img
