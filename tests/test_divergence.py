"""Divergence is caught: a non-finite observation, reward, loss, parameter or λ stops that run at the log step with
one line, a summary that says it failed and a non-zero exit; the other members of a population are untouched; a
failed run is never counted as safe; absurd hyper-parameters are refused before anything runs."""

import json
import math

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


# ---------------------------------------------------------------- one test per divergence check of the trainer
# Each drives a run into exactly one kind of non-finite value and checks the one line on stderr (quantity and step),
# summary.json, and that the run directory holds, when the run returns, exactly what it held when the run failed.

def _files(run_dir):
    """Every file of a run directory and its bytes (tb/ aside: TensorBoard writes in a thread of its own)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.relative_to(run_dir).parts[0] != "tb"}


@pytest.fixture
def at_failure(monkeypatch):
    """run_dir -> its files at the moment Trainer.fail returned."""
    from statewise.run.trainer import Trainer

    snapshots, original = {}, Trainer.fail

    def fail(self, k, t, quantity):
        original(self, k, t, quantity)
        snapshots.setdefault(self.members[k].run_dir, _files(self.members[k].run_dir))

    monkeypatch.setattr(Trainer, "fail", fail)
    return snapshots


def _diverged_cfg(tmp_path, env, algo="sac-alam", steps=300):
    import _divergent_envs  # noqa: F401  (registers the environments)

    cfg = tiny_config(tmp_path / "unused", algo, env, steps)
    cfg.compile = False
    return cfg


def _assert_failed(result, at_failure, err, step, quantity):
    """The run stopped at ``step`` because of ``quantity``: one line, a failed summary, nothing written after."""
    run_dir = result.run_dir
    lines = [line for line in err.splitlines() if line.startswith("statewise: run ")]
    assert lines == [f"statewise: run {run_dir} failed at step {step}: non-finite {quantity}"], err
    assert result.failed
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failure"] == {"step": step, "quantity": quantity}
    assert summary["steps"] == step and "final_eval" not in summary
    assert _files(run_dir) == at_failure[run_dir]  # nothing was written after the failure
    assert not (run_dir / "probe.npz").exists()
    logged = [int(r["step"]) for r in _csv_rows(run_dir / "metrics.csv")]
    assert logged and max(logged) <= step
    if (run_dir / "eval.csv").exists():
        assert max(int(r["step"]) for r in _csv_rows(run_dir / "eval.csv")) <= step
    if summary["last_checkpoint_step"] is not None:  # the checkpoint kept is the last one before the failure
        agent = statewise.load(run_dir)
        assert agent.step == summary["last_checkpoint_step"] < step and all(agent.sac.finite_members())
    return summary


def test_a_non_finite_loss_fails_at_the_log_that_sees_it(tmp_path, capsys, at_failure):
    """Rewards of 1e20 from step 121 on: the critic's squared error overflows to inf in float32 while its clipped
    gradient, and so every parameter, stays finite. The log at step 150 sees the loss."""
    from _divergent_envs import BAD_AFTER

    cfg = _diverged_cfg(tmp_path, "HugeReward-v0")
    cfg.run_dir = str(tmp_path / "run")
    result = statewise.train(cfg, plots=False)
    step = (BAD_AFTER // cfg.log_every + 1) * cfg.log_every  # the first log after the first huge reward: 150
    summary = _assert_failed(result, at_failure, capsys.readouterr().err, step, "reward_critic_loss")
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert float(rows[-1]["reward_critic_loss"]) == float("inf") and math.isfinite(float(rows[-1]["actor_loss"]))
    assert summary["last_checkpoint_step"] is None and not (result.run_dir / "eval.csv").exists()


def test_a_non_finite_lambda_fails_at_the_log_that_sees_it(tmp_path, capsys, at_failure, monkeypatch):
    """λ(s) on one probe state turns NaN after 60 updates (parameters, losses and the batch λ stay finite): the
    λ probe's check fails the run at the next log, step 200."""
    from statewise.method.sac import SAC

    original = SAC.lam

    def lam(self, obs):
        out = original(self, obs)
        if self.n_updates >= 60:
            out = out.clone()
            out[:, 3] = float("nan")
        return out

    monkeypatch.setattr(SAC, "lam", lam)
    cfg = _diverged_cfg(tmp_path, "statewise/DoubleIntegrator-v0")
    cfg.run_dir = str(tmp_path / "run")
    result = statewise.train(cfg, plots=False)
    _assert_failed(result, at_failure, capsys.readouterr().err, 200, "λ")
    last = _csv_rows(result.run_dir / "metrics.csv")[-1]
    assert int(last["step"]) == 200 and math.isnan(float(last["lam_probe_mean"]))
    assert math.isfinite(float(last["lam_batch_mean"])) and math.isfinite(float(last["actor_loss"]))


@pytest.mark.parametrize("where,inject_at,checkpoint_every,steps", [
    ("log", 200, 130, 300),  # a log step that is no checkpoint step: checkpoint 130 kept
    ("checkpoint", 260, 130, 300),  # a checkpoint step that is no log step: checkpoint 130 kept, none at 260
    ("finish", 280, 100, 280),  # the last step, after the last log (250): checkpoint 200 kept, no final one
])
def test_non_finite_parameters_fail_where_they_are_checked(tmp_path, capsys, at_failure, monkeypatch, where,
                                                          inject_at, checkpoint_every, steps):
    """NaN written into member 1's target critics by the update of step ``inject_at`` (its statistics are computed
    before): no action, loss or λ shows it at that step, only the parameter check of the log, the checkpoint or the
    finish. Member 0 of the same population finishes."""
    from statewise.method.sac import SAC

    cfg = _diverged_cfg(tmp_path, "statewise/DoubleIntegrator-v0", steps=steps)
    cfg.checkpoint_every = checkpoint_every
    original = SAC.update
    nth = inject_at - cfg.sac.start_steps  # update_ratio 1: the update of step t is the (t - start_steps)-th

    def update(self, buffer, log=False):
        out = original(self, buffer, log)
        if self.n_updates == nth:
            with torch.no_grad():
                next(self.critic_target.parameters())[1].fill_(float("nan"))
        return out

    monkeypatch.setattr(SAC, "update", update)
    results = train_population(population_configs(cfg, [0, 1], tmp_path / "pop"), plots=False)
    assert not results[0].failed and results[0].summary["status"] == "ok"
    summary = _assert_failed(results[1], at_failure, capsys.readouterr().err, inject_at, "network parameters")
    assert summary["last_checkpoint_step"] == (inject_at - 1) // checkpoint_every * checkpoint_every
    assert max(int(r["step"]) for r in _csv_rows(results[1].run_dir / "metrics.csv")) == (
        inject_at // cfg.log_every * cfg.log_every)


def test_a_non_finite_cost_fails_at_its_step(tmp_path, capsys, at_failure):
    """The environment's cost is NaN from step 121 on: the step fails at once, naming the environment and the cost."""
    from _divergent_envs import BAD_AFTER

    cfg = _diverged_cfg(tmp_path, "NaNCost-v0")
    cfg.run_dir = str(tmp_path / "run")
    result = statewise.train(cfg, plots=False)
    step = BAD_AFTER + 1
    quantity = f"environment output (environment 'NaNCost-v0' reported a non-finite cost (nan) at step {step})"
    summary = _assert_failed(result, at_failure, capsys.readouterr().err, step, quantity)
    assert summary["last_checkpoint_step"] is None and not (result.run_dir / "eval.csv").exists()


@pytest.mark.parametrize("signal", ["hjr", "cbf"])
def test_a_non_finite_constraint_fails_at_its_step(tmp_path, capsys, at_failure, signal):
    """info['constraint'] (h of the new state) is NaN from step 121 on while the cost stays finite: a signal that
    reads h(s) fails the run at that step."""
    from _divergent_envs import BAD_AFTER

    cfg = _diverged_cfg(tmp_path, "NaNConstraint-v0")
    cfg.constraint.signal = signal
    cfg.run_dir = str(tmp_path / "run")
    result = statewise.train(cfg, plots=False)
    summary = _assert_failed(result, at_failure, capsys.readouterr().err, BAD_AFTER + 1,
                             "constraint h(s) from the environment (info['constraint'])")
    assert summary["last_checkpoint_step"] is None


def test_a_signal_without_h_ignores_a_non_finite_constraint(tmp_path, capsys):
    """cvf never reads h(s): the same environment trains to the end (the h check is not a blanket NaN check)."""
    cfg = _diverged_cfg(tmp_path, "NaNConstraint-v0", steps=200)
    cfg.run_dir = str(tmp_path / "run")
    result = statewise.train(cfg, plots=False)
    assert not result.failed and result.summary["steps"] == 200
    assert "failed at step" not in capsys.readouterr().err
