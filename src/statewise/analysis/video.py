"""Headless evaluation videos: ``statewise eval RUN_DIR --video`` (MP4 via imageio-ffmpeg, the ``video`` extra).

Frames come from the environment's ``render_mode="rgb_array"``: the built-in tasks draw them with numpy (no
display, no OpenGL); MuJoCo tasks (``statewise/*Velocity-v0``, Safety-Gymnasium) render offscreen through
OpenGL, for which MuJoCo needs a headless backend chosen *before* it is imported: ``MUJOCO_GL=egl`` (EGL, e.g.
Mesa's libEGL, software or GPU) or ``MUJOCO_GL=osmesa``. :func:`use_headless_gl` picks EGL when nothing is set
and there is no display; when rendering still fails, :func:`record` says so in one line and how to fix it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from statewise.errors import EnvConstructionError, StatewiseError

VIDEO_INSTALL = 'pip install -e ".[video]" (from the statewise checkout)'


def use_headless_gl() -> None:
    """Select MuJoCo's EGL backend when no backend is chosen and there is no display. Must run before MuJoCo is
    imported (it reads MUJOCO_GL once); a no-op when MUJOCO_GL is set or a display exists."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "egl"


def video_paths(out_dir: Path, seed: int, episodes: int) -> list[Path]:
    """The files :func:`record` writes, one per episode: ``episode-seed<reset seed>.mp4``."""
    return [out_dir / f"episode-seed{seed + i}.mp4" for i in range(episodes)]


def record(env_id: str, max_episode_steps: int, policy: Callable[[np.ndarray], np.ndarray], out_dir: Path,
           episodes: int, seed: int) -> list[Path]:
    """Roll out ``policy`` for ``episodes`` episodes (reset seeds seed, seed+1, ..., the same episodes that
    :func:`statewise.run.evaluate.run_episodes` evaluates) and write one MP4 per episode into ``out_dir``.

    Refuses (one-line :class:`StatewiseError`) when a file exists, when imageio-ffmpeg is missing, or when the
    environment cannot render offscreen. Each file is written under a temporary name and renamed when complete.
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise StatewiseError(f"--video needs imageio-ffmpeg (the video extra): {VIDEO_INSTALL}") from None
    from statewise.run.evaluate import build_env

    paths = video_paths(out_dir, seed, episodes)
    existing = [p for p in paths if p.exists()]
    if existing:
        raise StatewiseError(f"{existing[0]} already exists; choose another --video-dir or --seed "
                             "(nothing was overwritten)")
    try:  # MuJoCo environments open their OpenGL context when made with a render mode
        env = build_env(env_id, max_episode_steps, render_mode="rgb_array")
    except EnvConstructionError as exc:  # OpenGL failures surface as many exception types
        raise _no_backend(env_id, exc.original) from None
    except StatewiseError:
        raise
    except Exception as exc:
        raise _no_backend(env_id, exc) from None
    try:
        fps = int(env.metadata.get("render_fps") or 30)
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(paths):
            _record_episode(imageio_ffmpeg, env, env_id, policy, seed + i, fps, path)
    finally:
        env.close()
    return paths


def _frame(env, env_id: str) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as exc:
        raise _no_backend(env_id, exc) from None
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4)):
        raise StatewiseError(f"'{env_id}' has no rgb_array rendering (render() returned "
                             f"{type(frame).__name__}); no video can be recorded")
    return frame


def _no_backend(env_id: str, exc: Exception) -> StatewiseError:
    backend = os.environ.get("MUJOCO_GL", "(unset)")
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return StatewiseError(
        f"'{env_id}' cannot render offscreen (MUJOCO_GL={backend}: {type(exc).__name__}: {first}); a headless "
        "OpenGL backend is needed: install EGL (Debian: libegl1) and set MUJOCO_GL=egl, or OSMesa (libosmesa6) "
        "and set MUJOCO_GL=osmesa")


def _record_episode(imageio_ffmpeg, env, env_id: str, policy: Callable[[np.ndarray], np.ndarray], seed: int,
                    fps: int, path: Path) -> None:
    """One episode to an H.264 MP4 (yuv420p, so frames are padded to even sizes). Frames go to ffmpeg as they
    are rendered (a 1000-step MuJoCo episode would be ~0.7 GB held in memory); the file is written under a
    temporary name and renamed when complete."""
    obs, _ = env.reset(seed=seed)
    frame = _frame(env, env_id)
    h, w = frame.shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    tmp = path.with_name(path.name + ".tmp")
    writer = imageio_ffmpeg.write_frames(str(tmp), (w + w % 2, h + h % 2), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-f", "mp4"],
                                         ffmpeg_log_level="error")
    try:
        try:
            writer.send(None)  # start ffmpeg
            writer.send(np.pad(frame[..., :3].astype(np.uint8), pad))
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(policy(obs))
                done = terminated or truncated
                writer.send(np.pad(_frame(env, env_id)[..., :3].astype(np.uint8), pad))
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
