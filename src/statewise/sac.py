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

No host-device synchronisation happens inside an update: statistics stay tensors and are only read
when the trainer logs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from statewise.buffer import ReplayBuffer
from statewise.config import Config
from statewise.constraints import make_signal
from statewise.multipliers import make_multiplier
from statewise.nets import Critic, TanhGaussianPolicy, adam
from statewise.penalties import penalty


def clip_grad_norm_by_members(params: list[torch.Tensor], groups: list[slice], max_norm: float) -> None:
    """Global-norm gradient clipping (as ``nn.utils.clip_grad_norm_``) applied to each group of ensemble members on
    its own: every parameter's leading dimension is the member, and a group's norm runs over its members' slices
    of every parameter. The reward twins (values ~1/(1−γ) · reward) and the cost twins (values in [0, 1/(1−γ_c)])
    then never scale each other's gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    member_sq = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)  # (n,) squared norm per member
    scale = torch.ones_like(member_sq)
    for group in groups:
        norm = member_sq[group].sum().sqrt()
        scale[group] = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


class SAC(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        s, m = cfg.sac, cfg.multiplier
        self.cfg = cfg
        self.constrained = cfg.constrained
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, s.hidden, s.activation)
        self.critic = Critic(obs_dim, act_dim, s.hidden, self.constrained, s.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(s.alpha_init)))
        self.multiplier = make_multiplier(obs_dim, m, s.activation)
        self.signal = make_signal(cfg.constraint) if self.constrained else None
        self.target_entropy = float(-act_dim if s.target_entropy == "auto" else s.target_entropy)

        self.opt_actor = adam(self.actor.parameters(), s.lr_actor)
        self.opt_critic = adam(self.critic.parameters(), s.lr_critic)
        self.opt_alpha = adam([self.log_alpha], s.lr_alpha)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._critic_groups = [slice(0, 2), slice(2, 4)] if self.constrained else [slice(0, 2)]
        self._member_tau: torch.Tensor | None = None  # per-member Polyak rates when the cost twins' differ
        if self.constrained and cfg.constraint.tau != s.tau:
            self._member_tau = torch.tensor([s.tau, s.tau, cfg.constraint.tau, cfg.constraint.tau])
        self.n_updates = 0

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.mode(obs) if deterministic else self.actor.sample(obs)[0]

    @torch.no_grad()
    def lam(self, obs: torch.Tensor) -> torch.Tensor:
        """λ(s) for a batch of states (zeros for unconstrained SAC)."""
        if self.multiplier is None:
            return torch.zeros(obs.shape[0], device=obs.device)
        return self.multiplier.value(obs)

    @torch.no_grad()
    def cost_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Q^c(s, π(s)) at the deterministic action, twins aggregated (a reference risk score)."""
        if not self.constrained:
            return torch.zeros(obs.shape[0], device=obs.device)
        return self.signal.aggregate(self.critic(obs, self.actor.mode(obs))[2:])

    @torch.no_grad()
    def residual(self, obs: torch.Tensor) -> torch.Tensor:
        """g(s, ã) = Q^c(s, ã) − d with ã ~ π(·|s): the signal every multiplier is driven by."""
        act, _ = self.actor.sample(obs)
        return self.signal.residual(self.signal.aggregate(self.critic(obs, act)[2:]))

    # ----------------------------------------------------------------- update
    def update(self, buffer: ReplayBuffer, log: bool = False) -> dict[str, torch.Tensor]:
        cfg, s = self.cfg, self.cfg.sac
        batch = buffer.sample(s.batch_size)
        alpha = self.log_alpha.detach().exp()
        stats: dict[str, torch.Tensor] = {}

        # 1) critics (reward twins + cost twins in one ensemble)
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch.next_obs)
            next_values = self.critic_target(batch.next_obs, next_act)
            not_done = 1.0 - batch.terminated
            y = batch.rew + s.gamma * not_done * (Critic.reward_value(next_values) - alpha * next_logp)
            targets = [y, y]
            if self.constrained:
                y_c = self.signal.backup(batch.cost, self.signal.target_value(next_values[2:]), batch.terminated)
                targets += [y_c, y_c]
            targets = torch.stack(targets)
        values = self.critic(batch.obs, batch.act)
        member_loss = (values - targets).pow(2).mean(dim=1)
        critic_loss = member_loss.sum()
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        if s.grad_clip > 0:  # the reward and the cost twins are clipped separately (their scales differ)
            clip_grad_norm_by_members(self._critic_params, self._critic_groups, s.grad_clip)
        self.opt_critic.step()

        # 2) actor, critics frozen
        for p in self._critic_params:
            p.requires_grad_(False)
        act, logp = self.actor.sample(batch.obs)
        pi_values = self.critic(batch.obs, act)
        q_pi = Critic.reward_value(pi_values)
        per_sample = alpha * logp - q_pi
        if self.constrained:
            g = self.signal.residual(self.signal.aggregate(pi_values[2:]))
            lam = self.multiplier.value(batch.obs)
            pen, lam_eff = penalty(cfg.multiplier.penalty, g, lam, cfg.multiplier.rho)
            lam_eff = lam_eff.detach()
            per_sample = per_sample + pen
            if cfg.multiplier.normalize_actor:
                per_sample = per_sample / (1.0 + lam_eff)
        actor_loss = per_sample.mean()
        self._step(self.opt_actor, actor_loss, self.actor.parameters(), s.grad_clip)
        for p in self._critic_params:
            p.requires_grad_(True)

        # 3) temperature
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self._step(self.opt_alpha, alpha_loss, None, 0.0)

        # 4) multiplier, every m_λ gradient steps
        self.n_updates += 1
        if self.multiplier is not None and self.n_updates % cfg.multiplier.period == 0:
            # K_λ fresh minibatches, drawn at once: policy and critics are fixed during the round, so one batched
            # residual serves all K_λ optimiser steps
            b = s.batch_size
            obs = buffer.sample_obs(b * cfg.multiplier.steps)
            g = self.residual(obs)
            for k in range(cfg.multiplier.steps):
                stats.update(self.multiplier.update(obs[k * b:(k + 1) * b], g[k * b:(k + 1) * b]))
            self.multiplier.end_round()

        # 5) Polyak averaging of the target critics: rate τ for the reward twins, constraint.tau for the cost twins
        with torch.no_grad():
            if self._member_tau is None:
                torch._foreach_lerp_(self._target_params, self._critic_params, s.tau)
            else:
                for target, param in zip(self._target_params, self._critic_params):
                    target.lerp_(param, self._member_tau.view(-1, *([1] * (param.dim() - 1))))

        if log:
            with torch.no_grad():
                stats.update(reward_critic_loss=member_loss[:2].sum().detach(), actor_loss=actor_loss.detach(),
                             alpha=alpha, entropy=-logp.mean(), q=q_pi.mean())
                if self.constrained:
                    stats.update(cost_critic_loss=member_loss[2:].sum().detach(), qc=g.mean() + self.signal.threshold,
                                 residual=g.mean(), violated_frac=(g > 0).float().mean(),
                                 lam_batch_mean=lam.mean(), lam_batch_max=lam.max(),
                                 lam_eff_mean=lam_eff.mean(), active_frac=(lam_eff > 0).float().mean())
        return stats

    @staticmethod
    def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Any, clip: float) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    # ------------------------------------------------------------ checkpoints
    def optimizer_states(self) -> dict[str, Any]:
        states = {"actor": self.opt_actor.state_dict(), "critic": self.opt_critic.state_dict(),
                  "alpha": self.opt_alpha.state_dict()}
        if self.multiplier is not None and self.multiplier.optimizer is not None:
            states["multiplier"] = self.multiplier.optimizer.state_dict()
        return states

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        self.opt_actor.load_state_dict(states["actor"])
        self.opt_critic.load_state_dict(states["critic"])
        self.opt_alpha.load_state_dict(states["alpha"])
        if self.multiplier is not None and self.multiplier.optimizer is not None:
            self.multiplier.optimizer.load_state_dict(states["multiplier"])
