"""Divergence is caught: a non-finite observation, reward, loss, parameter or λ stops that run at the log step with
one line, a summary that says it failed and a non-zero exit; the other members of a population are untouched; a
failed run is never counted as safe; absurd hyper-parameters are refused before anything runs."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import statewise
from conftest import tiny_config
from statewise.api import population_configs, train_population
from statewise.cli import main
from statewise.config import Config
from statewise.envs.double_integrator import DoubleIntegratorEnv
from statewise.errors import ConfigError
from statewise.grid import report
from test_population import _same_files

BAD_AFTER = 130  # environment steps after which a bad environment starts emitting NaN


class _SometimesNaN(DoubleIntegratorEnv):
    """The double integrator, except that the copy first reset with seed 1 emits NaN (observation or reward) after
    BAD_AFTER steps. Every other seed behaves exactly like statewise/DoubleIntegrator-v0."""

    what = "reward"

    def reset(self, *, seed=None, options=None):
        if seed is not None and not hasattr(self, "_bad"):
            self._bad, self._n = seed == 1, 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._n = getattr(self, "_n", 0) + 1
        if getattr(self, "_bad", False) and self._n > BAD_AFTER:
            if self.what == "reward":
                reward = float("nan")
            else:
                obs = obs * np.nan
        return obs, reward, terminated, truncated, info


class _NaNObs(_SometimesNaN):
    what = "observation"


gym.register("SometimesNaNReward-v0", entry_point=_SometimesNaN, max_episode_steps=200)
gym.register("SometimesNaNObs-v0", entry_point=_NaNObs, max_episode_steps=200)


def _cfg(tmp_path, env="SometimesNaNReward-v0"):
    cfg = tiny_config(tmp_path / "unused", env=env)
    cfg.checkpoint_every = 100
    return cfg


@pytest.mark.parametrize("env,quantity", [("SometimesNaNReward-v0", "reward from the environment"),
                                          ("SometimesNaNObs-v0", "observation from the environment")])
def test_a_diverged_member_fails_alone_and_its_neighbours_are_unchanged(tmp_path, env, quantity):
    cfg = _cfg(tmp_path, env)
    together = train_population(population_configs(cfg, [0, 1, 2], tmp_path / "together"))
    alone = train_population(population_configs(cfg, [0], tmp_path / "alone"))
    ok, bad = together[0], together[1]
    assert not ok.failed and ok.summary["status"] == "ok" and not together[2].failed
    assert bad.failed
    summary = json.loads((bad.run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failure"] == {"step": BAD_AFTER + 1, "quantity": quantity}
    assert summary["last_checkpoint_step"] == 100 and "final_eval" not in summary
    # the last good checkpoint is kept, finite and loadable; nothing after the failure was written
    agent = statewise.load(bad.run_dir)
    assert agent.step == 100
    assert not (bad.run_dir / "probe.npz").exists()
    assert not (bad.run_dir / "eval.csv").exists()  # the first evaluation (step 150) came after the failure
    logged = [int(r["step"]) for r in _csv_rows(bad.run_dir / "metrics.csv")]
    assert logged and max(logged) < BAD_AFTER + 1  # the NaN step was caught by the step check, before the log
    # member 0 wrote exactly what it writes when it trains alone
    _same_files(alone[0].run_dir, ok.run_dir)


def test_non_finite_parameters_are_caught_before_they_act(tmp_path, monkeypatch):
    """NaN injected into member 1's actor after 40 updates: its next action is non-finite and the run stops there,
    before the action reaches the environment; member 0 finishes."""
    from statewise.method.sac import SAC

    original = SAC.update

    def update(self, buffer, log=False):
        out = original(self, buffer, log)
        if self.n_updates == 40:
            with torch.no_grad():
                next(self.actor.parameters())[1].fill_(float("nan"))
        return out

    monkeypatch.setattr(SAC, "update", update)
    cfg = _cfg(tmp_path, "statewise/DoubleIntegrator-v0")
    results = train_population(population_configs(cfg, [0, 1], tmp_path / "pop"))
    assert not results[0].failed and results[1].failed
    failure = results[1].summary["failure"]
    start = cfg.sac.start_steps
    assert failure["step"] == start + 41
    assert failure["quantity"] == "action from the policy"  # the first non-finite thing the loop sees
    assert results[1].summary["last_checkpoint_step"] == 100  # before the injection; never a NaN checkpoint
    assert all(statewise.load(results[1].run_dir).sac.finite_members())


def test_cli_exits_non_zero_and_says_which_step(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    path = tmp_path / "cfg.yaml"
    cfg.run_dir = ""
    path.write_text(cfg.to_yaml())
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(path), "--seed", "1", "--run-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"failed at step {BAD_AFTER + 1}: non-finite reward from the environment" in err
    assert "Traceback" not in err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_eval_refuses_a_non_finite_policy(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", steps=150)
    statewise.train(cfg)
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    key = next(k for k in ckpt["agent"] if k.startswith("actor."))
    ckpt["agent"][key].fill_(float("inf"))
    torch.save(ckpt, ckpt_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "run"), "--episodes", "1"])
    assert exit_info.value.code == 2
    assert "non-finite parameters" in capsys.readouterr().err


def test_report_counts_a_failed_run_as_failed_never_as_safe(tmp_path):
    cfg = _cfg(tmp_path)
    grid = tmp_path / "grid" / "SometimesNaNReward-v0"
    results = train_population(population_configs(cfg, [0, 1], grid))
    assert [r.failed for r in results] == [False, True]
    text = report(tmp_path / "grid").read_text()
    assert "**1 of 2 runs failed**" in text and "sac-alam-s1: non-finite reward from the environment at step" in text
    cost_row = next(line for line in text.splitlines() if line.startswith("| episode cost (last 10%) |"))
    ok_cost = float(np.mean([float(r["cost"]) for r in _csv_rows(results[0].run_dir / "eval.csv")][-1:]))
    assert "[1 of 2 non-finite]" in cost_row and f"{ok_cost:.3g}" in cost_row
    assert "**failed at step" in text  # the per-run table says so too


def _csv_rows(path):
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("key,value", [
    ("sac.lr_actor", "inf"), ("sac.lr_critic", ".nan"), ("multiplier.rho", "1e308"), ("sac.alpha_init", "inf"),
    ("sac.reward_scale", "inf"), ("sac.reward_scale", "0"), ("sac.reward_scale", "-1"), ("multiplier.lam_max", "1e30"),
    ("sac.lr_alpha", "2"), ("multiplier.lr", "-1e-3"), ("sac.target_entropy", "-inf"), ("multiplier.pid_ki", "1e9"),
    ("constraint.threshold", "inf"), ("sac.update_ratio", "1e6"),
])
def test_non_finite_and_absurd_hyperparameters_are_refused(key, value):
    cfg = Config()
    with pytest.raises(ConfigError):
        cfg.apply_overrides([f"{key}={value}"])
        cfg.validate()
