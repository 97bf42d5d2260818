"""Smoke runs of every algorithm on every built-in task, determinism, save -> load -> act."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

import statewise
from conftest import TASKS, tiny_config
from statewise import ALGORITHMS
from statewise.run.evaluate import build_env, calibration, episode_seeds, run_episodes

TIMING_COLUMNS = {"time_s", "env_steps_per_s", "updates_per_s"}


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("env", TASKS)
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_smoke_every_algorithm_on_every_task(tmp_path, algo, env):
    result = statewise.train(tiny_config(tmp_path / "run", algo, env))
    d = result.run_dir
    for name in ("config.yaml", "versions.json", "metrics.csv", "eval.csv", "checkpoint.pt", "summary.json"):
        assert (d / name).is_file(), name
    assert list((d / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((d / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["gradient_updates"] == 200
    assert np.isfinite(summary["final_eval"]["return"])
    rows = read_rows(d / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(50, 301, 50))
    assert [int(r["step"]) for r in read_rows(d / "eval.csv")] == [150, 300]
    learning = rows[-1]
    assert np.isfinite(float(learning["actor_loss"])) and np.isfinite(float(learning["reward_critic_loss"]))
    # the cumulative violation count is the running sum of each window's ratio times its 50 transitions
    windows = np.array([float(r["train_violation_ratio"]) for r in rows]) * 50
    np.testing.assert_allclose(np.cumsum(windows), [float(r["cumulative_violations"]) for r in rows], atol=1e-9)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["algo"] == algo and cfg["multiplier"]["kind"] == ALGORITHMS[algo].kind  # 'auto' resolved
    if algo != "sac":
        for key in ("lam_probe_mean", "lam_probe_q90", "lam_eff_mean", "active_frac", "residual", "cost_critic_loss"):
            assert np.isfinite(float(learning[key])), key
        probe = np.load(d / "probe.npz")
        # λ on the 32 probe states at every log from the end of the warm-up (step 100) on: metrics.csv's probe
        # columns are these very values, read back from probe.npz
        assert probe["steps"].tolist() == list(range(100, 301, 50)) and probe["lam"].shape == (5, 32)
        logged = {int(r["step"]): r for r in rows}
        for step, lam in zip(probe["steps"], probe["lam"], strict=True):
            assert float(logged[step]["lam_probe_mean"]) == pytest.approx(float(lam.mean(dtype=np.float32)), rel=1e-6)
            assert float(logged[step]["lam_probe_max"]) == pytest.approx(float(lam.max()), rel=1e-6)
            assert float(logged[step]["lam_probe_q50"]) == pytest.approx(float(np.quantile(lam, 0.5)), rel=1e-5)
        assert rows[0]["lam_probe_mean"] == ""  # before the warm-up ends there is no probe set
        if env.endswith("DoubleIntegrator-v0"):
            assert 0.0 <= summary["calibration"]["lambda_auroc"] <= 1.0
        mc = summary["mc_calibration"]
        # every state of the 3 final episodes is labelled or censored (too close to the end to know its label)
        assert mc["states"] + mc["censored_states"] == round(3 * summary["final_eval"]["length"])
        assert mc["states"] > 0 and len(mc["lambda_reliability"]["violation_freq"]) <= 10


def test_same_seed_same_results(tmp_path):
    a = statewise.train(tiny_config(tmp_path / "a", "sac-alam", seed=3))
    b = statewise.train(tiny_config(tmp_path / "b", "sac-alam", seed=3))
    c = statewise.train(tiny_config(tmp_path / "c", "sac-alam", seed=4))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_rows(a.run_dir / "metrics.csv")) == strip(read_rows(b.run_dir / "metrics.csv"))
    assert read_rows(a.run_dir / "eval.csv") == read_rows(b.run_dir / "eval.csv")
    assert a.summary["final_eval"] == b.summary["final_eval"]
    sa = torch.load(a.run_dir / "checkpoint.pt", weights_only=True)["agent"]
    sb = torch.load(b.run_dir / "checkpoint.pt", weights_only=True)["agent"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert strip(read_rows(a.run_dir / "metrics.csv")) != strip(read_rows(c.run_dir / "metrics.csv"))


def test_fac_is_alam_with_both_components_off(tmp_path):
    fac = statewise.train(tiny_config(tmp_path / "fac", "fac"))
    cfg = tiny_config(tmp_path / "alam", "sac-alam")
    cfg.apply_overrides(["multiplier.penalty=lagrangian", "multiplier.update=dual-ascent"])
    off = statewise.train(cfg)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_rows(fac.run_dir / "metrics.csv")) == strip(read_rows(off.run_dir / "metrics.csv"))
    assert fac.summary["final_eval"] == off.summary["final_eval"]


def test_save_load_act_reproduces_final_evaluation(tmp_path):
    result = statewise.train(tiny_config(tmp_path / "run", "sac-alam"))
    agent = statewise.load(result.run_dir)
    env = build_env(agent.config.env, agent.config.max_episode_steps)
    again = run_episodes(env, agent.act, episode_seeds(agent.config.seed, "final", 3))
    assert again == result.summary["final_eval"]  # the same actions as the agent had in memory
    calib = calibration(env, agent.multiplier, agent.cost_value)
    assert calib == result.summary["calibration"]  # the same multipliers
    obs = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    assert agent.act(obs).shape == (5, 1) and agent.act(obs[0]).shape == (1,)
    lam = agent.multiplier(obs)
    assert lam.shape == (5,) and np.all(lam >= 0) and np.all(lam <= agent.config.multiplier.lam_max)
    np.testing.assert_array_equal(statewise.load(result.run_dir).multiplier(obs), lam)
    with pytest.raises(statewise.StatewiseError, match="observation must have shape"):
        agent.act(np.zeros(3))


def test_truncation_is_stored_as_non_terminal(tmp_path, monkeypatch):
    """Time-limit truncations must be stored with terminated = 0 (bootstrapped), real terminations with 1."""
    from statewise.method.buffer import ReplayBuffer

    flags, original = [], ReplayBuffer.add

    def recording_add(self, obs, act, rew, cost, next_obs, terminated):
        flags.extend((float(x[0]), bool(term)) for x, term in zip(next_obs[0], terminated[0], strict=True))  # member 0
        return original(self, obs, act, rew, cost, next_obs, terminated)

    monkeypatch.setattr(ReplayBuffer, "add", recording_add)
    cfg = tiny_config(tmp_path / "r", "fac", env="_toy_envs:ToyCost-v0", steps=150)
    cfg.max_episode_steps = 5  # every episode ends by truncation after 5 steps
    statewise.train(cfg)
    assert len(flags) == 150 and not any(term for _, term in flags)
    assert sum(1 for t, _ in flags if t == 5.0) == 30  # 30 truncations happened, none stored as terminal
    flags.clear()
    cfg = tiny_config(tmp_path / "d", "fac", steps=300)  # the double integrator terminates beyond |x| = 10
    statewise.train(cfg)
    assert all(term == (abs(x) > 10.0) for x, term in flags)


def test_train_does_not_modify_the_callers_config(tmp_path):
    cfg = tiny_config(tmp_path / "r", "sac-alam", steps=120)
    before = cfg.to_dict()
    statewise.train(cfg)
    assert cfg.to_dict() == before and cfg.multiplier.kind == "auto"


def test_train_accepts_dict_and_yaml(tmp_path):
    cfg = tiny_config(tmp_path / "d", "sac-lag", steps=200)
    result = statewise.train(cfg.to_dict())
    assert result.summary["algo"] == "sac-lag"
    (tmp_path / "c.yaml").write_text(tiny_config(tmp_path / "y", "sac", steps=200).to_yaml())
    assert statewise.train(tmp_path / "c.yaml").summary["algo"] == "sac"


def test_any_gymnasium_env_reporting_cost(tmp_path):
    """A plain Gymnasium env (module:Name form) and a Safety-Gymnasium-style 6-tuple env both train."""
    for env in ("_toy_envs:ToyCost-v0", "_toy_envs:ToySafetyGym-v0"):
        cfg = tiny_config(tmp_path / env.split(":")[1], "fac", env=env, steps=150)
        cfg.max_episode_steps = 20
        final = statewise.train(cfg).summary["final_eval"]
        # reward 1 and cost 0.5 on each of the 20 steps of every episode, whichever way the cost is reported
        assert (final["return"], final["cost"], final["length"]) == (20.0, 10.0, 20.0)
        assert final["step_violation_rate"] == 1.0 and final["episode_violation_prob"] == 1.0


def test_env_without_time_limit_is_refused(tmp_path):
    cfg = tiny_config(tmp_path / "r", "fac", env="_toy_envs:ToyCost-v0", steps=150)
    with pytest.raises(statewise.StatewiseError, match="no time limit"):
        statewise.train(cfg)
    assert not (tmp_path / "r").exists()


def test_training_violation_ratio_excludes_the_warm_up(tmp_path):
    # every violation happens in the first 100 transitions, which are exactly the random warm-up
    cfg = tiny_config(tmp_path / "r", "sac-lag", "_toy_envs:ToyEarlyCost-v0")
    summary = statewise.train(cfg).summary
    assert summary["train_violation_ratio"] == 0.0
    assert summary["train_violation_ratio_total"] == pytest.approx(100 / 300)


def test_training_seeds_never_share_evaluation_starts():
    """Each training seed evaluates from its own starts: no reset seed is shared between training seeds 0-99 or
    between a seed's periodic and final evaluations (contiguous offsets shared 16 of 20 starts across seeds 0-4)."""
    seen: dict[int, tuple[int, str]] = {}
    for seed in range(100):
        for purpose, n in (("eval", 20), ("final", 50)):
            for reset_seed in episode_seeds(seed, purpose, n):
                assert reset_seed not in seen, (seed, purpose, seen.get(reset_seed))
                seen[reset_seed] = (seed, purpose)
    assert episode_seeds(7, "eval", 5) == episode_seeds(7, "eval", 20)[:5]  # more episodes extend, never reshuffle
    # and so the starts themselves differ: the double integrator's initial states of seeds 0 and 1
    env = build_env("statewise/DoubleIntegrator-v0")
    starts = [{tuple(env.reset(seed=s)[0]) for s in episode_seeds(seed, "eval", 20)} for seed in (0, 1)]
    assert not starts[0] & starts[1]
