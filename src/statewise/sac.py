"""The one SAC backbone and its update (docs/algorithm.md §3-§5).

Every algorithm is this class with a different constraint signal / multiplier / penalty plugged in:
``sac`` has none; ``sac-lag``, ``fac``, ``sac-alam`` and the ablations differ only in the
:mod:`statewise.multipliers` object and the :mod:`statewise.penalties` term they use.

One gradient step (:meth:`SAC.update`):

1. critics:  y   = r + γ (1−term) (min_i Q̄_i(s',a') − α log π(a'|s'))          a' ~ π(·|s')
             y_c = signal.backup(c, max_i Q̄^c_i(s',a'), term)
             L   = Σ_i mean (Q_i(s,a) − y)² + Σ_i mean (Q^c_i(s,a) − y_c)²    (one batched ensemble;
                                                                           gradient norm clipped per twin pair)
2. actor:    L_π = mean[ (α log π(ã|s) − min_i Q_i(s,ã) + pen(g, λ(s))) / norm ],   g = max_i Q^c_i(s,ã) − d
3. alpha:    L_α = −mean[ log α · sg(log π(ã|s) + H̄) ]
4. every m_λ steps, K_λ times: multiplier.update(s, g(s, ã ~ π)) on a fresh batch, then end_round()
5. Polyak:   Q̄ ← (1−τ) Q̄ + τ Q  (reward critics: sac.tau; cost critics: constraint.tau)

The class holds a *population*: S independent agents (one per seed) whose every network, target, optimiser
state and multiplier carries a leading member dimension, so one batched update serves all S. Members never mix:
each member's loss is its own batch mean and the members' losses are summed (so each gradient is the member's
own), Adam is elementwise, gradient norms are clipped per member, and every random draw (policy noise, replay
indices) comes from the member's own generators. A single run is a population of one.

No host-device synchronisation happens inside an update: statistics stay tensors of shape (S,) and are only
read when the trainer logs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from statewise.buffer import ReplayBuffer
from statewise.config import Config
from statewise.constraints import make_signal
from statewise.multipliers import make_multiplier
from statewise.nets import Critic, TanhGaussianPolicy, adam, clip_grad_norm_per_member, member_randn
from statewise.penalties import penalty

# random streams of one member, each seeded from (member seed, purpose) so that they never coincide
STREAMS = {"update": 11, "act": 12, "replay": 13}


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one random stream of the member trained with ``seed``."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(STREAMS[purpose],))
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**31], dtype=np.uint64))


# CPU kernels compute an elementwise exp / tanh / softplus with vector instructions in blocks of up to 32 floats and
# round the leftover elements differently, so a member's values would depend on where its rows fall in the stacked
# tensor. Padding each member's rows to a multiple of ROW_BLOCK keeps every member on the vector path, alone or not.
ROW_BLOCK = 32


def pad_rows(x: torch.Tensor) -> torch.Tensor:
    """(S, N, ...) -> (S, N', ...) with N' the next multiple of ROW_BLOCK (zero rows appended)."""
    extra = -x.shape[1] % ROW_BLOCK
    if extra == 0:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], dim=1)


def member_exp(x: torch.Tensor) -> torch.Tensor:
    """exp of a per-member vector (S,), computed on a row of ROW_BLOCK copies (see :func:`pad_rows`)."""
    return x.unsqueeze(1).expand(x.shape[0], ROW_BLOCK).exp()[:, 0]


class Networks(nn.Module):
    """Every network and learned scalar of ``members`` agents, freshly initialised from the global RNG (the state
    dict keys are those of :class:`SAC`)."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        s, m = cfg.sac, cfg.multiplier
        self.actor = TanhGaussianPolicy(members, obs_dim, act_dim, s.hidden, s.activation)
        self.critic = Critic(members, obs_dim, act_dim, s.hidden, cfg.constrained, s.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((members,), math.log(s.alpha_init)))
        self.multiplier = make_multiplier(members, obs_dim, m, s.activation)


class SAC(nn.Module):
    """S independent SAC agents (``seeds``, default ``[cfg.seed]``) with a leading member dimension."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, seeds: list[int] | None = None):
        super().__init__()
        self.cfg = cfg
        self.seeds = [int(x) for x in (seeds if seeds is not None else [cfg.seed])]
        self.members = len(self.seeds)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.constrained = cfg.constrained
        self._build(self.members)
        self._init_members()
        s = cfg.sac
        self.signal = make_signal(cfg.constraint) if self.constrained else None
        self.target_entropy = float(-act_dim if s.target_entropy == "auto" else s.target_entropy)
        self.opt_actor = adam(self.actor.parameters(), s.lr_actor)
        self.opt_critic = adam(self.critic.parameters(), s.lr_critic)
        self.opt_alpha = adam([self.log_alpha], s.lr_alpha)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._critic_groups = [slice(0, 2), slice(2, 4)] if self.constrained else None
        self._member_tau: torch.Tensor | None = None  # per-critic Polyak rates when the cost twins' differ
        if self.constrained and cfg.constraint.tau != s.tau:
            self._member_tau = torch.tensor([s.tau, s.tau, cfg.constraint.tau, cfg.constraint.tau])
        self.generators: dict[str, list[torch.Generator]] = {}
        self.seed_generators(torch.device("cpu"))
        self.n_updates = 0

    def _build(self, members: int) -> None:
        nets = Networks(members, self.obs_dim, self.act_dim, self.cfg)
        self.actor, self.critic, self.critic_target = nets.actor, nets.critic, nets.critic_target
        self.log_alpha, self.multiplier = nets.log_alpha, nets.multiplier

    def _init_members(self) -> None:
        """Member k's initial weights come from ``torch.manual_seed(seeds[k])`` alone (the global RNG is left as it
        was), so a member starts identically whether it trains alone or beside others."""
        singles = []
        for seed in self.seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                singles.append(Networks(1, self.obs_dim, self.act_dim, self.cfg).state_dict())
        self.load_state_dict({key: torch.cat([sd[key] for sd in singles]) for key in singles[0]})

    def seed_generators(self, device: torch.device) -> None:
        """Each member's own random streams (policy noise in updates, in acting) on ``device``."""
        self.generators = {purpose: [torch.Generator(device=device).manual_seed(stream_seed(seed, purpose))
                                     for seed in self.seeds] for purpose in ("update", "act")}

    def _apply(self, fn, recurse=True):  # .to(device) moves the generators along with the weights
        out = super()._apply(fn, recurse)
        device = self.log_alpha.device
        if self.generators and self.generators["update"][0].device != device:
            self.seed_generators(device)
        return out

    # ----------------------------------------------------------------- acting
    def noise(self, purpose: str, shape: tuple[int, ...]) -> torch.Tensor:
        return member_randn(self.generators[purpose], shape, self.log_alpha.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """(S, N, obs) -> (S, N, act)."""
        n = obs.shape[1]
        if deterministic:
            return self.actor.mode(pad_rows(obs))[:, :n]
        eps = pad_rows(self.noise("act", (n, self.act_dim)))
        return self.actor.sample(pad_rows(obs), eps)[0][:, :n]

    @torch.no_grad()
    def lam(self, obs: torch.Tensor) -> torch.Tensor:
        """λ(s) for a batch of states per member, (S, N, obs) -> (S, N) (zeros for unconstrained SAC)."""
        if self.multiplier is None:
            return torch.zeros(obs.shape[:2], device=obs.device)
        return self.multiplier.value(pad_rows(obs))[:, :obs.shape[1]]

    @torch.no_grad()
    def cost_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Q^c(s, π(s)) at the deterministic action, twins aggregated (a reference risk score), (S, N)."""
        if not self.constrained:
            return torch.zeros(obs.shape[:2], device=obs.device)
        x = pad_rows(obs)
        return self.signal.aggregate(self.critic(x, self.actor.mode(x))[:, 2:])[:, :obs.shape[1]]

    @torch.no_grad()
    def residual(self, obs: torch.Tensor) -> torch.Tensor:
        """g(s, ã) = Q^c(s, ã) − d with ã ~ π(·|s): the signal every multiplier is driven by, (S, N)."""
        act, _ = self.actor.sample(obs, self.noise("update", (obs.shape[1], self.act_dim)))
        return self.signal.residual(self.signal.aggregate(self.critic(obs, act)[:, 2:]))

    # ----------------------------------------------------------------- update
    def update(self, buffer: ReplayBuffer, log: bool = False) -> dict[str, torch.Tensor]:
        cfg, s = self.cfg, self.cfg.sac
        b = s.batch_size
        batch = buffer.sample(b)
        eps = self.noise("update", (2, b, self.act_dim))
        alpha = member_exp(self.log_alpha.detach()).unsqueeze(1)  # (S, 1)
        stats: dict[str, torch.Tensor] = {}

        # 1) critics (reward twins + cost twins of every member in one ensemble)
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch.next_obs, eps[:, 0])
            next_values = self.critic_target(batch.next_obs, next_act)
            not_done = 1.0 - batch.terminated
            y = batch.rew + s.gamma * not_done * (Critic.reward_value(next_values) - alpha * next_logp)
            targets = [y, y]
            if self.constrained:
                y_c = self.signal.backup(batch.cost, self.signal.target_value(next_values[:, 2:]), batch.terminated)
                targets += [y_c, y_c]
            targets = torch.stack(targets, dim=1)  # (S, K, B)
        values = self.critic(batch.obs, batch.act)
        member_loss = (values - targets).pow(2).mean(dim=2)  # (S, K)
        critic_loss = member_loss.sum()
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        if s.grad_clip > 0:  # per member; the reward and the cost twins separately (their scales differ)
            clip_grad_norm_per_member(self._critic_params, s.grad_clip, 2, self._critic_groups)
        self.opt_critic.step()

        # 2) actor, critics frozen
        for p in self._critic_params:
            p.requires_grad_(False)
        act, logp = self.actor.sample(batch.obs, eps[:, 1])
        pi_values = self.critic(batch.obs, act)
        q_pi = Critic.reward_value(pi_values)
        per_sample = alpha * logp - q_pi
        if self.constrained:
            g = self.signal.residual(self.signal.aggregate(pi_values[:, 2:]))
            lam = self.multiplier.value(batch.obs)
            pen, lam_eff = penalty(cfg.multiplier.penalty, g, lam, cfg.multiplier.rho)
            lam_eff = lam_eff.detach()
            per_sample = per_sample + pen
            if cfg.multiplier.normalize_actor:
                per_sample = per_sample / (1.0 + lam_eff)
        actor_loss = per_sample.mean(1)  # (S,)
        self.opt_actor.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        if s.grad_clip > 0:
            clip_grad_norm_per_member(list(self.actor.parameters()), s.grad_clip)
        self.opt_actor.step()
        for p in self._critic_params:
            p.requires_grad_(True)

        # 3) temperature
        alpha_loss = -(self.log_alpha.unsqueeze(1) * (logp.detach() + self.target_entropy)).mean(1)
        self.opt_alpha.zero_grad(set_to_none=True)
        alpha_loss.sum().backward()
        self.opt_alpha.step()

        # 4) multiplier, every m_λ gradient steps
        self.n_updates += 1
        if self.multiplier is not None and self.n_updates % cfg.multiplier.period == 0:
            # K_λ fresh minibatches (policy and critics are fixed during the round); one residual pass per minibatch
            # keeps the activations small enough to stay in cache
            obs = buffer.sample_obs(b * cfg.multiplier.steps)
            for k in range(cfg.multiplier.steps):
                chunk = obs[:, k * b:(k + 1) * b]
                stats.update(self.multiplier.update(chunk, self.residual(chunk)))
            self.multiplier.end_round()

        # 5) Polyak averaging of the target critics: rate τ for the reward twins, constraint.tau for the cost twins
        with torch.no_grad():
            if self._member_tau is None:
                torch._foreach_lerp_(self._target_params, self._critic_params, s.tau)
            else:
                tau = self._member_tau.to(self.log_alpha.device)
                for target, param in zip(self._target_params, self._critic_params):
                    target.lerp_(param, tau.view(1, -1, *([1] * (param.dim() - 2))))

        if log:  # every statistic has shape (S,)
            with torch.no_grad():
                stats.update(reward_critic_loss=member_loss[:, :2].sum(1), actor_loss=actor_loss.detach(),
                             alpha=alpha.squeeze(1), entropy=-logp.mean(1), q=q_pi.mean(1))
                if self.constrained:
                    stats.update(cost_critic_loss=member_loss[:, 2:].sum(1), qc=g.mean(1) + self.signal.threshold,
                                 residual=g.mean(1), violated_frac=(g > 0).float().mean(1),
                                 lam_batch_mean=lam.mean(1), lam_batch_max=lam.amax(1),
                                 lam_eff_mean=lam_eff.mean(1), active_frac=(lam_eff > 0).float().mean(1))
        return stats

    # ------------------------------------------------------------ checkpoints
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"actor": self.opt_actor, "critic": self.opt_critic, "alpha": self.opt_alpha}
        if self.multiplier is not None and self.multiplier.optimizer is not None:
            opts["multiplier"] = self.multiplier.optimizer
        return opts

    def optimizer_states(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers().items()}

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        for name, opt in self.optimizers().items():
            opt.load_state_dict(states[name])

    def member(self, k: int) -> "SAC":
        """Member k as its own agent (a population of one, on the same device; optimiser states not copied)."""
        cfg = copy.deepcopy(self.cfg)
        cfg.seed = self.seeds[k]
        one = SAC(self.obs_dim, self.act_dim, cfg)
        one.load_state_dict({key: value[k:k + 1] for key, value in self.state_dict().items()})
        return one.to(self.log_alpha.device)

    def member_state(self, k: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Member k as a population of one: (module state, optimiser states), every member-leading tensor sliced
        [k:k+1] and copied. This is what member k's checkpoint holds, readable by :func:`statewise.load`."""
        module = {key: value[k:k + 1].clone() for key, value in self.state_dict().items()}
        return module, {name: _slice_optimizer_state(state, k) for name, state in self.optimizer_states().items()}


def _slice_optimizer_state(state: dict[str, Any], k: int) -> dict[str, Any]:
    """Slice member k out of an optimiser state dict (Adam: exp_avg, exp_avg_sq; the shared step count is kept)."""
    out = copy.copy(state)
    out["state"] = {idx: {name: (value[k:k + 1].clone() if torch.is_tensor(value) and value.dim() > 0 else value)
                          for name, value in entry.items()} for idx, entry in state["state"].items()}
    return out
