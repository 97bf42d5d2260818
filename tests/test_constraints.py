"""Several state-wise constraints at once (constraint.costs, docs/algorithm.md §2c): each formula per constraint
against a hand computation or autograd, the two-constraint task against brute force, named costs read from the
environment, and whole runs (one member alone or in a population, resumable files)."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import tiny_config
from statewise.api import population_configs, train, train_population
from statewise.config import ConstraintConfig, MultiplierConfig
from statewise.envs import make_env
from statewise.envs.named_costs import PARTS, NamedCosts
from statewise.envs.speed_limit import DoubleIntegratorSpeedLimitEnv
from statewise.errors import ConfigError, EnvError
from statewise.method.multipliers import NetworkMultiplier, PIDMultiplier, ScalarMultiplier
from statewise.method.nets import Critic
from statewise.method.penalties import augmented
from statewise.method.signals import CostValue

SPEED_ID = "statewise/DoubleIntegratorSpeedLimit-v0"


def _two(**kw) -> ConstraintConfig:
    cfg = ConstraintConfig(costs=["wall", "speed"], **kw)
    cfg.resolve()
    cfg.check()
    return cfg


# --------------------------------------------------------------------------------- signals and critics
def test_signal_combines_each_constraints_twins_and_subtracts_its_own_threshold():
    sig = CostValue(_two(threshold=[0.1, 0.5], twin_aggregate="mean", twin_target="max"))
    assert (sig.names, sig.shape, sig.count, sig.threshold) == (("wall", "speed"), (2,), 2, None)
    # (S=1, 2M=4 twins, B=2): rows Qc_wall,1, Qc_wall,2, Qc_speed,1, Qc_speed,2
    twins = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [5.0, 1.0], [1.0, 3.0]]])
    torch.testing.assert_close(sig.aggregate(twins), torch.tensor([[[2.0, 1.0], [3.0, 2.0]]]))
    torch.testing.assert_close(sig.target_value(twins), torch.tensor([[[3.0, 2.0], [5.0, 3.0]]]))
    torch.testing.assert_close(sig.residual(sig.aggregate(twins)), torch.tensor([[[1.9, 0.9], [2.5, 1.5]]]))
    one = CostValue(_two(threshold=0.2))  # one number for both: subtracted as a number
    assert one.threshold == 0.2 and one.thresholds == [0.2, 0.2]


def test_critic_has_a_twin_pair_per_constraint():
    critic = Critic(2, 3, 1, [8], constraints=3)
    assert critic.k == 8 and critic(torch.randn(2, 5, 3), torch.randn(2, 5, 1)).shape == (2, 8, 5)
    assert Critic(2, 3, 1, [8], constraints=0).k == 2


# ------------------------------------------------------------------------------------- multipliers
def test_scalar_multiplier_keeps_one_lambda_per_constraint():
    """Projected dual ascent per constraint: Adam's first step moves each λ_k by lr in the sign of its own ḡ_k."""
    m = ScalarMultiplier(1, 2, MultiplierConfig(kind="scalar", lam_init=0.5, lr=0.1, lam_max=10.0, steps=1), (2,))
    g = torch.tensor([[[3.0, 1.0, 2.0], [-1.0, -2.0, -3.0]]])  # (S, M, B): ḡ = +2 and -2
    stats = m.update(torch.zeros(1, 3, 2), g)
    torch.testing.assert_close(m.lam.detach(), torch.tensor([[0.6, 0.4]]))
    torch.testing.assert_close(stats["multiplier_loss"], torch.tensor([[-0.5 * 2.0, 0.5 * 2.0]]))
    assert m.value(torch.zeros(1, 4, 2)).shape == (1, 2, 4)


def test_pid_multiplier_per_constraint_equals_separate_controllers():
    cfg = MultiplierConfig(kind="pid", steps=1, lam_init=0.1, lam_max=5.0, pid_kp=1.0, pid_ki=0.5, pid_kd=2.0,
                           pid_ema_p=0.5, pid_ema_d=0.5, pid_d_delay=2)
    both = PIDMultiplier(1, 3, cfg, (2,))
    apart = [PIDMultiplier(1, 3, cfg), PIDMultiplier(1, 3, cfg)]
    rng = np.random.default_rng(0)
    for _ in range(7):
        g = torch.as_tensor(rng.normal(0, 3, (1, 2, 4)), dtype=torch.float32)
        stats = both.update(torch.zeros(1, 4, 3), g)
        for k in range(2):
            one = apart[k].update(torch.zeros(1, 4, 3), g[:, k:k + 1])
            torch.testing.assert_close(stats["pid_i"][:, k], one["pid_i"][:, 0])
        lam = both.value(torch.zeros(1, 2, 3))
        for k in range(2):
            torch.testing.assert_close(lam[:, k], apart[k].value(torch.zeros(1, 2, 3))[:, 0])


def test_network_multiplier_fits_each_constraints_dual_target():
    """λ̂_k(s) = clip(λ_prev,k(s) + ρ_λ g_k, 0, λ_max) per output; the loss is each output's own mean squared error."""
    from statewise.method.nets import softplus_inverse

    cfg = MultiplierConfig(kind="network", update="regression", penalty="augmented", activation="relu", steps=1,
                           rho_lambda=2.0, lam_max=10.0, hidden=[8], fit_space="linear", grad_clip=0.0, lr=1e-3)
    torch.manual_seed(0)
    m = NetworkMultiplier(1, 3, cfg, (2,))
    for net, values in ((m.prev, (3.0, 1.0)), (m.net, (2.0, 2.0))):
        last = net.net.layers[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([[[softplus_inverse(v) for v in values]]]))
    g = torch.tensor([[[1.0, -1.0, 100.0], [0.0, 0.5, -5.0]]])
    target = m.dual_target(torch.zeros(1, 3, 3), g)
    torch.testing.assert_close(target, torch.tensor([[[5.0, 1.0, 10.0], [1.0, 2.0, 0.0]]]))
    loss, per = m.loss(list(m.net.parameters()), torch.zeros(1, 3, 3), g)
    expected = ((torch.tensor([[[2.0] * 3, [2.0] * 3]]) - target) ** 2).mean(-1)
    torch.testing.assert_close(per, expected)
    torch.testing.assert_close(loss, expected.sum())


# ---------------------------------------------------------------------------------- the SAC update
def _agent(algo: str = "sac-alam", costs=("wall", "speed"), **sets):
    from statewise.config import Config
    from statewise.method.buffer import ReplayBuffer
    from statewise.method.sac import SAC

    cfg = Config(algo=algo, steps=1000)
    cfg.sac.hidden = cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = 8
    cfg.constraint.costs = list(costs)
    for k, v in sets.items():
        cfg.set(k, v)
    cfg.validate()
    torch.manual_seed(0)
    agent = SAC.from_config(2, 1, cfg)
    buf = ReplayBuffer(2, 1, 64, "cpu", [0], agent.signal.shape)
    rng = np.random.default_rng(0)
    m = agent.constraints
    buf.add(rng.normal(size=(1, 64, 2)), rng.uniform(-1, 1, (1, 64, 1)), rng.normal(size=(1, 64)),
            (rng.random((1, 64, m)) < 0.3).astype(np.float32), rng.normal(size=(1, 64, 2)), rng.random((1, 64)) < 0.05)
    return agent, buf


def test_actor_loss_sums_each_constraints_augmented_penalty():
    """L_π = mean[α log π − min Q + Σ_k ψ_ρ(g_k, λ_k)], from the parts by hand."""
    agent, buf = _agent(**{"constraint.threshold": [0.1, 0.3], "multiplier.rho": 3.0})
    obs, eps = buf.sample(8).obs, torch.randn(1, 8, 1)
    alpha = torch.ones(1, 1) * 0.2
    loss, aux = agent._actor_loss(agent.opt_actor.params, obs, eps, alpha)
    act, logp = agent.actor.sample(obs, eps)
    values = agent.critic(obs, act)
    g = torch.stack([values[:, 2:4].mean(1) - 0.1, values[:, 4:6].mean(1) - 0.3], dim=1)
    lam = agent.multiplier.value(obs)
    pen = sum(augmented(g[:, k], lam[:, k], 3.0)[0] for k in range(2))
    expected = (alpha * logp - torch.minimum(values[:, 0], values[:, 1]) + pen).mean(1)
    torch.testing.assert_close(aux["loss"], expected)
    torch.testing.assert_close(aux["g"], g)


def test_sac_lag_normalises_by_one_plus_the_sum_of_multipliers():
    agent, buf = _agent("sac-lag", **{"constraint.threshold": 0.2})
    with torch.no_grad():
        agent.multiplier.lam.copy_(torch.tensor([[0.5, 1.5]]))
    obs, eps = buf.sample(8).obs, torch.randn(1, 8, 1)
    alpha = torch.ones(1, 1) * 0.2
    _, aux = agent._actor_loss(agent.opt_actor.params, obs, eps, alpha)
    act, logp = agent.actor.sample(obs, eps)
    values = agent.critic(obs, act)
    g = torch.stack([values[:, 2:4].mean(1), values[:, 4:6].mean(1)], dim=1) - 0.2
    expected = (alpha * logp - torch.minimum(values[:, 0], values[:, 1]) + 0.5 * g[:, 0] + 1.5 * g[:, 1]) / 3.0
    torch.testing.assert_close(aux["loss"], expected.mean(1))


def test_cost_critics_bootstrap_each_constraint_from_its_own_cost():
    """y_c,k = c_k + γ_c (1 − term) mean_i Q̄^c_k,i(s', a'): the targets of the k-th twin pair."""
    agent, buf = _agent(**{"constraint.gamma_c": 0.9})
    batch = buf.sample(8)
    seen = {}

    def record(params, obs, act, targets):  # the critic step's loss, replaced: it records its targets
        seen["targets"] = targets
        return sum(p.sum() for p in params) * 0.0, torch.zeros(1, 6)

    agent._critic_loss = record
    eps = torch.randn(1, 2, 8, 1)
    with torch.no_grad():
        next_act, _ = agent.actor.sample(batch.next_obs, eps[:, 0])
        nxt = agent.critic_target(batch.next_obs, next_act)
    agent._step(batch, eps, log=False)
    targets = seen["targets"]
    for k in range(2):
        y = batch.cost[..., k] + 0.9 * (1 - batch.terminated) * nxt[:, 2 + 2 * k:4 + 2 * k].mean(1)
        torch.testing.assert_close(targets[:, 2 + 2 * k], y)
        torch.testing.assert_close(targets[:, 3 + 2 * k], y)


def test_logged_statistics_are_named_per_constraint():
    agent, buf = _agent()
    stats = agent.update(buf, log=True)
    for _ in range(agent.multiplier.schedule.period):
        stats.update(agent.update(buf, log=True))
    assert set(stats) == set(agent.stat_names())
    assert "lam_batch_mean[wall]" in stats and "multiplier_loss[speed]" in stats and "residual" not in stats
    assert all(v.shape == (1,) for v in stats.values())


# -------------------------------------------------------------------------------- the two-constraint task
def test_speed_limit_task_costs_and_feasible_sets_by_brute_force():
    env = make_env(SPEED_ID)
    task = env.unwrapped
    assert isinstance(task, DoubleIntegratorSpeedLimitEnv)
    rng = np.random.default_rng(0)
    states = np.stack([rng.uniform(-6, 6, 400), rng.uniform(-3.5, 3.5, 400)], axis=-1)
    truth = task.constraint_feasible(states)
    for i in range(0, 400, 7):  # brute force: full braking is the best a state can do for both constraints
        x, v = states[i]
        wall_ok, speed_ok = abs(x) <= 5 + 1e-9, abs(v) <= 2 + 1e-9
        for _ in range(60):
            a = -np.sign(v) * min(1.0, abs(v) / 0.1)
            x, v = x + 0.1 * v, v + 0.1 * a
            wall_ok &= abs(x) <= 5 + 1e-9
        assert (truth["wall"][i], truth["speed"][i]) == (wall_ok, speed_ok), states[i]
    assert np.array_equal(task.feasible(states), truth["wall"] & truth["speed"])
    actions = rng.uniform(-1.5, 1.5, (400, 1))
    nxt, reward, cost, terminated = task.transition(states, actions)
    for i in range(0, 400, 13):  # the batched dynamics are the step, and info names both costs
        task.set_state(states[i])
        o, r, term, _, info = task.step(actions[i])
        assert np.array_equal(task.get_state(), nxt[i]) and (r, info["cost"], term) == (reward[i], cost[i],
                                                                                          terminated[i])
        assert info["cost"] == max(info["costs"].values()) and set(info["costs"]) == {"wall", "speed"}


# -------------------------------------------------------------------------------- named costs from info
class _Reports(gym.Env):
    """A stand-in environment whose step reports the given infos in turn."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, infos):
        self.infos = list(infos)

    def reset(self, seed=None, options=None):
        return np.zeros(1), {}

    def step(self, action):
        return np.zeros(1), 0.0, False, False, dict(self.infos.pop(0))


@pytest.mark.parametrize("infos,message", [
    ([{"cost": 0.0, "costs": {"wall": 0.0}}], "reports no cost 'speed'"),
    ([{"cost": 0.0, "costs": {"wall": 0.0, "speed": 0.0}}, {"cost": 0.0, "costs": {"wall": 0.0, "sped": 0.0}}],
     "changed the names of its costs at step 2"),
    ([{"cost": 0.0, "costs": {"wall": 0.0, "speed": float("nan")}}], "non-finite cost 'speed'"),
    ([{"cost": 0.0, "costs": {"wall": "x", "speed": 0.0}}], "non-numeric cost 'wall'"),
    ([{"cost": 0.0, "costs": [0.0, 1.0]}], "not a mapping"),
    ([{"cost": 0.0, "cost_hazards": 1.0}], "reports no cost 'wall'"),
])
def test_named_costs_refuse_bad_reports_in_one_line(infos, message):
    env = NamedCosts(_Reports(infos), ["wall", "speed"])
    env.reset()
    with pytest.raises(EnvError, match=message) as err:
        for _ in infos:
            env.step(np.zeros(1))
    assert "\n" not in str(err.value)


def test_named_costs_read_safety_gymnasium_style_parts_from_info():
    env = NamedCosts(_Reports([{"cost": 1.0, "cost_hazards": 1.0, "cost_vases_contact": 0.0}]),
                     ["cost_vases_contact", "cost_hazards"])
    env.reset()
    info = env.step(np.zeros(1))[-1]
    assert info[PARTS].tolist() == [0.0, 1.0] and info["cost"] == 1.0


def test_threshold_list_must_match_the_costs():
    with pytest.raises(ConfigError, match="lists 3 values but constraint.costs names 2"):
        _two(threshold=[0.1, 0.1, 0.1])


# ------------------------------------------------------------------------------------------ whole runs
def _vector_config(run_dir, algo="sac-alam", seed=0):
    cfg = tiny_config(run_dir, algo=algo, env=SPEED_ID, steps=300, seed=seed)
    cfg.constraint.costs = ["wall", "speed"]
    cfg.constraint.threshold = [0.1, 0.2]
    cfg.compile = False
    return cfg


@pytest.mark.parametrize("algo", ["sac-alam", "sac-pid-lag"])
def test_two_constraint_run_writes_per_constraint_files(tmp_path, algo):
    result = train(_vector_config(tmp_path / "run", algo), plots=False)
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train_violation_ratio[wall]", "train_violation_ratio[speed]", "lam_batch_mean[speed]",
                 "residual[wall]"):
        assert name in header
    evals = (result.run_dir / "eval.csv").read_text().splitlines()[0].split(",")
    assert "step_violation_rate[speed]" in evals and "episode_violation_prob[wall]" in evals
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert set(summary["constraints"]) == {"wall", "speed"}
    assert set(summary["constraint_calibration"]) == {"wall", "speed"}
    auroc = summary["constraint_calibration"]["speed"]["lambda_auroc"]
    assert auroc is None or 0.0 <= auroc <= 1.0


def test_two_constraint_member_is_the_same_alone_and_in_a_population(tmp_path):
    alone = train(_vector_config(tmp_path / "alone", seed=1), plots=False)
    together = train_population(population_configs(_vector_config(tmp_path / "x"), [0, 1], tmp_path / "pop"),
                                plots=False)
    for name in ("eval.csv", "probe.npz"):
        assert (alone.run_dir / name).read_bytes() == (together[1].run_dir / name).read_bytes(), name


def test_calibrate_fits_a_risk_monitor_per_constraint_and_one_for_any(tmp_path):
    from statewise.analysis.calibrate import calibrate

    run = train(_vector_config(tmp_path / "run"), plots=False).run_dir
    out = calibrate(run, episodes=6, test_episodes=6, horizon=20)
    risk = json.loads((run / "risk.json").read_text())
    assert set(risk["constraints"]) == {"wall", "speed"} == set(out["constraints"])
    any_rate = risk["test"]["positive_fraction"]
    for name in ("wall", "speed"):  # a violation of either is a violation of "any"
        part = risk["constraints"][name]
        assert part["test"]["states"] == risk["test"]["states"]
        assert part["test"]["positive_fraction"] <= any_rate + 1e-12
        assert part["values"] == sorted(part["values"])  # isotonic: non-decreasing in λ_k
