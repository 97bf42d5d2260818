"""Vectorised collection (statewise.run.collect): N = 1 in every mode reproduces the unvectorised path, each of N
environments behaves like its own single environment (resets, truncation, final observations, costs), and the
update ratio is per collected transition."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

import statewise
from statewise.cli import main
from statewise.config import Config, min_training_steps
from statewise.errors import ConfigError
from statewise.run.collect import SingleCollector, make_collector
from statewise.run.evaluate import build_env

DI = "statewise/DoubleIntegrator-v0"


def _collect(collector, actions: np.ndarray, seed: int):
    """Step ``collector`` through ``actions`` (T, N, act_dim); returns the stacked Transitions fields."""
    first = collector.reset(seed)
    fields = {k: [] for k in ("next_obs", "reward", "cost", "terminated", "done", "obs")}
    for act in actions:
        step = collector.step(act)
        for k in fields:
            fields[k].append(np.array(getattr(step, k)))
    collector.close()
    return first, {k: np.stack(v) for k, v in fields.items()}


def _actions(steps: int, n: int, act_dim: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (steps, n, act_dim)).astype(np.float32)


@pytest.mark.parametrize("env_id, max_steps", [(DI, 0), ("_toy_envs:ToyCost-v0", 5)])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_env_in_a_vector_env_equals_the_unvectorised_path(env_id, max_steps, mode):
    make = functools.partial(build_env, env_id, max_steps)
    actions = _actions(400, 1, 1)
    first_ref, ref = _collect(SingleCollector(make()), actions, seed=11)
    first, got = _collect(make_collector(make, 1, mode), actions, seed=11)
    np.testing.assert_array_equal(first, first_ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    assert ref["done"].any()  # episodes really ended (terminated on the double integrator, truncated on the toy)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_of_n_envs_is_its_own_seeded_environment(mode):
    """Environment i of a vector env seeded s behaves exactly like one environment seeded s + i."""
    make = functools.partial(build_env, DI, 0)
    n, actions = 3, _actions(300, 3, 1)
    first, got = _collect(make_collector(make, n, mode), actions, seed=20)
    for i in range(n):
        first_i, ref = _collect(SingleCollector(make()), actions[:, i:i + 1], seed=20 + i)
        np.testing.assert_array_equal(first[i], first_i[0])
        for k in ref:
            np.testing.assert_array_equal(got[k][:, i], ref[k][:, 0], err_msg=f"{k} of env {i}")
    assert got["terminated"].any()


def test_truncation_keeps_final_observation_and_cost():
    """ToyCost counts steps (obs = t) and costs 0.5 per step; with a 5-step limit every 5th transition ends by
    truncation: next_obs is the final observation 5, the cost of that step is kept, the next obs is the reset 0."""
    make = functools.partial(build_env, "_toy_envs:ToyCost-v0", 5)
    _, got = _collect(make_collector(make, 2, "sync"), _actions(12, 2, 1), seed=0)
    t = np.arange(1, 13)
    np.testing.assert_array_equal(got["next_obs"][:, :, 0], np.stack([(t - 1) % 5 + 1] * 2, axis=1))
    np.testing.assert_array_equal(got["obs"][:, :, 0], np.stack([t % 5] * 2, axis=1))
    np.testing.assert_array_equal(got["done"], np.stack([t % 5 == 0] * 2, axis=1))
    assert not got["terminated"].any()
    assert np.all(got["cost"] == 0.5)


def test_training_with_one_env_is_identical_in_every_mode(tmp_path, tiny):
    rows = {}
    for mode in ("single", "sync"):
        cfg = tiny(tmp_path / mode, "sac-alam", steps=300)
        cfg.vector_mode = mode
        result = statewise.train(cfg)
        rows[mode] = (result.summary["final_eval"], result.summary["calibration"],
                      (result.run_dir / "eval.csv").read_text())
    assert rows["single"] == rows["sync"]


@pytest.mark.parametrize("n, ratio, mode", [(4, 0.5, "sync"), (3, 1.0, "async"), (1, 0.25, "single")])
def test_update_ratio_is_per_collected_transition(tmp_path, tiny, n, ratio, mode):
    cfg = tiny(tmp_path / "r", "fac", steps=300)
    cfg.num_envs, cfg.vector_mode, cfg.sac.update_ratio = n, mode, ratio
    summary = statewise.train(cfg).summary
    steps = summary["steps"]
    assert steps >= 300 and steps % n == 0 and summary["num_envs"] == n
    assert summary["gradient_updates"] == int((steps - cfg.sac.start_steps) * ratio)
    assert np.isfinite(summary["final_eval"]["return"])


@pytest.mark.parametrize("key, value, match", [
    ("num_envs", 0, "num_envs must be positive"),
    ("vector_mode", "threads", "unknown vector_mode"),
    ("sac.update_ratio", 0, "update_ratio must be positive"),
])
def test_bad_vector_settings_are_refused(key, value, match):
    cfg = Config()
    cfg.set(key, value)
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_single_mode_with_several_envs_is_refused():
    cfg = Config(num_envs=2, vector_mode="single")
    with pytest.raises(ConfigError, match="needs sync or async"):
        cfg.validate()
    assert Config(num_envs=2).validate().vector_mode == "sync"
    assert Config().validate().vector_mode == "single"


@pytest.mark.parametrize("n, ratio", [(1, 1.0), (1, 0.25), (3, 1.0), (4, 0.3), (2, 3.0)])
def test_min_training_steps_is_the_smallest_run_with_an_update(n, ratio):
    """As the trainer counts: member steps t = n, 2n, ... up to the first t >= steps; updates due at t are
    floor((t - start_steps) * ratio) once t > start_steps."""
    cfg = Config(num_envs=n)
    cfg.sac.start_steps, cfg.sac.update_ratio = 300, ratio

    def updates(steps: int) -> int:
        t = math.ceil(steps / n) * n
        return math.floor((t - 300) * ratio + 1e-9) if t > 300 else 0

    smallest = min_training_steps(cfg)
    assert updates(smallest) >= 1 and updates(smallest - 1) == 0


TINY = ["--set", "sac.hidden=[8,8]", "--set", "multiplier.hidden=[8,8]", "--set", "sac.batch_size=32",
        "--set", "sac.start_steps=32", "--set", "eval_episodes=4", "--set", "final_eval_episodes=2", "--no-progress"]


@pytest.mark.parametrize("n, mode, eval_every, step, episode_step", [
    (1, "single", 1000, 90, 15), (2, "sync", 1000, 180, 15), (2, "async", 1000, 180, 15),
    # the evaluation environment raises first: its 90th step (after the one step of the set-up check) is in the first
    # evaluation, in the 4th episode of 25 steps
    (1, "single", 20, 20, 14),
], ids=["single", "sync", "async", "evaluation"])
def test_an_environment_that_raises_fails_its_run_and_shows_its_traceback(tmp_path, capfd, monkeypatch, n, mode,
                                                                           eval_every, step, episode_step):
    """A bug in the user's environment (ToyRaising raises in the 90th step of its life): one line names the
    environment and the step, its traceback follows, the run directory is marked failed, and the exit code is 1."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run = tmp_path / "r"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", "_toy_envs:ToyRaising-v0", "--steps", "300", "--num-envs", str(n), "--vector-mode",
              mode, "--run-dir", str(run), "--set", f"eval_every={eval_every}", *TINY])
    err = capfd.readouterr().err
    assert exit_info.value.code == 1, err
    lines = err.splitlines()
    assert lines[0] == (f"statewise: run {run} failed at step {step}: environment 'ToyRaising-v0' raised "
                        f"ZeroDivisionError: the toy simulator divided by zero in step {episode_step} of an episode; "
                        "its traceback:"), err
    assert lines[1] == "Traceback (most recent call last):" and "in _collide" in err, err
    assert "ERROR" not in err and "Worker" not in err  # no echo from gymnasium's async workers
    assert lines[-1] == f"statewise: error: 1 of 1 run(s) failed: {run} at step {step}", err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failure"]["step"] == step
    assert "ZeroDivisionError" in summary["failure"]["error"]
