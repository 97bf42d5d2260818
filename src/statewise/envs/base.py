"""Shared pieces of the state-wise task API: the ids of the built-in environments,
:class:`PlaneSlice` (a 2-D slice of observation space for heat maps) and small helpers
used by both built-in environments (state validation, numpy raster drawing).

Every built-in environment implements, on its *unwrapped* instance:

* ``constraint(obs) -> ndarray``: signed state constraint h(s), safe iff h(s) <= 0,
  vectorised over leading dimensions ((..., obs_dim) -> (...)).
* ``plane() -> PlaneSlice``: the slice used to draw heat maps.
* ``step`` puts the per-step cost (float >= 0) in ``info["cost"]`` and h of the new
  state in ``info["constraint"]``.
* ``reset(options={"state": array})`` sets the initial state exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from statewise.errors import EnvError

#: Ids of the environments shipped with statewise (registered by ``statewise.envs``).
BUILTIN_ENVS: tuple[str, ...] = ("statewise/DoubleIntegrator-v0", "statewise/PointHazard-v0",
                                  "statewise/DoubleIntegratorSpeedLimit-v0")


@dataclass(frozen=True)
class PlaneSlice:
    """A 2-D slice of observation space, used to draw heat maps of learned functions.

    ``to_obs`` maps points of shape (N, 2) (first column on the x axis, second on the
    y axis) to observations of shape (N, obs_dim), dtype float32.
    """

    xlabel: str
    ylabel: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    to_obs: Callable[[np.ndarray], np.ndarray]

    def grid(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(xs (n,), ys (n,), obs (n*n, obs_dim))`` on an n x n grid.

        The points are *cell centres* of an n x n partition of ``xlim x ylim`` and
        ``obs`` is in row-major order over (y, x): row ``i * n + j`` is the point
        ``(xs[j], ys[i])``. Hence for per-observation values ``v`` of shape (n*n,),
        ``imshow(v.reshape(n, n), origin="lower", extent=xlim + ylim)`` puts every
        pixel exactly on its point, and ``contour(xs, ys, v.reshape(n, n))`` works too.
        """
        n = int(n)
        if n < 1:
            raise ValueError(f"grid size must be >= 1, got {n}")
        xs = _cell_centres(self.xlim, n)
        ys = _cell_centres(self.ylim, n)
        gx, gy = np.meshgrid(xs, ys)  # 'xy' indexing: shape (n_y, n_x), row = y
        points = np.stack([gx.ravel(), gy.ravel()], axis=-1)
        return xs, ys, self.to_obs(points)


def _cell_centres(lim: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = float(lim[0]), float(lim[1])
    return lo + (np.arange(n) + 0.5) * ((hi - lo) / n)


def as_points(points: np.ndarray) -> np.ndarray:
    """Validate plane points of shape (N, 2) and return them as float64."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"plane points must have shape (N, 2), got {p.shape}")
    return p


def state_from_options(options: dict | None, env_name: str, sizes: tuple[int, ...]) -> np.ndarray | None:
    """Return ``options["state"]`` as a finite float64 vector, or None when absent.

    ``sizes`` lists the accepted lengths (first one is the canonical state size).
    Raises :class:`EnvError` on a bad shape or non-finite values.
    """
    if not options or options.get("state") is None:
        return None
    try:
        state = np.asarray(options["state"], dtype=np.float64)
    except (TypeError, ValueError):
        raise EnvError(f"{env_name}: reset option 'state' must be a numeric array") from None
    if state.ndim != 1 or state.shape[0] not in sizes:
        wanted = " or ".join(f"({s},)" for s in sizes)
        raise EnvError(f"{env_name}: reset option 'state' must have shape {wanted}, got {state.shape}")
    if not np.all(np.isfinite(state)):
        raise EnvError(f"{env_name}: reset option 'state' must be finite, got {state.tolist()}")
    return state.copy()


def as_action(action, act_dim: int, env_name: str) -> np.ndarray:
    """Return the action as a float64 vector of length ``act_dim`` clipped to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape[0] != act_dim:
        raise EnvError(f"{env_name}: action must have {act_dim} element(s), got shape {np.shape(action)}")
    return np.clip(a, -1.0, 1.0)


# --------------------------------------------------------------------------- raster
# Tiny numpy drawing helpers for ``render_mode="rgb_array"`` (no matplotlib).


def pixel_centres(size: int, lim: tuple[float, float]) -> np.ndarray:
    """World coordinates of the centres of ``size`` pixels spanning ``lim`` (increasing)."""
    return _cell_centres(lim, size)


def world_to_pixel(x: float, y: float, xlim, ylim, height: int, width: int) -> tuple[int, int]:
    """(row, col) of the pixel containing world point (x, y); row 0 is the top (largest y).
    Points outside the limits are clamped onto the image border."""
    col = (x - xlim[0]) / (xlim[1] - xlim[0]) * width
    row = (ylim[1] - y) / (ylim[1] - ylim[0]) * height
    return int(min(max(row, 0.0), height - 1.0)), int(min(max(col, 0.0), width - 1.0))


def stamp_disc(img: np.ndarray, row: int, col: int, radius_px: int, colour) -> None:
    """Paint a disc of ``radius_px`` pixels centred on pixel (row, col); only a local
    patch of the image is touched, so this is cheap enough to call every frame."""
    h, w = img.shape[:2]
    r0, r1 = max(row - radius_px, 0), min(row + radius_px + 1, h)
    c0, c1 = max(col - radius_px, 0), min(col + radius_px + 1, w)
    rr, cc = np.ogrid[r0:r1, c0:c1]
    mask = (rr - row) ** 2 + (cc - col) ** 2 <= radius_px**2
    img[r0:r1, c0:c1][mask] = colour


def plane_pixels(plane: PlaneSlice, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a ``size`` x ``size`` image of ``plane``: (xs, ys, gx, gy), with
    image row 0 at the top (largest y), so ``gx``/``gy`` index like the image."""
    xs = pixel_centres(size, plane.xlim)
    ys = pixel_centres(size, plane.ylim)[::-1]
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, gx, gy
