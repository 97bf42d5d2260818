"""The constraint-signal menu (statewise.method.signals): each Bellman target against hand-computed values, the
Monte-Carlo recursion against closed forms, the h(s) bookkeeping of the collector, and every signal trained with
every multiplier and penalty."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import statewise
from conftest import tiny_config
from statewise.config import ALGORITHMS, Config, ConstraintConfig
from statewise.errors import ConfigError, EnvError
from statewise.method.signals import (
    BarrierResidual,
    ConstraintDecay,
    CostValue,
    Reachability,
    make_signal,
    rollout_values,
)
from statewise.run.collect import make_collector
from statewise.run.evaluate import check_cost_signal

T = torch.tensor


def test_constraint_decay_target_by_hand():
    sig = ConstraintDecay(ConstraintConfig(signal="cdf", gamma_c=0.9))
    c = T([0.0, 1.0, 0.0, 0.0, 0.0])
    v_next = T([0.5, 0.5, 1.7, -0.3, 0.5])  # the target clips the bootstrapped value to [0, 1]
    term = T([0.0, 0.0, 0.0, 0.0, 1.0])
    y = sig.backup(c, v_next, term)
    torch.testing.assert_close(y, T([0.9 * 0.5, 1.0, 0.9 * 1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(sig.transition_value(np.array([0.0, 0.2, 3.0]), None, None), [0.0, 1.0, 1.0])
    assert sig.threshold == 0.1 and not sig.needs_constraint


def test_reachability_target_by_hand():
    sig = Reachability(ConstraintConfig(signal="hjr", gamma_c=0.9))
    h_next = T([-1.0, -1.0, 0.5, 0.5])
    v_next = T([-2.0, 3.0, -4.0, 3.0])
    term = T([0.0, 0.0, 0.0, 1.0])
    y = sig.backup(h_next, v_next, term)
    # (1 - γ) h' + γ max(h', V'); terminal: h'
    torch.testing.assert_close(y, T([0.1 * -1.0 + 0.9 * -1.0, 0.1 * -1.0 + 0.9 * 3.0, 0.1 * 0.5 + 0.9 * 0.5, 0.5]))
    np.testing.assert_array_equal(sig.transition_value(np.zeros(2), np.array([9.0, 9.0]), np.array([-1.0, 2.0])),
                                  [-1.0, 2.0])
    assert sig.threshold == 0.0 and sig.needs_constraint


def test_barrier_residual_target_by_hand():
    sig = BarrierResidual(ConstraintConfig(signal="cbf", gamma_c=0.9))  # k = auto = 1 - γ_c = 0.1
    x = sig.transition_value(np.zeros(3), np.array([-2.0, -0.5, 1.0]), np.array([-1.0, -0.6, 0.5]))
    np.testing.assert_allclose(x, [-1.0 + 0.9 * 2.0, -0.6 + 0.9 * 0.5, 0.5 - 0.9 * 1.0])
    y = sig.backup(torch.as_tensor(x), T([5.0, 5.0, 5.0], dtype=torch.float64), T([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.as_tensor(x))  # no bootstrapping
    other = BarrierResidual(ConstraintConfig(signal="cbf", cbf_k=0.5))
    np.testing.assert_allclose(other.transition_value(None, np.array([-2.0]), np.array([-1.5])), [-1.5 + 0.5 * 2.0])


def test_rollout_values_closed_forms():
    """One rollout per column: the backward recursion gives the closed-form value of each signal."""
    gamma = 0.9
    cost = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # (T=4, N=2)
    never = np.zeros_like(cost, dtype=bool)
    cvf = rollout_values(CostValue(ConstraintConfig(gamma_c=gamma)), cost, never)
    np.testing.assert_allclose(cvf, [gamma**2 + gamma**3, gamma])
    cdf = rollout_values(ConstraintDecay(ConstraintConfig(signal="cdf", gamma_c=gamma)), cost, never)
    np.testing.assert_allclose(cdf, [gamma**2, gamma])  # γ^k, k = steps to the first violation
    ended = never.copy()
    ended[1, 0] = True  # rollout 0 terminates after its 2nd step: its later costs do not count
    np.testing.assert_allclose(rollout_values(CostValue(ConstraintConfig(gamma_c=gamma)), cost, ended), [0.0, gamma])

    h = np.array([[-3.0], [-1.0], [-2.0]])  # h(s_1), h(s_2), h(s_3)
    hjr = rollout_values(Reachability(ConstraintConfig(signal="hjr", gamma_c=gamma)), h, np.zeros((3, 1), bool))
    v2 = -2.0
    v1 = 0.1 * -1.0 + 0.9 * max(-1.0, v2)
    v0 = 0.1 * -3.0 + 0.9 * max(-3.0, v1)
    np.testing.assert_allclose(hjr, [v0])
    undiscounted = Reachability(ConstraintConfig(signal="hjr", gamma_c=1.0))
    np.testing.assert_allclose(rollout_values(undiscounted, h, np.zeros((3, 1), bool)), [-1.0])  # max_t h(s_t)


def test_critic_fixed_point_is_the_monte_carlo_value():
    """On a deterministic 4-step chain, iterating each signal's Bellman target converges to the value of the rest of
    the chain worked out by hand from the signal's definition, and so does rollout_values (the Monte-Carlo truth of
    the value-bias diagnostic, itself built from the backups)."""
    gamma = 0.8
    h = np.array([-2.0, -0.5, 0.5, -1.0, -3.0])  # h(s_0) ... h(s_4); s_4 is terminal
    cost = (h[1:] > 0).astype(np.float64)  # only the step s_1 -> s_2 violates
    term = np.array([0.0, 0.0, 0.0, 1.0])
    by_hand = {
        # discounted cost ahead: the violation one step after s_0, at once from s_1, none from s_2 and s_3
        "cvf": [gamma * 1.0, 1.0, 0.0, 0.0],
        # γ^k with k the steps to the first violation: the same chain, so the same values (one violation only)
        "cdf": [gamma, 1.0, 0.0, 0.0],
        # h' if terminal, else (1 - γ) h' + γ max(h', V'), from the end: V_3 = -3, V_2 = 0.2·-1 + 0.8·max(-1, -3),
        # V_1 = 0.2·0.5 + 0.8·max(0.5, V_2), V_0 = 0.2·-0.5 + 0.8·max(-0.5, V_1)
        "hjr": [-0.1 + 0.8 * 0.5, 0.1 + 0.8 * 0.5, -0.2 - 0.8 * 1.0, -3.0],
        # h(s') - (1 - k) h(s) with k = 1 - γ = 0.2, nothing bootstrapped
        "cbf": [-0.5 + 0.8 * 2.0, 0.5 + 0.8 * 0.5, -1.0 - 0.8 * 0.5, -3.0 + 0.8 * 1.0],
    }
    assert by_hand["hjr"] == pytest.approx([0.3, 0.5, -1.0, -3.0]) and by_hand["cbf"] == pytest.approx(
        [1.1, 0.9, -1.4, -2.2])
    for name, expected in by_hand.items():
        sig = make_signal(ConstraintConfig(signal=name, gamma_c=gamma))
        x = torch.as_tensor(sig.transition_value(cost, h[:-1], h[1:]))
        q = torch.zeros(4, dtype=torch.float64)
        for _ in range(50):  # Q(s_t) <- y(x_t, Q(s_{t+1}), term_t)
            q = sig.backup(x, torch.cat([q[1:], q.new_zeros(1)]), torch.as_tensor(term))
        np.testing.assert_allclose(q.numpy(), expected, atol=1e-12, err_msg=name)
        rollouts = [rollout_values(sig, x.numpy()[t:, None], term[t:, None] > 0)[0] for t in range(4)]
        np.testing.assert_allclose(rollouts, expected, atol=1e-12, err_msg=name)


def test_thresholds_resolve_per_signal_and_are_checked():
    for name, d in (("cvf", 0.1), ("cdf", 0.1), ("hjr", 0.0), ("cbf", 0.0)):
        cfg = Config()
        cfg.constraint.signal = name
        assert cfg.validate().constraint.threshold == d
    assert Config().validate().constraint.cbf_k == pytest.approx(0.01)
    for sets, words in ((["constraint.signal=cdf", "constraint.threshold=1.5"], "(0, 1)"),
                        (["constraint.signal=cdf", "constraint.binary_cost=false"], "binary"),
                        (["constraint.signal=cbf", "constraint.cbf_k=0"], "cbf_k"),
                        (["constraint.signal=rcrl"], "choose from cvf, cdf, hjr, cbf")):
        cfg = Config()
        cfg.apply_overrides(sets)
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            cfg.validate()
    hjr = Config()
    hjr.apply_overrides(["constraint.signal=hjr", "constraint.threshold=-0.5"])  # a margin inside the safe set
    assert hjr.validate().constraint.threshold == -0.5


class _Line(gym.Env):
    """x_{t+1} = x_t + 1, h = x - 2, terminates at x = 4; reset at x = 0 with h in the reset info."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {"constraint": self.x - 2.0}

    def step(self, action):
        self.x += 1.0
        h = self.x - 2.0
        return np.array([self.x], np.float32), 0.0, self.x >= 4.0, False, {"cost": float(h > 0), "constraint": h}


@pytest.mark.parametrize("mode", ["single", "sync"])
def test_collector_gives_h_at_both_ends_across_resets(mode):
    collector = make_collector(_Line, 2 if mode == "sync" else 1, mode)
    collector.reset(0)
    hs, h_next = [], []
    for _ in range(6):
        st = collector.step(np.zeros((collector.num_envs, 1), np.float32))
        hs.append(st.h[0])
        h_next.append(st.h_next[0])
    collector.close()
    # episode 1: x 0->1->2->3->4 (ends), episode 2 starts at x = 0 again: h(s) comes from the reset's info
    assert hs == [-2.0, -1.0, 0.0, 1.0, -2.0, -1.0]
    assert h_next == [-1.0, 0.0, 1.0, 2.0, -1.0, 0.0]


def test_signals_that_need_h_refuse_an_env_without_it():
    env = gym.wrappers.TimeLimit(gym.make("_toy_envs:ToyCost-v0").unwrapped, 10)
    check_cost_signal(env, 0, "cvf")
    check_cost_signal(env, 0, "cdf")
    for name in ("hjr", "cbf"):
        with pytest.raises(EnvError, match=f"constraint.signal {name} needs the signed constraint h"):
            check_cost_signal(env, 0, name)


@pytest.mark.parametrize("signal", ["cdf", "hjr", "cbf"])
@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a != "sac"])
def test_every_signal_trains_with_every_multiplier_and_penalty(tmp_path, algo, signal):
    cfg = tiny_config(tmp_path / "run", algo, steps=250)
    cfg.constraint.signal = signal
    cfg.validate()
    result = statewise.train(cfg)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert np.isfinite(summary["final_eval"]["return"])
    agent = statewise.load(result.run_dir)
    assert agent.config.constraint.signal == signal
    obs = np.array([[0.0, 0.0], [4.9, 3.0]], np.float32)
    lam = np.asarray(agent.multiplier(obs))
    assert lam.shape[-1] == 2 and np.isfinite(lam).all()


def test_stored_values_are_the_signals_transition_values(tmp_path, monkeypatch):
    """What reaches the replay buffer under hjr is h(s') of the transition, for the double integrator
    |x'| - x_max of the stored next observation."""
    from statewise.method.buffer import ReplayBuffer

    seen = []
    original = ReplayBuffer.add

    def recording_add(self, obs, act, rew, cost, next_obs, terminated):
        seen.append((np.array(cost), np.array(next_obs)))
        return original(self, obs, act, rew, cost, next_obs, terminated)

    monkeypatch.setattr(ReplayBuffer, "add", recording_add)
    cfg = tiny_config(tmp_path / "r", "sac-lag", steps=150)
    cfg.constraint.signal = "hjr"
    statewise.train(cfg)
    cost = np.concatenate([c.ravel() for c, _ in seen])
    next_x = np.concatenate([o[..., 0].ravel() for _, o in seen])
    np.testing.assert_allclose(cost, np.abs(next_x.astype(np.float64)) - 5.0, atol=1e-5)
    assert math.isfinite(cost.sum())
