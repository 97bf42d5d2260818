"""Value-bias diagnostic: Monte-Carlo truth against hand-computed values; measuring leaves training unchanged."""

import csv
import json

import numpy as np
import pytest
import torch

import statewise
from conftest import TASKS, tiny_config
from statewise import Config
from statewise.envs.double_integrator import DoubleIntegratorEnv
from statewise.errors import EnvError
from statewise.method.sac import SAC
from statewise.run.evaluate import build_env
from statewise.run.value_bias import feasible_states, monte_carlo_values


def make_sac(**sets) -> SAC:
    cfg = Config(algo="sac-alam")
    cfg.sac.hidden = [8, 8]
    cfg.multiplier.hidden = [8, 8]
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    cfg.validate()
    torch.manual_seed(0)
    return SAC.from_config(2, 1, cfg)


def test_transition_is_step_batched():
    env = DoubleIntegratorEnv()
    rng = np.random.default_rng(0)
    states = np.c_[rng.uniform(-11, 11, 64), rng.uniform(-5, 5, 64)]
    actions = rng.uniform(-1.5, 1.5, (64, 1))
    nxt, rew, cost, term = env.transition(states, actions)
    for k in range(64):
        env.reset(options={"state": states[k]})
        obs, r, terminated, _, info = env.step(actions[k].astype(np.float32))
        np.testing.assert_allclose(obs, nxt[k].astype(np.float32))
        assert (r, info["cost"], terminated) == (rew[k], cost[k], term[k])


def test_slack_is_room_under_optimal_braking():
    env = DoubleIntegratorEnv()
    # at rest: room = x_max - |x|; braking from v = 1 at x = 0 stops after 0.1 * (10 * 1 - 0.1 * 10 * 9 / 2) = 0.55 m
    np.testing.assert_allclose(env.slack(np.array([[0.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [6.0, 0.0]])),
                               [5.0, 2.0, 4.45, -1.0])
    grid = env.plane().grid(41)[2]
    assert np.array_equal(env.slack(grid) >= -env.FEASIBLE_TOL, env.feasible(grid))


def test_cost_truth_beyond_the_wall_is_hand_computed():
    # from (5.5, 0) no action sequence gets back below x = 5 within 10 steps (|Δv| <= 0.1 per step):
    # x_k >= 5.5 - 0.005 k (k - 1) > 5 for k <= 10, so the first 10 costs are 1 whatever the policy does
    sac = make_sac(constraint__gamma_c=0.9)
    out = monte_carlo_values(sac, DoubleIntegratorEnv(), np.array([[5.5, 0.0]]), rollouts=4, horizon=10,
                             generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out["qc_mc"], [sum(0.9**t for t in range(10))])
    # termination ends the sum: from x = 9.95 at speed 3 the first step leaves the domain (|x'| > 10)
    out = monte_carlo_values(sac, DoubleIntegratorEnv(), np.array([[9.95, 3.0]]), rollouts=2, horizon=50,
                             generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out["qc_mc"], [1.0])
    np.testing.assert_allclose(out["q_mc"], [0.3])  # r = dt * v, no entropy term after the first action


def test_reward_truth_is_the_soft_return():
    sac = make_sac(sac__reward_scale=2.0, sac__alpha_init=0.5)
    s0 = np.array([[0.0, 1.0]])
    out = monte_carlo_values(sac, DoubleIntegratorEnv(), s0, rollouts=1, horizon=2,
                             generator=torch.Generator().manual_seed(7))
    # by hand: step 0 with the deterministic action, step 1 with a sample of π and its entropy bonus
    with torch.no_grad():  # a population of one: (1, N, ...) in, (1, N, ...) out
        a0 = sac.actor.mode(torch.tensor(s0, dtype=torch.float32)[None])[0].numpy()
        s1 = np.array([[0.1, 1.0 + 0.1 * np.clip(a0[0, 0], -1, 1)]])
        eps = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(7))
        _, logp1 = sac.actor.sample(torch.tensor(s1, dtype=torch.float32)[None], eps)
    expected = 2.0 * 0.1 * 1.0 + 0.99 * (2.0 * 0.1 * s1[0, 1] - 0.5 * float(logp1))
    np.testing.assert_allclose(out["q_mc"], [expected], rtol=1e-5)
    with torch.no_grad():
        values = sac.critic(torch.tensor(s0, dtype=torch.float32)[None], torch.tensor(a0)[None])[0]
    np.testing.assert_allclose(out["q"], [float(values[:2].min())], rtol=1e-6)
    np.testing.assert_allclose(out["qc"], [float(values[2:].mean())], rtol=1e-6)  # the twins' mean by default


def test_feasible_states_are_exactly_feasible():
    env = build_env(TASKS[0])
    states = feasible_states(env, 50)
    assert states.shape == (50, 2) and env.unwrapped.feasible(states).all()
    np.testing.assert_array_equal(states, feasible_states(env, 50))  # a fixed set


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_measuring_value_bias_leaves_training_unchanged(tmp_path):
    plain = statewise.train(tiny_config(tmp_path / "plain", "sac-alam", seed=5)).run_dir
    cfg = tiny_config(tmp_path / "bias", "sac-alam", seed=5)
    cfg.value_bias = True
    bias = statewise.train(cfg).run_dir
    timing = {"time_s", "env_steps_per_s", "updates_per_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(read(plain / "metrics.csv")) == strip(read(bias / "metrics.csv"))
    assert read(plain / "eval.csv") == read(bias / "eval.csv")
    rows = read(bias / "value_bias.csv")
    assert [int(r["step"]) for r in rows] == [150, 300]
    for key in ("replay_qc_bias_median", "feasible_qc_bias_median", "feasible_q_mc", "feasible_lam_mean"):
        assert np.isfinite(float(rows[-1][key])), key
    assert json.loads((bias / "summary.json").read_text())["value_bias"]["feasible_qc_mc"] >= 0.0


def test_value_bias_needs_batched_dynamics(tmp_path):
    cfg = tiny_config(tmp_path / "ph", "sac-alam", TASKS[1])
    cfg.value_bias = True
    with pytest.raises(EnvError, match="batched dynamics"):
        statewise.train(cfg)
    assert not (tmp_path / "ph").exists()


@pytest.mark.parametrize("signal", ["cbf", "hjr", "cdf"])
def test_signal_truth_follows_the_signal(signal):
    """The Monte-Carlo truth of a signal other than cvf is its own recursion: for cbf the first (deterministic)
    step's h(s_1) - (1 - k) h(s_0); for hjr at least h(s_1) (the target never falls below h'); for cdf γ^k of the
    first violation."""
    sac = make_sac(constraint__signal=signal, constraint__gamma_c=0.9)
    env = DoubleIntegratorEnv()
    s0 = np.array([[2.0, 1.0], [-3.0, -2.0], [5.5, 0.0]])
    out = monte_carlo_values(sac, env, s0, rollouts=3, horizon=1 if signal == "cbf" else 40,
                             generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a0 = sac.actor.mode(torch.as_tensor(s0, dtype=torch.float32)[None])[0].numpy()
    s1 = env.transition(s0, a0)[0]
    if signal == "cbf":
        np.testing.assert_allclose(out["qc_mc"], env.constraint(s1) - 0.9 * env.constraint(s0))
    elif signal == "hjr":
        assert np.all(out["qc_mc"] >= env.constraint(s1) - 1e-12)
        assert out["qc_mc"][2] >= 0.5 - 1e-9 and out["qc_mc"][0] < 0.0  # 0.5 m beyond the wall at rest; 3 m inside
    else:
        assert out["qc_mc"][2] == pytest.approx(1.0)  # beyond the wall: violates at once, γ^0
        assert np.all((out["qc_mc"] >= 0.0) & (out["qc_mc"] <= 1.0))


def test_cost_value_is_the_twin_mean_by_default_as_documented(tmp_path):
    """Agent.cost_value combines the twin cost critics by constraint.twin_aggregate, the mean by default (no longer
    the max): its value is the twins' mean, and neither its docstring nor the diagnostics' call the default
    pessimistic."""
    import statewise.run.diagnostics as diagnostics
    from statewise.analysis.agent import Agent

    assert Config().constraint.twin_aggregate == "mean"
    sac = make_sac()
    agent = Agent(sac, Config(algo="sac-alam"), tmp_path)
    obs = np.random.default_rng(0).uniform(-3, 3, (16, 2)).astype(np.float32)
    with torch.no_grad():
        x = torch.as_tensor(obs).unsqueeze(0)
        twins = sac.critic(x, sac.actor.mode(x))[:, 2:]
    np.testing.assert_allclose(agent.cost_value(obs), twins.mean(1)[0].numpy(), rtol=1e-6, atol=1e-6)
    for doc in (Agent.cost_value.__doc__, diagnostics.__doc__):
        text = " ".join(doc.lower().split())
        assert "pessimistic by default" not in text and "pessimistic cost value" not in text
    assert "mean by default" in " ".join(Agent.cost_value.__doc__.split())
