"""``statewise/PointHazard-v0``: a 2-D point robot that must reach a goal while avoiding
circular hazards. Small and fast; mainly used to draw pictures of learned feasibility
and multiplier functions over the arena."""

from __future__ import annotations

import math
from functools import partial

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

_NAME = "PointHazard"


def _plane_to_obs(points: np.ndarray, goal: tuple[float, float]) -> np.ndarray:
    """Positions (N, 2) -> observations (N, 6) with zero velocity."""
    p = as_points(points)
    obs = np.zeros((p.shape[0], 6), dtype=np.float32)
    obs[:, 0:2] = p
    obs[:, 4] = goal[0] - p[:, 0]
    obs[:, 5] = goal[1] - p[:, 1]
    return obs


class PointHazardEnv(gym.Env):
    """Point robot in the arena ``[-6, 6]^2`` going to a goal among circular hazards.

    **State** position ``p`` (2,) and velocity ``w`` (2,).
    **Observation** (float32, 6): ``[p, w, goal - p]``.

    **Dynamics** (``dt = 0.1``)::

        w' = clip(0.95 * w + dt * 2.0 * clip(action, -1, 1), -4, 4)
        p' = p + dt * w'

    ``4`` is the per-axis terminal speed of the damped dynamics, so the velocity clip only
    matters for unusual states. Positions are clamped to the arena and the velocity
    component that hit a wall is set to zero.

    **Goal** disc at (4, 0) with radius 0.4: reaching it gives a bonus of 1.0 and ends
    the episode (``terminated=True``). **Reward** = progress (previous distance to the
    goal minus new distance) + bonus.

    **Hazards** discs with centres (0, 0), (1.5, 2.2), (1.5, -2.2) and radii 1.5, 0.9,
    0.9. Every straight line from the start box to the goal crosses the central hazard;
    safe paths go around the hazards above y = 3.1 or below y = -3.1 (the gaps between
    the discs, 0.26 wide, are also safe but tight).

    **Constraint** ``h(s) = max_i (r_i - ||p - c_i||)`` (positive inside a hazard).
    **Cost** ``1.0`` while the new position is strictly inside a hazard (h > 0), else 0.

    **Initial states** ``p ~ U([-4.5, -3.5] x [-1.5, 1.5])``, zero velocity.
    ``reset(options={"state": s})`` accepts ``s = [p, w]`` (4,) or a full observation (6,)
    whose goal offset is ignored (recomputed from p).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvError(f"{_NAME}: unsupported render_mode {render_mode!r} (supported: 'rgb_array')")
        self.render_mode = render_mode
        self.dt = 0.1
        self.accel = 2.0
        self.damping = 0.95
        self.max_speed = 4.0
        self.arena = 6.0  # half width of the square arena
        self.goal = (4.0, 0.0)
        self.goal_radius = 0.4
        self.hazard_centres = np.array([[0.0, 0.0], [1.5, 2.2], [1.5, -2.2]])
        self.hazard_radii = np.array([1.5, 0.9, 0.9])
        # Plain Python copies for the scalar fast path used in step().
        self._hazards = [(float(c[0]), float(c[1]), float(r))
                         for c, r in zip(self.hazard_centres, self.hazard_radii, strict=True)]

        a, s, g = self.arena, self.max_speed, self.goal
        high = np.array([a, a, s, s, a + abs(g[0]), a + abs(g[1])], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._px = self._py = self._wx = self._wy = 0.0
        self._background: np.ndarray | None = None

    # ------------------------------------------------------------------ task API
    def constraint(self, obs: np.ndarray) -> np.ndarray:
        """Signed constraint ``max_i (r_i - ||p - c_i||)`` (safe iff <= 0); (..., 6) -> (...)."""
        p = np.asarray(obs, dtype=np.float64)[..., None, 0:2]  # (..., 1, 2)
        d = p - self.hazard_centres  # (..., n_hazards, 2)
        dist = np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
        return np.max(self.hazard_radii - dist, axis=-1)

    def _h(self, px: float, py: float) -> float:
        """Scalar version of :meth:`constraint` (same floating-point operations)."""
        h = -math.inf
        for cx, cy, r in self._hazards:
            dx, dy = px - cx, py - cy
            h = max(h, r - math.sqrt(dx * dx + dy * dy))
        return h

    def plane_feasible(self, obs: np.ndarray) -> np.ndarray:
        """The exact feasible set on :meth:`plane`'s slice (the robot at rest): at rest, the action 0 keeps it where it
        is for ever, so a resting state is feasible iff it is outside every hazard (h <= 0); (..., 6) -> (...) bool.
        Only for observations with zero velocity (raises ValueError otherwise)."""
        return self.constraint(_at_rest(obs, "plane_feasible")) <= 0.0

    def plane_slack(self, obs: np.ndarray) -> np.ndarray:
        """Metres to the nearest hazard for a robot at rest (-h, as no braking is needed); like
        :meth:`plane_feasible`, only for the plane's resting states."""
        return -self.constraint(_at_rest(obs, "plane_slack"))

    def plane(self) -> PlaneSlice:
        """Positions over the whole arena, with zero velocity."""
        a = self.arena
        return PlaneSlice(
            xlabel="x position",
            ylabel="y position",
            xlim=(-a, a),
            ylim=(-a, a),
            to_obs=partial(_plane_to_obs, goal=self.goal),
        )

    # ------------------------------------------------------------------ gym API
    def _obs(self) -> np.ndarray:
        px, py = self._px, self._py
        return np.array(
            [px, py, self._wx, self._wy, self.goal[0] - px, self.goal[1] - py], dtype=np.float32
        )

    # state as an array: what statewise.envs.lockstep reads and writes to step many copies at once
    def get_state(self) -> np.ndarray:
        return np.array([self._px, self._py, self._wx, self._wy])

    def set_state(self, state: np.ndarray) -> None:
        self._px, self._py, self._wx, self._wy = (float(v) for v in state)

    def observe(self, states: np.ndarray) -> np.ndarray:
        """Observations ``[p, w, goal - p]`` of float64 states (N, 4), as :meth:`step` returns them."""
        s = np.asarray(states, dtype=np.float64)
        return np.stack([s[:, 0], s[:, 1], s[:, 2], s[:, 3], self.goal[0] - s[:, 0], self.goal[1] - s[:, 1]],
                        axis=-1).astype(np.float32)

    def transition(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """The dynamics of :meth:`step` for a batch, without an episode: states (N, 4) float64 and actions (N, 2) ->
        (next states, reward, cost, terminated). The same floating-point operations as :meth:`step` (which keeps a
        scalar path, faster for one state), so the results are identical (tests/test_envs.py)."""
        state = np.asarray(state, dtype=np.float64)
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        dt, lim, s = self.dt, self.arena, self.max_speed
        px, py, wx, wy = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
        old_distance = self._goal_distances(px, py)
        wx = np.minimum(np.maximum(self.damping * wx + dt * self.accel * a[:, 0], -s), s)
        wy = np.minimum(np.maximum(self.damping * wy + dt * self.accel * a[:, 1], -s), s)
        px, py = px + dt * wx, py + dt * wy
        hit_x, hit_y = (px > lim) | (px < -lim), (py > lim) | (py < -lim)
        px, wx = np.where(hit_x, np.copysign(lim, px), px), np.where(hit_x, 0.0, wx)
        py, wy = np.where(hit_y, np.copysign(lim, py), py), np.where(hit_y, 0.0, wy)
        new_distance = self._goal_distances(px, py)
        reached = new_distance <= self.goal_radius
        reward = old_distance - new_distance + np.where(reached, 1.0, 0.0)
        nxt = np.stack([px, py, wx, wy], axis=-1)
        cost = (self.constraint(nxt) > 0.0).astype(np.float64)
        return nxt, reward, cost, reached

    def _goal_distances(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        dx, dy = self.goal[0] - px, self.goal[1] - py
        return np.sqrt(dx * dx + dy * dy)

    def _goal_distance(self, px: float, py: float) -> float:
        dx, dy = self.goal[0] - px, self.goal[1] - py
        return math.sqrt(dx * dx + dy * dy)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        state = state_from_options(options, _NAME, (4, 6))
        if state is None:
            self._px = float(self.np_random.uniform(-4.5, -3.5))
            self._py = float(self.np_random.uniform(-1.5, 1.5))
            self._wx = self._wy = 0.0
        else:
            if np.any(np.abs(state[0:2]) > self.arena):
                raise EnvError(f"{_NAME}: reset position {state[0:2].tolist()} is outside the arena [-6, 6]^2")
            if np.any(np.abs(state[2:4]) > self.max_speed):
                raise EnvError(f"{_NAME}: reset velocity {state[2:4].tolist()} exceeds the speed limit 4 per axis")
            self._px, self._py, self._wx, self._wy = (float(v) for v in state[0:4])
        return self._obs(), {"constraint": self._h(self._px, self._py)}

    def step(self, action):
        a = as_action(action, 2, _NAME)
        dt, lim, s = self.dt, self.arena, self.max_speed
        old_distance = self._goal_distance(self._px, self._py)

        # Damped velocity update, then position update with the new velocity.
        wx = min(max(self.damping * self._wx + dt * self.accel * float(a[0]), -s), s)
        wy = min(max(self.damping * self._wy + dt * self.accel * float(a[1]), -s), s)
        px = self._px + dt * wx
        py = self._py + dt * wy
        # Walls: clamp the position and stop the component that hit the wall.
        if px > lim or px < -lim:
            px, wx = math.copysign(lim, px), 0.0
        if py > lim or py < -lim:
            py, wy = math.copysign(lim, py), 0.0
        self._px, self._py, self._wx, self._wy = px, py, wx, wy

        new_distance = self._goal_distance(px, py)
        reached = new_distance <= self.goal_radius
        reward = old_distance - new_distance + (1.0 if reached else 0.0)
        h = self._h(px, py)
        info = {"cost": 1.0 if h > 0.0 else 0.0, "constraint": h, "goal_reached": reached}
        return self._obs(), reward, reached, False, info

    # ------------------------------------------------------------------ rendering
    _SIZE = 240

    def render(self):
        """Top view (240 x 240 x 3 uint8): red hazards, green goal, blue robot with a
        short dark line showing its velocity."""
        if self.render_mode is None:
            gym.logger.warn("PointHazard.render() called without render_mode='rgb_array'")
            return None
        plane = self.plane()
        if self._background is None:
            self._background = self._draw_background(plane)
        img = self._background.copy()
        size = self._SIZE
        # Velocity line: 0.5 s of motion, drawn as a sequence of pixels.
        for t in np.linspace(0.0, 0.5, 16):
            r, c = world_to_pixel(self._px + t * self._wx, self._py + t * self._wy, plane.xlim, plane.ylim, size, size)
            img[r, c] = (20, 20, 60)
        row, col = world_to_pixel(self._px, self._py, plane.xlim, plane.ylim, size, size)
        stamp_disc(img, row, col, 5, (30, 70, 200))
        return img

    def _draw_background(self, plane: PlaneSlice) -> np.ndarray:
        size = self._SIZE
        _, _, gx, gy = plane_pixels(plane, size)
        points = np.stack([gx, gy], axis=-1)  # (H, W, 2) positions; constraint reads [..., 0:2]
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = (235, 235, 235)
        img[self.constraint(points) > 0.0] = (220, 80, 80)
        gdx, gdy = gx - self.goal[0], gy - self.goal[1]
        img[gdx * gdx + gdy * gdy <= self.goal_radius**2] = (60, 170, 80)
        img[[0, -1], :] = img[:, [0, -1]] = (60, 60, 60)  # arena walls
        return img


def _at_rest(obs: np.ndarray, what: str) -> np.ndarray:
    """``obs`` as float64 if every observation has zero velocity (what the plane-only truths assume)."""
    obs = np.asarray(obs, dtype=np.float64)
    if np.any(obs[..., 2:4] != 0.0):
        raise ValueError(f"{what} is exact only for states at rest (velocity 0)")
    return obs
