"""The benchmark suites: velocity-constrained MuJoCo locomotion (statewise[mujoco], gymnasium 1.x) and
Safety-Gymnasium (its own virtual environment, gymnasium 0.29). Each adapter is checked against the raw
environment it wraps, and each suite gets a smoke training run through the vectorised collector.

The Safety-Gymnasium part runs in its own environment (README: ``python -m pytest -m "not mujoco"``)."""

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest

import statewise
from statewise.envs import VELOCITY_TASKS, make_env
from statewise.envs import safety_gymnasium as sg
from statewise.errors import EnvError


def _rollout(env, actions, seed):
    """Reset with ``seed`` and step through ``actions`` until the episode ends; returns the step tuples."""
    first = env.reset(seed=seed)[0]
    out = []
    for a in actions:
        out.append(env.step(a))
        if out[-1][-3] or out[-1][-2]:  # terminated or truncated (5- and 6-tuples alike)
            break
    return first, out


def _actions(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, (n,) + space.shape).astype(space.dtype)


def _smoke(tmp_path, env_id, num_envs, mode, sets=()):
    cfg = statewise.Config(algo="sac-alam", env=env_id, steps=240, seed=1, run_dir=str(tmp_path / "run"),
                           progress=False, eval_every=240, eval_episodes=1, final_eval_episodes=1, log_every=60,
                           probe_size=16, threads=1, max_episode_steps=60, num_envs=num_envs, vector_mode=mode)
    cfg.sac.hidden = cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = cfg.sac.start_steps = 32
    cfg.apply_overrides(list(sets))
    summary = statewise.train(cfg).summary
    assert summary["steps"] == 240 and summary["gradient_updates"] == 240 - 32
    assert np.isfinite(summary["final_eval"]["return"]) and summary["mc_calibration"]["states"] > 0
    return summary


# ------------------------------------------------------------------------------------------- velocity


def test_velocity_tasks_are_the_six_robots_with_safety_gymnasium_v1_thresholds():
    assert {k: v[1] for k, v in VELOCITY_TASKS.items()} == {
        "statewise/HalfCheetahVelocity-v0": 3.2096, "statewise/HopperVelocity-v0": 0.7402,
        "statewise/Walker2dVelocity-v0": 2.3415, "statewise/AntVelocity-v0": 2.6222,
        "statewise/SwimmerVelocity-v0": 0.2282, "statewise/HumanoidVelocity-v0": 1.4149}
    assert all(gym.registry[k].max_episode_steps == 1000 for k in VELOCITY_TASKS)


def test_velocity_task_without_mujoco_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # import mujoco now raises ImportError
    with pytest.raises(EnvError, match=r"need MuJoCo.*\[mujoco\]"):
        make_env("statewise/HalfCheetahVelocity-v0")


@pytest.mark.mujoco
@pytest.mark.parametrize("env_id, planar", [("statewise/HalfCheetahVelocity-v0", False),
                                            ("statewise/AntVelocity-v0", True)])
def test_velocity_cost_against_the_raw_gymnasium_env(env_id, planar):
    """Same seed and actions as gymnasium's own env: identical observations, rewards and ends; the cost is
    1[speed > threshold] with speed = x velocity (or planar speed) from the raw env's info. A low threshold
    makes both cost values occur."""
    base, _, _ = VELOCITY_TASKS[env_id]
    threshold = 0.3
    ours = make_env(env_id, threshold=threshold)
    raw = gym.make(base)
    actions = _actions(raw.action_space, 150)
    first, got = _rollout(ours, actions, seed=4)
    first_raw, want = _rollout(raw, actions, seed=4)
    np.testing.assert_array_equal(first, first_raw)
    assert len(got) == len(want)
    costs = []
    for (o, r, term, trunc, info), (o_raw, r_raw, term_raw, trunc_raw, info_raw) in zip(got, want, strict=True):
        np.testing.assert_array_equal(o, o_raw)
        assert (r, term, trunc) == (r_raw, term_raw, trunc_raw)
        vx = info_raw["x_velocity"]
        speed = np.hypot(vx, info_raw["y_velocity"]) if planar else vx
        assert info["speed"] == pytest.approx(speed) and info["cost"] == float(speed > threshold)
        assert info["constraint"] == pytest.approx(speed - threshold)
        costs.append(info["cost"])
    assert 0.0 in costs and 1.0 in costs


@pytest.mark.mujoco
def test_velocity_smoke_training_vectorised(tmp_path):
    """Hopper terminates when it falls: exercises terminations inside a vector env of MuJoCo tasks."""
    _smoke(tmp_path, "statewise/HopperVelocity-v0", num_envs=2, mode="sync")


@pytest.mark.mujoco
def test_velocity_tasks_give_h_for_the_reachability_and_barrier_signals(tmp_path):
    """h(s) = speed - threshold at every step, and -threshold at reset (the robot starts at rest)."""
    env = make_env("statewise/HopperVelocity-v0")
    _, info = env.reset(seed=0)
    assert info["constraint"] == -VELOCITY_TASKS["statewise/HopperVelocity-v0"][1]
    for signal in ("hjr", "cbf"):
        _smoke(tmp_path / signal, "statewise/HopperVelocity-v0", 2, "sync", [f"constraint.signal={signal}"])


@pytest.mark.safety_gymnasium
def test_safety_gymnasium_refuses_the_signals_that_need_h(tmp_path, capsys):
    """Safety-Gymnasium reports only a cost (hazard penetration, no signed distance): hjr and cbf are refused in one
    line before anything is written; cdf, which needs only the cost, trains."""
    from statewise.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--env", "SafetyPointGoal1-v0", "--steps", "300", "--run-dir", str(tmp_path / "r"),
              "--set", "constraint.signal=hjr", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("statewise: error: constraint.signal hjr needs the signed constraint h(s)")
    assert not (tmp_path / "r").exists()
    _smoke(tmp_path, "SafetyPointGoal1-v0", 1, "single", ["constraint.signal=cdf"])


# ------------------------------------------------------------------------------------ Safety-Gymnasium


def test_safety_gymnasium_ids_are_recognised():
    assert all(sg.is_safety_gymnasium_id(i) for i in sg.SUITE)
    assert not sg.is_safety_gymnasium_id("statewise/HalfCheetahVelocity-v0")
    assert not sg.is_safety_gymnasium_id("HalfCheetah-v5")


def test_safety_gymnasium_missing_says_how_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "safety_gymnasium", raising=False)
    monkeypatch.setattr(sg.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvError, match=r"not installed.*--no-deps safety-gymnasium==1\.0\.0"):
        sg.load()


def test_safety_gymnasium_id_without_the_extra_fails_in_one_line(tmp_path, capsys):
    if importlib.util.find_spec("safety_gymnasium") is not None:
        pytest.skip("Safety-Gymnasium is installed here")
    from statewise.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--env", "SafetyPointGoal1-v0", "--steps", "100", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "pip install" in err
    assert not (tmp_path / "r").exists()


def test_ndarray_dataclass_defaults_workaround_is_scoped():
    import dataclasses

    original = dataclasses._get_field
    with sg._ndarray_defaults_as_factories():
        @dataclasses.dataclass
        class Geom:
            color: np.ndarray = np.array([1.0, 0.0])

    assert dataclasses._get_field is original  # restored
    a, b = Geom(), Geom()
    np.testing.assert_array_equal(a.color, [1.0, 0.0])
    a.color[0] = 5.0
    assert b.color[0] == 1.0  # each instance owns its copy
    if sys.version_info >= (3, 11):
        with pytest.raises(ValueError, match="mutable default"):
            @dataclasses.dataclass
            class Plain:
                color: np.ndarray = np.array([1.0])


@pytest.mark.safety_gymnasium
@pytest.mark.parametrize("env_id", sg.SUITE)
def test_safety_gymnasium_adapter_against_the_raw_env(env_id):
    """statewise's env and safety_gymnasium.make's env, same seed and actions: same observations, rewards, ends,
    and info['cost'] equal to the raw 6-tuple's cost; the suite's time limit (1000 steps, 500 for Circle) is kept."""
    safety_gymnasium = sg.load()
    if env_id in sg.UNSUPPORTED:
        with pytest.raises(EnvError, match="cannot run with MuJoCo 3.*statewise/SwimmerVelocity-v0"):
            make_env(env_id)
        with pytest.raises(ValueError, match="collision"):  # the reason given is the real one
            safety_gymnasium.make(env_id)
        return
    ours = make_env(env_id)
    raw = safety_gymnasium.make(env_id)
    actions = _actions(raw.action_space, 40)
    first, got = _rollout(ours, actions, seed=7)
    first_raw, want = _rollout(raw, actions, seed=7)
    np.testing.assert_array_equal(first, first_raw)
    assert len(got) == len(want) > 0
    for (o, r, term, trunc, info), (o_raw, r_raw, c_raw, term_raw, trunc_raw, _) in zip(got, want, strict=True):
        np.testing.assert_array_equal(o, o_raw)
        assert (r, term, trunc) == (r_raw, term_raw, trunc_raw)
        assert isinstance(info["cost"], float) and info["cost"] == float(c_raw)
    assert ours.get_wrapper_attr("_max_episode_steps") == raw.get_wrapper_attr("_max_episode_steps") in (500, 1000)


@pytest.mark.safety_gymnasium
@pytest.mark.parametrize("env_id", list(VELOCITY_TASKS))
def test_velocity_cost_definition_equals_safety_gymnasium(env_id):
    """Our VelocityCost on gymnasium 0.29's v4 robot reproduces Safety-Gymnasium's v1 velocity task step by step:
    same threshold, same speed measure (x or planar), same cost. Random actions barely move the robots, so the
    threshold is set on both sides to the median speed of the rollout, which makes both cost values occur."""
    from statewise.envs.velocity import VelocityCost

    safety_gymnasium = sg.load()
    base, threshold, planar = VELOCITY_TASKS[env_id]
    robot = base.split("-")[0]
    if f"Safety{robot}Velocity-v1" in sg.UNSUPPORTED:  # cannot be built here: compare with its source instead
        import importlib
        import inspect

        module = importlib.import_module(f"safety_gymnasium.tasks.safe_velocity.safety_{robot.lower()}_velocity_v1")
        assert f"self._velocity_threshold = {threshold}" in inspect.getsource(module)
        assert "cost = float(x_velocity > self._velocity_threshold)" in inspect.getsource(module) and not planar
        return
    reference = safety_gymnasium.make(f"Safety{robot}Velocity-v1")
    assert reference.unwrapped._velocity_threshold == threshold
    ours = VelocityCost(gym.make(f"{robot}-v4"), threshold, planar)
    actions = _actions(ours.action_space, 120)
    ours.threshold = reference.unwrapped._velocity_threshold = float(
        np.median([step[-1]["speed"] for step in _rollout(ours, actions, seed=3)[1]]))
    _, want = _rollout(reference, actions, seed=3)
    _, got = _rollout(ours, actions, seed=3)
    assert [g[-1]["cost"] for g in got] == [w[2] for w in want[: len(got)]]
    assert {g[-1]["cost"] for g in got} == {0.0, 1.0}


@pytest.mark.safety_gymnasium
@pytest.mark.parametrize("num_envs, mode", [(1, "single"), (2, "async")])
def test_safety_gymnasium_smoke_training(tmp_path, num_envs, mode):
    _smoke(tmp_path, "SafetyPointGoal1-v0", num_envs, mode)


SG_PARTS = ["cost_hazards", "cost_gremlins", "cost_buttons"]


@pytest.mark.safety_gymnasium
def test_safety_gymnasium_cost_parts_are_read_as_named_constraints():
    """SafetyPointButton1's separate cost parts, read by name from info (constraint.costs); its total cost is their
    sum, as Safety-Gymnasium reports it."""
    from statewise.envs.named_costs import PARTS, NamedCosts

    env = NamedCosts(make_env("SafetyPointButton1-v0"), SG_PARTS)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        info = env.step(env.action_space.sample())[-1]
        assert info[PARTS].tolist() == [info[name] for name in SG_PARTS]
        assert info["cost"] == pytest.approx(float(info[PARTS].sum()))


@pytest.mark.safety_gymnasium
@pytest.mark.parametrize("num_envs, mode", [(1, "single"), (2, "async")])
def test_safety_gymnasium_trains_on_its_separate_cost_parts(tmp_path, num_envs, mode):
    summary = _smoke(tmp_path, "SafetyPointButton1-v0", num_envs, mode,
                     ["constraint.costs=[" + ",".join(SG_PARTS) + "]"])
    assert list(summary["constraints"]) == SG_PARTS
    assert all(f"step_violation_rate[{name}]" in summary["final_eval"] for name in SG_PARTS)


# ------------------------------------------------------------------------------------------------ video


def _mp4_frames(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta, [np.frombuffer(f, np.uint8) for f in reader]


@pytest.mark.video
def test_eval_video_of_a_builtin_task(tmp_path, tiny, capsys):
    """Built-in tasks draw their frames with numpy: no display or OpenGL needed. One MP4 per episode, one frame
    per step plus the reset; a second call refuses to overwrite them."""
    from statewise.cli import main

    run = statewise.train(tiny(tmp_path / "r", "sac-alam", env="statewise/PointHazard-v0", steps=200)).run_dir
    main(["eval", str(run), "--episodes", "2", "--video", "--video-episodes", "2", "--seed", "5"])
    paths = [run / "videos" / f"episode-seed{s}.mp4" for s in (5, 6)]
    assert [f"video: {p}" for p in paths] == capsys.readouterr().out.splitlines()[:2]
    from statewise.run.evaluate import run_episodes

    env = make_env("statewise/PointHazard-v0", render_mode="rgb_array")
    env.reset(seed=5)
    h, w = env.render().shape[:2]
    meta, frames = _mp4_frames(paths[0])
    assert tuple(meta["size"]) == (w + w % 2, h + h % 2) and meta["fps"] == env.metadata["render_fps"]
    agent = statewise.load(run)
    length = run_episodes(env, agent.act, [5])["length"]
    assert len(frames) == length + 1 and not np.array_equal(frames[0], frames[-1])
    before = paths[0].stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--video", "--seed", "5"])
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
    assert paths[0].stat().st_mtime_ns == before and not list((run / "videos").glob("*.tmp"))


@pytest.mark.video
def test_eval_video_of_an_env_that_cannot_render(tmp_path, tiny, capsys):
    from statewise.cli import main

    cfg = tiny(tmp_path / "r", "sac-lag", env="_toy_envs:ToyCost-v0", steps=150)
    cfg.max_episode_steps = 10
    run = statewise.train(cfg).run_dir
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--video"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "render_mode" in err


def _eval_video_subprocess(run, out, **env_vars):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "statewise.cli", "eval", str(run), "--episodes", "1", "--video",
                           "--video-dir", str(out)], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.mujoco
@pytest.mark.video
def test_eval_video_of_a_mujoco_task_headless(tmp_path, tiny):
    """No display, no MUJOCO_GL: statewise picks MuJoCo's EGL backend. With a backend that is not installed
    (OSMesa here), it says so in one line and how to fix it."""
    import ctypes.util

    cfg = tiny(tmp_path / "r", "sac-lag", env="statewise/HalfCheetahVelocity-v0", steps=150)
    cfg.max_episode_steps = 30
    run = statewise.train(cfg).run_dir
    done = _eval_video_subprocess(run, tmp_path / "egl")
    assert done.returncode == 0, done.stderr
    meta, frames = _mp4_frames(tmp_path / "egl" / "episode-seed12345.mp4")
    assert len(frames) == 31 and np.mean(frames[0]) > 10  # a real picture, not a black frame
    if ctypes.util.find_library("OSMesa") is None:
        failed = _eval_video_subprocess(run, tmp_path / "osmesa", MUJOCO_GL="osmesa")
        err = [line for line in failed.stderr.splitlines() if line.startswith("statewise: error")]
        assert failed.returncode == 2 and len(err) == 1 and "cannot render offscreen" in err[0]
        assert not (tmp_path / "osmesa" / "episode-seed12345.mp4").exists()


@pytest.mark.safety_gymnasium
@pytest.mark.video
def test_eval_video_of_safety_gymnasium_headless(tmp_path):
    """Safety-Gymnasium renders offscreen too (EGL chosen automatically; its render markers, which crash
    MuJoCo 3 under gymnasium 0.29, are dropped)."""
    summary = _smoke(tmp_path, "SafetyPointGoal1-v0", 1, "single")
    assert summary["steps"] == 240
    done = _eval_video_subprocess(tmp_path / "run", tmp_path / "video")
    assert done.returncode == 0, done.stderr[-2000:]
    _, frames = _mp4_frames(tmp_path / "video" / "episode-seed12345.mp4")
    assert len(frames) == 61 and np.mean(frames[-1]) > 10
