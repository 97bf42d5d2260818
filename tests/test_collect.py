"""Vectorised collection (statewise.run.collect): N = 1 in every mode reproduces the unvectorised path, each of N
environments behaves like its own single environment (resets, truncation, final observations, costs), and the
update ratio is per collected transition."""

import functools

import numpy as np
import pytest

import statewise
from statewise.config import Config
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
