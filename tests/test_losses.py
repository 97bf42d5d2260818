"""Every loss, target and update rule of docs/algorithm.md against hand-computed values or autograd."""

import copy
import math

import numpy as np
import pytest
import torch

from statewise.config import ALGORITHMS, Config, ConstraintConfig, MultiplierConfig
from statewise.method.buffer import ReplayBuffer
from statewise.method.multipliers import NetworkMultiplier, ScalarMultiplier, Schedule
from statewise.method.nets import Critic, MultiplierNet, TanhGaussianPolicy
from statewise.method.penalties import Augmented, Lagrangian, augmented, lagrangian
from statewise.method.sac import SAC
from statewise.method.signals import CostValue

torch.set_default_dtype(torch.float32)


# ------------------------------------------------------------------ augmented-Lagrangian penalty (§5)
def two_branch(g: float, lam: float, rho: float) -> float:
    if lam + rho * g >= 0:
        return lam * g + rho * g * g / 2
    return -lam * lam / (2 * rho)


def test_augmented_penalty_matches_two_branch_formula():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(500, generator=gen, dtype=torch.float64) * 3
    lam = torch.rand(500, generator=gen, dtype=torch.float64) * 5
    for rho in (0.1, 1.0, 10.0):
        pen, _ = augmented(g, lam, rho)
        expected = torch.tensor([two_branch(gi, li, rho) for gi, li in zip(g.tolist(), lam.tolist(), strict=True)],
                                dtype=torch.float64)
        torch.testing.assert_close(pen, expected, rtol=1e-10, atol=1e-10)
    # both branches occur in the sample
    assert ((lam + g) > 0).any() and ((lam + g) < 0).any()


def test_augmented_penalty_gradient_is_lookahead_multiplier():
    g = torch.tensor([-3.0, -0.2, 0.0, 0.4, 2.0], requires_grad=True)
    lam = torch.tensor([1.0, 1.0, 0.5, 0.0, 2.0])
    rho = 2.0
    pen, effective = augmented(g, lam, rho)
    (grad,) = torch.autograd.grad(pen.sum(), g)
    expected = torch.clamp(lam + rho * g.detach(), min=0.0)  # [λ + ρ g]_+ = [-5, 0.6, 0.5, 0.8, 6]_+
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(effective.detach(), torch.tensor([0.0, 0.6, 0.5, 0.8, 6.0]))


def test_augmented_penalty_small_rho_limit_is_lagrangian():
    g = torch.tensor([-0.7, -0.1, 0.3, 1.5])
    lam = torch.tensor([0.5, 2.0, 1.0, 3.0])
    pen, _ = augmented(g, lam, 1e-6)
    plain, eff = lagrangian(g, lam)
    torch.testing.assert_close(pen, plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eff, lam)


# ----------------------------------------------------------------------------------- dual target (§6.4)
def _network_multiplier(update: str, **kw) -> NetworkMultiplier:
    cfg = MultiplierConfig(kind="network", update=update, penalty="augmented", activation="relu", steps=1,
                           rho=kw.pop("rho", 1.0), rho_lambda=kw.pop("rho_lambda", 1.0), lr=kw.pop("lr", 3e-4),
                           hidden=[16, 16], **kw)
    torch.manual_seed(0)
    return NetworkMultiplier(1, 3, cfg)  # a population of one, one constraint: obs (1, B, 3), g (1, 1, B)


def _set_prev_output(m: NetworkMultiplier, value: float) -> None:
    """Make λ_prev(s) ≡ value (zero last layer, bias = softplus⁻¹(value))."""
    from statewise.method.nets import softplus_inverse

    last = m.prev.net.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(softplus_inverse(value) if value > 0 else -50.0)


def test_dual_target_cases():
    m = _network_multiplier("regression", rho_lambda=2.0, lam_max=10.0)
    obs = torch.randn(1, 4, 3)
    _set_prev_output(m, 0.0)  # λ_prev ≈ 0
    target = m.dual_target(obs, torch.tensor([[[-1.0, -0.01, 0.0, 0.5]]]))
    torch.testing.assert_close(target, torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]), atol=1e-6, rtol=0)
    _set_prev_output(m, 3.0)
    target = m.dual_target(obs, torch.tensor([[[0.0, 1.0, -1.0, 100.0]]]))
    # g = 0 keeps λ; g > 0 adds ρ_λ g; g < 0 subtracts; capped at λ_max
    torch.testing.assert_close(target, torch.tensor([[[3.0, 5.0, 1.0, 10.0]]]), atol=1e-5, rtol=0)


def test_dual_target_fixed_point_is_complementary_slackness():
    """At λ_ξ = λ_prev the regression gradient vanishes exactly where λ ≥ 0, g ≤ 0, λ g = 0."""
    m = _network_multiplier("regression")
    obs = torch.randn(1, 3, 3)
    _set_prev_output(m, 2.0)
    m.net.load_state_dict(m.prev.state_dict())
    for g, at_rest in ((0.0, True), (0.3, False), (-0.3, False)):
        lam = m.net(obs)
        loss = ((lam - m.dual_target(obs, torch.full((1, 1, 3), g))) ** 2).mean()
        grads = torch.autograd.grad(loss, list(m.net.parameters()))
        norm = sum(gr.abs().sum() for gr in grads)
        assert (norm < 1e-5) == at_rest, (g, norm)


def test_log_space_fit_loss_and_gradient_by_hand():
    """fit_space=log: L = mean (log(1+λ) − log(1+λ̂))²; with λ ≡ λ0 (zero last layer, bias b) and λ_prev ≡ 3,
    dL/db = mean 2 (log(1+λ0) − log(1+λ̂)) / (1+λ0) · σ(b) (softplus' = sigmoid). Same fixed point as linear."""
    from statewise.method.nets import softplus_inverse

    obs = torch.randn(1, 4, 3)
    g = torch.tensor([[[-1.0, 0.0, 2.0, 200.0]]])  # targets 2, 3, 5 and the cap 10
    lam0 = 1.5
    grads = {}
    for space in ("linear", "log"):
        m = _network_multiplier("regression", lam_max=10.0, fit_space=space, grad_clip=0.0)
        _set_prev_output(m, 3.0)
        last = m.net.net.layers[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(softplus_inverse(lam0))
        captured = []
        m.optimizer.step = captured.append
        out = m.update(obs, g)
        grads[space] = captured[0][-1].item()
        target = np.array([2.0, 3.0, 5.0, 10.0])
        if space == "log":
            expected_loss = np.mean((np.log1p(lam0) - np.log1p(target)) ** 2)
        else:
            expected_loss = np.mean((lam0 - target) ** 2)
        assert out["multiplier_loss"].item() == pytest.approx(expected_loss, rel=1e-5)
    sig = 1.0 / (1.0 + math.exp(-softplus_inverse(lam0)))
    target = np.array([2.0, 3.0, 5.0, 10.0])
    assert grads["log"] == pytest.approx(np.mean(2 * (np.log1p(lam0) - np.log1p(target)) / (1 + lam0)) * sig, rel=1e-5)
    assert grads["linear"] == pytest.approx(np.mean(2 * (lam0 - target)) * sig, rel=1e-5)


def test_regression_gradient_is_scaled_dual_ascent_when_unclipped():
    """docs/algorithm.md §5: with λ_prev = λ_ξ and no clipping, ∇ regression = 2ρ_λ ∇ dual ascent."""
    reg = _network_multiplier("regression", rho_lambda=0.5)
    reg.prev.load_state_dict(reg.net.state_dict())
    obs = torch.randn(1, 8, 3)
    g = torch.rand(1, 8) + 0.1  # positive: the target is not clipped at 0
    lam = reg.net(obs)
    reg_loss = ((lam - reg.dual_target(obs, g)) ** 2).mean()
    grad_reg = torch.autograd.grad(reg_loss, list(reg.net.parameters()))
    da_loss = -(reg.net(obs) * g).mean()
    grad_da = torch.autograd.grad(da_loss, list(reg.net.parameters()))
    for a, b in zip(grad_reg, grad_da, strict=True):
        torch.testing.assert_close(a, 2 * 0.5 * b, rtol=1e-4, atol=1e-7)


def test_network_updates_move_lambda_the_right_way():
    for rule in ("regression", "dual-ascent"):
        m = _network_multiplier(rule, lr=1e-2)
        obs = torch.randn(1, 64, 3)
        before = m.value(obs).mean()
        for _ in range(20):
            m.update(obs, torch.full((1, 64), 0.5))
            m.end_round()
        assert m.value(obs).mean() > before + 0.05, rule
        mid = m.value(obs).mean()
        for _ in range(20):
            m.update(obs, torch.full((1, 64), -0.5))
            m.end_round()
        assert m.value(obs).mean() < mid, rule


def test_dual_ascent_anti_windup_stops_pushing_only_above_the_cap():
    """Projected dual ascent: where λ_ξ(s) ≥ λ_max and g > 0 the ascent term is dropped; elsewhere it is
    FAC's −mean λ·g. With λ ≡ 0.2 (zero last layer), d(−mean λ g)/d bias = −σ(z)·mean(g), σ(z) = 1 − e^−0.2."""
    obs = torch.randn(1, 6, 3)
    g = torch.tensor([[0.5, -0.5, 0.5, -0.7, 0.2, 0.0]])
    sig = 1 - math.exp(-0.2)

    def bias_grad(lam_max: float, anti: bool) -> float:
        m = _network_multiplier("dual-ascent", lam_max=lam_max, anti_windup=anti, grad_clip=0.0)
        with torch.no_grad():
            m.net.net.layers[-1].weight.zero_()
            m.net.net.layers[-1].bias.fill_(math.log(math.expm1(0.2)))
        captured = []
        m.optimizer.step = captured.append  # the gradient handed to Adam (no clipping: grad_clip = 0)
        m.update(obs, g)
        return captured[0][-1].item()  # the last layer's bias

    plain = -sig * g.mean().item()
    assert bias_grad(1.0, False) == pytest.approx(plain, rel=1e-5)
    assert bias_grad(1.0, True) == pytest.approx(plain, rel=1e-5)  # below the cap: unchanged
    assert bias_grad(0.1, False) == pytest.approx(plain, rel=1e-5)  # FAC as published: winds up
    kept = torch.where(g > 0, torch.zeros_like(g), g)  # at the cap: only g < 0 may pull λ down
    assert bias_grad(0.1, True) == pytest.approx(-sig * kept.mean().item(), rel=1e-5)


def test_regression_target_lag_uses_polyak_average():
    m = _network_multiplier("regression", target_tau=0.25)
    prev0 = [p.clone() for p in m.prev.parameters()]
    m.update(torch.randn(1, 16, 3), torch.ones(1, 1, 16))
    m.end_round()
    for p_prev, p0, p in zip(m.prev.parameters(), prev0, m.net.parameters(), strict=True):
        torch.testing.assert_close(p_prev, 0.75 * p0 + 0.25 * p.detach())


def test_scalar_dual_ascent_projected():
    m = ScalarMultiplier(1, 3, MultiplierConfig(kind="scalar", lam_init=0.01, lr=0.1, lam_max=1.0, steps=1))
    m.update(torch.zeros(1, 4, 2), torch.tensor([[[-1.0, -2.0, -1.0, -2.0]]]))  # ḡ < 0 pushes λ below 0
    assert m.value(torch.zeros(1, 2, 2)).tolist() == [[[0.0, 0.0]]]
    for _ in range(30):
        m.update(torch.zeros(1, 4, 2), torch.ones(1, 1, 4))
    assert m.value(torch.zeros(1, 1, 2)).item() == pytest.approx(1.0)  # capped at λ_max
    # Adam's first step moves λ by lr in the sign of ḡ
    m2 = ScalarMultiplier(1, 3, MultiplierConfig(kind="scalar", lam_init=0.5, lr=0.1, lam_max=10.0, steps=1))
    m2.update(torch.zeros(1, 4, 2), torch.full((1, 1, 4), 3.0))
    assert m2.lam.item() == pytest.approx(0.6, abs=1e-6)


def test_pid_multiplier_matches_hand_computation():
    """λ_k = clip(K_P·EMA_p(ḡ) + I_k + K_D·max(0, EMA_d(ḡ)_k − EMA_d(ḡ)_{k−delay}), 0, λ_max),
    I_k = max(0, I + K_I ḡ)."""
    from statewise.method.multipliers import PIDMultiplier

    cfg = MultiplierConfig(kind="pid", steps=1, lam_init=0.1, lam_max=5.0, pid_kp=1.0, pid_ki=0.5, pid_kd=2.0,
                           pid_ema_p=0.5, pid_ema_d=0.5, pid_d_delay=2)
    m = PIDMultiplier(1, 3, cfg)
    integral, p, d, hist, expected = 0.1, 0.0, 0.0, [], []
    values = []
    for g in [1.0, 1.0, -1.0, 4.0, -4.0, -4.0]:
        integral = max(0.0, integral + 0.5 * g)
        p = 0.5 * p + 0.5 * g
        d = 0.5 * d + 0.5 * g
        old = hist[-2] if len(hist) >= 2 else d
        hist.append(d)
        expected.append(min(5.0, max(0.0, p + integral + 2.0 * max(0.0, d - old))))
        m.update(torch.zeros(1, 4, 3), torch.full((1, 1, 4), g))
        values.append(m.value(torch.zeros(1, 2, 3)))
        assert values[-1][0, 0].tolist() == pytest.approx([expected[-1]] * 2, abs=1e-6)
    # values handed out earlier are snapshots, not views of the λ that update() changes in place
    assert [v[0, 0, 0].item() for v in values] == pytest.approx(expected, abs=1e-6)
    assert expected[3] == 5.0 and expected[-1] == 0.0  # both projections were exercised
    # its whole state is in the state dict (checkpointed with the agent)
    clone = PIDMultiplier(1, 3, cfg)
    clone.load_state_dict(m.state_dict())
    m.update(torch.zeros(1, 1, 3), torch.ones(1, 1, 1))
    clone.update(torch.zeros(1, 1, 3), torch.ones(1, 1, 1))
    assert clone.lam.item() == pytest.approx(m.lam.item())


# ------------------------------------------------------------------------- cost value backup (§2.2)
def test_twin_cost_aggregation():
    twins = torch.tensor([[[1.0, 4.0], [3.0, 2.0]], [[0.0, 1.0], [2.0, -1.0]]])  # (S=2 members, 2 twins, B=2)
    pessimistic = CostValue(ConstraintConfig(twin_aggregate="max", twin_target="max"))
    torch.testing.assert_close(pessimistic.aggregate(twins), torch.tensor([[3.0, 4.0], [2.0, 1.0]]))
    # inside the Bellman target, per constraint: (S, M = 1, B)
    torch.testing.assert_close(pessimistic.target_value(twins), torch.tensor([[[3.0, 4.0]], [[2.0, 1.0]]]))
    split = CostValue(ConstraintConfig(twin_aggregate="max", twin_target="mean"))  # the risk estimate stays max
    torch.testing.assert_close(split.aggregate(twins), torch.tensor([[3.0, 4.0], [2.0, 1.0]]))
    torch.testing.assert_close(split.target_value(twins), torch.tensor([[[2.0, 3.0]], [[1.0, 0.0]]]))
    mean = CostValue(ConstraintConfig(twin_aggregate="mean")).aggregate(twins)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 3.0], [1.0, 0.0]]))


def test_cost_value_backup_and_binary_cost():
    sig = CostValue(ConstraintConfig(threshold=0.1, gamma_c=0.9))
    y = sig.backup(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 2.0, 0.9 * 2.0, 1.0]))
    np.testing.assert_array_equal(sig.transition_value(np.array([0.3, 0.0, 2.0]), None, None), [1.0, 0.0, 1.0])
    raw = CostValue(ConstraintConfig(binary_cost=False))
    np.testing.assert_allclose(raw.transition_value(np.array([0.3, 0.0]), None, None),
                               [0.3, 0.0])
    torch.testing.assert_close(sig.residual(torch.tensor([0.1, 1.0])), torch.tensor([0.0, 0.9]))


# ------------------------------------------------------------------------------- networks (§3)
def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    pi = TanhGaussianPolicy(2, 3, 2, [8])
    obs = torch.randn(2, 5, 3)
    eps = torch.randn(2, 5, 2)
    a, logp = pi.sample(obs, eps)
    mean, log_std = pi._dist_params(obs)
    u = mean + log_std.exp() * eps
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    expected = base - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(a, torch.tanh(u))
    torch.testing.assert_close(logp, expected, rtol=1e-4, atol=1e-4)


def test_ensemble_critic_members_are_independent_mlps():
    torch.manual_seed(0)
    critic = Critic(2, 3, 2, [8, 8], constraints=1)  # 2 members x 4 critics
    obs, act = torch.randn(2, 6, 3), torch.randn(2, 6, 2)
    out = critic(obs, act)
    assert out.shape == (2, 4, 6)
    for s in range(2):
        x = torch.cat([obs[s], act[s]], -1)  # each member sees only its own batch
        for i in range(4):
            h = x
            for j, layer in enumerate(critic.net.layers):
                h = h @ layer.weight[s, i] + layer.bias[s, i]
                if j < len(critic.net.layers) - 1:
                    h = torch.relu(h)
            torch.testing.assert_close(out[s, i], h.squeeze(-1), rtol=1e-5, atol=1e-6)


def test_multiplier_net_initial_value():
    net = MultiplierNet(3, 4, [16], lam_init=0.05)
    lam = net(torch.randn(3, 100, 4))
    assert lam.shape == (3, 1, 100)  # (members, constraints, states)
    assert torch.all((lam - 0.05).abs() < 0.01)


# ----------------------------------------------------------------------- the SAC update (§3, §6.3)
def _agent(algo: str, **sets) -> tuple[SAC, ReplayBuffer]:
    cfg = Config(algo=algo, steps=1000)
    cfg.sac.hidden = [16, 16]
    cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = 8
    cfg.sac.start_steps = 8
    cfg.constraint.gamma_c = 0.9
    for k, v in sets.items():
        cfg.set(k, v)
    cfg.validate()
    agent = SAC.from_config(3, 2, cfg)  # a population of one (seed cfg.seed)
    buf = ReplayBuffer(3, 2, 8, "cpu", seeds=[0])
    gen = torch.Generator().manual_seed(1)
    for i in range(8):
        buf.add(torch.randn(1, 1, 3, generator=gen).numpy(), (torch.rand(1, 1, 2, generator=gen) * 2 - 1).numpy(),
                [[float(i)]], [[float(i % 2)]], torch.randn(1, 1, 3, generator=gen).numpy(), [[float(i % 3 == 0)]])
    return agent, buf


def _in_order(buf: ReplayBuffer) -> None:
    """Make every batch the whole buffer, in order."""
    buf.indices = lambda n: torch.arange(n).unsqueeze(0) % buf.size


class _FixedSampler:
    """Stands in for the policy's sampler with fixed actions and log-probabilities."""

    def __init__(self, policy: TanhGaussianPolicy, act_dim: int, logp: float | None = None):
        self.policy = policy
        self.act_dim = act_dim
        self.logp = logp

    def __call__(self, obs, eps=None):
        bias = self.policy.net.layers[0].bias  # (1, 1, hidden)
        a = torch.tanh(obs[..., : self.act_dim] + bias[..., : self.act_dim])  # depends on θ
        logp = -(obs ** 2).sum(-1) * 0.1 if self.logp is None else torch.full(obs.shape[:2], self.logp)
        return a, logp + bias.sum() * 0.0


@pytest.mark.parametrize("algo, twin_target", [("sac", "mean"), ("sac-alam", "mean"), ("sac-alam", "max"),
                                               ("sac-lag", "mean")])
def test_critic_targets_bootstrap_on_truncation_not_termination(algo, twin_target):
    agent, buf = _agent(algo, **{"constraint.twin_target": twin_target})
    agent.actor.sample = _FixedSampler(agent.actor, 2)
    _in_order(buf)
    b = buf.sample(8)
    alpha = math.exp(agent.log_alpha.item())
    with torch.no_grad():
        a2, logp2 = agent.actor.sample(b.next_obs)
        tv = agent.critic_target(b.next_obs, a2)[0]
        logp2, b = logp2[0], type(b)(*(x[0] for x in b))  # member 0's rows
        y = b.rew + 0.99 * (1 - b.terminated) * (torch.minimum(tv[0], tv[1]) - alpha * logp2)
        v = agent.critic(b.obs[None], b.act[None])[0]
        expected_q = ((v[0] - y) ** 2).mean() + ((v[1] - y) ** 2).mean()
        if agent.constrained:
            next_c = torch.maximum(tv[2], tv[3]) if twin_target == "max" else 0.5 * (tv[2] + tv[3])
            yc = b.cost + 0.9 * (1 - b.terminated) * next_c
            expected_c = ((v[2] - yc) ** 2).mean() + ((v[3] - yc) ** 2).mean()
    stats = agent.update(buf, log=True)
    torch.testing.assert_close(stats["reward_critic_loss"], expected_q.reshape(1))
    if agent.constrained:
        torch.testing.assert_close(stats["cost_critic_loss"], expected_c.reshape(1))
    assert b.terminated.sum() == 3  # both terminated and non-terminated transitions were checked


@pytest.mark.parametrize("algo,penalty,normalize", [
    ("sac-alam", "augmented", False), ("fac", "lagrangian", False), ("sac-lag", "lagrangian", True),
    ("sac", None, False), ("sac-al", "augmented", False), ("sac-pid-lag", "lagrangian", True)])
def test_actor_loss_composition(algo, penalty, normalize):
    agent, buf = _agent(algo, **{"sac.lr_critic": 1e-12})  # critic step negligible: pre-update critic suffices
    agent.actor.sample = _FixedSampler(agent.actor, 2)
    _in_order(buf)
    b = buf.sample(8)
    if agent.multiplier is not None:  # a non-trivial, state-dependent multiplier
        if isinstance(agent.multiplier, NetworkMultiplier):
            with torch.no_grad():
                agent.multiplier.net.net.layers[-1].weight.normal_(0, 1.0)
        else:
            agent.multiplier.lam.data.fill_(0.7)  # scalar parameter or PID buffer
    alpha = math.exp(agent.log_alpha.item())
    with torch.no_grad():
        a, logp = agent.actor.sample(b.obs)
        v = agent.critic(b.obs, a)[0]
        per = alpha * logp[0] - torch.minimum(v[0], v[1])
        if penalty:
            g = 0.5 * (v[2] + v[3]) - 0.1  # the twins' mean (constraint.twin_aggregate default)
            lam = agent.multiplier.value(b.obs)[0]
            if penalty == "augmented":
                eff = torch.relu(lam + 1.0 * g)
                per = per + (eff ** 2 - lam ** 2) / 2.0
            else:
                eff = lam
                per = per + lam * g
            if normalize:
                per = per / (1 + eff)
    stats = agent.update(buf, log=True)
    torch.testing.assert_close(stats["actor_loss"], per.mean().reshape(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algo", ["sac-alam", "fac", "sac-lag"])
def test_actor_parameter_gradient_matches_autograd_reference(algo):
    """The actor step's gradient flows through Q and Q^c (g not detached) and not through λ."""
    agent, buf = _agent(algo, **{"sac.lr_critic": 1e-12, "sac.grad_clip": 0.0})
    if isinstance(agent.multiplier, NetworkMultiplier):
        with torch.no_grad():
            agent.multiplier.net.net.layers[-1].weight.normal_(0, 1.0)
    reference = copy.deepcopy(agent)
    agent.actor.sample = _FixedSampler(agent.actor, 2)
    reference.actor.sample = _FixedSampler(reference.actor, 2)
    _in_order(buf)
    b = buf.sample(8)
    alpha = math.exp(reference.log_alpha.item())
    a, logp = reference.actor.sample(b.obs)
    v = reference.critic(b.obs, a)[0]
    logp = logp[0]
    g = 0.5 * (v[2] + v[3]) - 0.1  # the twins' mean (constraint.twin_aggregate default)
    lam = reference.multiplier.value(b.obs)[0]
    if algo == "sac-alam":
        per = alpha * logp - torch.minimum(v[0], v[1]) + torch.where(lam + g >= 0, lam * g + g * g / 2, -lam ** 2 / 2)
    else:
        per = alpha * logp - torch.minimum(v[0], v[1]) + lam * g
        if algo == "sac-lag":
            per = per / (1 + lam)
    expected = torch.autograd.grad(per.mean(), list(reference.actor.parameters()), allow_unused=True)
    captured = []
    agent.opt_actor.step = captured.append  # the gradient handed to Adam (no clipping: grad_clip = 0)
    agent.update(buf)
    for p, got, e in zip(agent.actor.parameters(), captured[0], expected, strict=True):
        torch.testing.assert_close(got, e if e is not None else torch.zeros_like(p), rtol=1e-4, atol=1e-6)
    assert any(e is not None and e.abs().sum() > 0 for e in expected)


def test_actor_gradient_weights_cost_critic_by_effective_multiplier():
    """∂L_π/∂Q^c(s,ã) = [λ + ρ g]_+ / B for SAC-ALaM (and λ/B for the Lagrangian)."""
    g = torch.tensor([-2.0, -0.05, 0.3], requires_grad=True)
    lam = torch.tensor([1.0, 0.5, 0.2])
    pen, _ = augmented(g, lam, rho=4.0)
    (grad,) = torch.autograd.grad(pen.mean(), g)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.3, 1.4]) / 3)


def test_temperature_loss_direction():
    agent, buf = _agent("sac")
    before = agent.log_alpha.item()
    agent.actor.sample = _FixedSampler(agent.actor, 2, logp=10.0)
    agent.update(buf)  # log π + H̄ = 10 - 2 > 0: entropy below target, so α grows
    assert agent.log_alpha.item() > before
    agent2, buf2 = _agent("sac")
    agent2.actor.sample = _FixedSampler(agent2.actor, 2, logp=-10.0)
    agent2.update(buf2)
    assert agent2.log_alpha.item() < before


def test_polyak_update():
    agent, buf = _agent("sac-alam", **{"sac.tau": 0.25, "constraint.tau": 0.25})
    target0 = [p.clone() for p in agent.critic_target.parameters()]
    agent.update(buf)
    for t, t0, p in zip(agent.critic_target.parameters(), target0, agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * t0 + 0.25 * p.detach())


def test_polyak_rate_of_cost_critics_is_their_own():
    agent, buf = _agent("sac-alam", **{"sac.tau": 0.25, "constraint.tau": 0.5})
    target0 = [p.clone() for p in agent.critic_target.parameters()]
    agent.update(buf)
    for t, t0, p in zip(agent.critic_target.parameters(), target0, agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t[:, :2], 0.75 * t0[:, :2] + 0.25 * p.detach()[:, :2])  # reward twins
        torch.testing.assert_close(t[:, 2:], 0.5 * t0[:, 2:] + 0.5 * p.detach()[:, 2:])  # cost twins


def test_multiplier_updated_every_period():
    agent, buf = _agent("sac-alam", **{"multiplier.period": 3, "multiplier.lr": 1e-2})
    before = copy.deepcopy(agent.multiplier.net.state_dict())
    agent.update(buf)
    agent.update(buf)
    assert all(torch.equal(before[k], v) for k, v in agent.multiplier.net.state_dict().items())
    agent.update(buf)
    assert not all(torch.equal(before[k], v) for k, v in agent.multiplier.net.state_dict().items())
    # λ_prev followed λ_ξ (hard copy)
    for p_prev, p in zip(agent.multiplier.prev.parameters(), agent.multiplier.net.parameters(), strict=True):
        torch.testing.assert_close(p_prev, p.detach())


@pytest.mark.parametrize("residual_action", ["sample", "mean"])
def test_multiplier_residual_action(residual_action):
    """The multiplier sees g(s, a) = Q^c(s, a) − d at ã ~ π with the round's noise, or at the mean action tanh(μ(s))."""
    agent, buf = _agent("sac-alam", **{"multiplier.residual_action": residual_action})
    seen = {}
    agent.multiplier.update = lambda obs, g, functional=False: seen.update(obs=obs, g=g) or {}
    obs = buf.sample_obs(8).view(1, 8, -1)
    eps = torch.randn(1, 8, agent.act_dim, generator=torch.Generator().manual_seed(3))
    agent._multiplier_step(obs, eps)
    act = agent.actor.mode(obs) if residual_action == "mean" else agent.actor.sample(obs, eps)[0]
    qc = agent.critic(obs, act)[:, 2:].mean(1, keepdim=True)  # mean of the twins (constraint.twin_aggregate default)
    expected = qc - agent.signal.threshold  # (S, M = 1, B)
    torch.testing.assert_close(seen["g"], expected)
    other = agent.actor.sample(obs, eps)[0] if residual_action == "mean" else agent.actor.mode(obs)
    assert not torch.allclose(agent.critic(obs, other)[:, 2:].mean(1, keepdim=True) - agent.signal.threshold, expected)


def test_state_noise_jitters_each_members_round_by_its_own_spread():
    """multiplier.state_noise: the round's states are s + σ_noise · std_k ⊙ ε, std_k the per-dimension spread of
    member k's round (here two members whose states differ in scale by 100 in one dimension)."""
    from statewise.method.multipliers import jitter_states

    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 3, 64, 2, generator=gen) * torch.tensor([[1.0, 0.01], [100.0, 1.0]]).view(2, 1, 1, 2)
    eps = torch.randn(2, 3, 64, 2, generator=gen)
    out = jitter_states(obs, 0.5, eps)
    for k in range(2):
        std = obs[k].reshape(-1, 2).std(dim=0, correction=0)  # over the K·B states of member k's round
        torch.testing.assert_close(out[k], obs[k] + 0.5 * std * eps[k])
    torch.testing.assert_close(jitter_states(obs, 0.0, eps), obs)


@pytest.mark.parametrize("noise", [0.0, 0.6])
def test_multiplier_round_sees_jittered_states(noise):
    """The λ network is fit on jittered replay states (drawn from the member's update stream) when state_noise > 0,
    and on the replay states themselves, with no extra random draw, when it is 0."""
    agent, buf = _agent("sac-alam", **{"multiplier.state_noise": noise, "multiplier.period": 1})
    seen = []
    agent._round = lambda obs, eps: seen.append(obs) or {}
    sampled = []
    sample_obs = buf.sample_obs
    buf.sample_obs = lambda n: sampled.append(sample_obs(n)) or sampled[-1]
    agent.update(buf)
    replay = sampled[0].view(seen[0].shape)
    if noise == 0:
        assert torch.equal(seen[0], replay)
    else:
        moved = (seen[0] - replay).flatten(1, 2) / replay.flatten(1, 2).std(dim=1, correction=0)
        assert abs(float(moved.std()) - noise) < 0.2 * noise  # noise · ε: 240 standard normals


def test_member_group_clipping_matches_torch_per_group():
    """clip_per_member on (S, K, ...) gradients is torch's clip_grad_norm_ applied to each member's group
    of critics alone: members never scale each other, nor do the reward and the cost twins."""
    from statewise.method.optim import clip_per_member

    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.zeros(2, 4, 3, 5)), torch.nn.Parameter(torch.zeros(2, 4, 1, 5))]
    for p, scale in zip(params, (30.0, 0.01), strict=True):
        p.grad = torch.randn(p.shape, generator=gen) * scale
    params[0].grad[1] *= 1e-4  # member 1 below the clip
    groups = (slice(0, 2), slice(2, 4))
    reference = {}
    for member in range(2):
        for group in groups:  # torch's own clipping on one member's group alone
            sliced = [torch.nn.Parameter(p.detach()[member, group].clone()) for p in params]
            for s, p in zip(sliced, params, strict=True):
                s.grad = p.grad[member, group].clone()
            torch.nn.utils.clip_grad_norm_(sliced, 1.0)
            reference[member, group.start] = [s.grad for s in sliced]
    clipped = clip_per_member([p.grad for p in params], 1.0, 2, list(groups))
    for (member, start), ref in reference.items():
        for c, r in zip(clipped, ref, strict=True):
            torch.testing.assert_close(c[member, start:start + 2], r)


def test_cost_critic_update_does_not_depend_on_reward_scale():
    """Reward and cost twins are clipped separately: with the actor frozen, a reward scale large enough to trigger
    the reward critics' clipping leaves the cost critics' trajectory bit-for-bit unchanged."""
    finals = []
    for scale in (1.0, 1e4):
        agent, buf = _agent("sac-alam", **{"sac.reward_scale": 1.0, "sac.lr_actor": 1e-30, "sac.grad_clip": 1.0})
        buf.rew.mul_(scale)
        torch.manual_seed(5)
        for _ in range(4):
            agent.update(buf)
        finals.append([p.detach()[:, 2:].clone() for p in agent.critic.parameters()])
    for a, b in zip(*finals, strict=True):
        assert torch.equal(a, b)


def test_multiplier_activation_is_its_own_choice():
    """multiplier.activation sets the λ network's hidden activation only; auto follows sac.activation."""
    def kinds(cfg):
        agent = SAC.from_config(2, 1, cfg.validate())
        return type(agent.multiplier.net.net.act), type(agent.actor.net.act), type(agent.critic.net.act)

    cfg = Config(algo="sac-alam")
    cfg.sac.hidden = cfg.multiplier.hidden = [8, 8]
    assert kinds(copy.deepcopy(cfg)) == (torch.nn.ReLU, torch.nn.ReLU, torch.nn.ReLU)
    tanh = copy.deepcopy(cfg)
    tanh.multiplier.activation = "tanh"
    assert kinds(tanh) == (torch.nn.Tanh, torch.nn.ReLU, torch.nn.ReLU) and tanh.multiplier.activation == "tanh"
    follows = copy.deepcopy(cfg)
    follows.sac.activation = "elu"
    assert kinds(follows) == (torch.nn.ELU, torch.nn.ELU, torch.nn.ELU) and follows.multiplier.activation == "elu"


@pytest.mark.parametrize("algo", ["sac-lag", "sac-pid-lag", "sac-al", "fac", "sac-alam", "alam-no-qp", "alam-no-dt"])
def test_parts_are_built_from_their_own_sections(algo):
    """The penalty owns ρ and the normalisation, the multiplier its round schedule; SAC reads them from its parts."""
    cfg = Config(algo=algo)
    cfg.multiplier.rho, cfg.multiplier.period, cfg.multiplier.state_noise = 4.0, 7, 0.0
    cfg.validate()
    agent = SAC.from_config(3, 2, cfg)
    preset = ALGORITHMS[algo]
    assert isinstance(agent.penalty, Augmented if preset.penalty == "augmented" else Lagrangian)
    assert agent.penalty.normalize == preset.normalize_actor
    if preset.penalty == "augmented":
        assert agent.penalty.rho == 4.0
        g, lam = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 1.0])
        assert torch.allclose(agent.penalty(g, lam)[0], augmented(g, lam, 4.0)[0])
    assert agent.multiplier.schedule == Schedule(period=7, steps=10 if preset.update == "regression" else 1)
    assert type(agent.multiplier).per_state == (preset.kind == "network")
    assert agent.signal is agent.parts.signal and agent.signal.threshold == cfg.constraint.threshold
