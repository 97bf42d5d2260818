"""Multipliers: one object owns λ and its update rule (docs/algorithm.md §5).

Every multiplier has the same small interface, so the SAC backbone never knows which one it holds:

* ``value(obs)``: the detached multiplier λ_k(s) ∈ [0, λ_max] of each constraint k for a batch of states,
  (S, B, obs) -> (S, M, B);
* ``update(obs, g, functional)``: one optimiser step given the residuals g_k = Q^c_k(s, ã) − d_k at ã ~ π (no grad),
  (S, M, B); returns per-member, per-constraint statistics of shape (S, M). Learned multipliers write their loss as a
  function of their parameter tensors (``loss``) and step with :class:`statewise.method.optim.Adam`, so the step can
  be compiled;
* ``end_round()``: called after the K_λ steps of one multiplier update (moves the dual iterate);
* ``schedule``: when and on what the rounds run (m_λ, K_λ, fit-state noise, residual action), from its own section;
* ``per_state``: a capability flag, whether λ depends on the state (a λ map exists), read by analysis code.

:data:`MULTIPLIERS` maps ``multiplier.kind`` to the class; :func:`make_multiplier` builds one from its section.
Every rule acts on each constraint on its own (docs/algorithm.md §2c): a scalar or PID multiplier keeps one λ per
constraint (its state has shape (S, *shape), ``shape`` = () for one unnamed constraint, (M,) for M named costs), a
network has one output per constraint.

Implementations: :class:`ScalarMultiplier` (SAC-Lag: dual ascent on the batch-mean residual),
:class:`PIDMultiplier` (SAC-PID-Lag: PID control of a scalar λ on the same residual),
:class:`NetworkMultiplier` with ``update="dual-ascent"`` (FAC) or ``update="regression"`` (ALaM).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from statewise.config import MultiplierConfig
from statewise.method.nets import MultiplierNet
from statewise.method.optim import Adam, clip_per_member, take_grad


@dataclass(frozen=True)
class Schedule:
    """When a multiplier round runs and on what (docs/algorithm.md §5): every ``period`` (m_λ) gradient steps,
    ``steps`` (K_λ) optimiser steps on fresh minibatches, fit states jittered by ``state_noise`` standard deviations,
    the residual taken at a sampled (``sample``) or the deterministic (``mean``) action."""

    period: int = 10
    steps: int = 1
    state_noise: float = 0.0
    residual_action: str = "sample"

    @classmethod
    def from_config(cls, cfg: MultiplierConfig) -> Schedule:
        return cls(int(cfg.period), int(cfg.steps), float(cfg.state_noise), cfg.residual_action)


class ScalarMultiplier(nn.Module):
    """One λ per member for all states, trained by projected dual ascent on ḡ = mean_B g (docs/algorithm.md §5).

    Loss ``−λ·ḡ`` (gradient ``−ḡ``), Adam step, then projection ``λ ← clip(λ, 0, λ_max)``. λ has shape (S,).
    """

    STATS = ("multiplier_loss",)  # what update() returns (metrics.csv columns)
    per_state = False

    def __init__(self, members: int, obs_dim: int, cfg: MultiplierConfig, shape: tuple[int, ...] = ()):
        super().__init__()
        self.schedule = Schedule.from_config(cfg)
        self.lam_max = cfg.lam_max
        self.lam = nn.Parameter(torch.full((members, *shape), float(cfg.lam_init)))
        self.optimizer = Adam([self.lam], cfg.lr)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        lam = self.lam.detach().clamp(0.0, self.lam_max).view(obs.shape[0], -1, 1)
        return lam.expand(*lam.shape[:2], obs.shape[1])

    @staticmethod
    def loss(params: list[torch.Tensor], obs: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        member_loss = -params[0].view(g.shape[:2]) * g.mean(-1)  # (S, M)
        return member_loss.sum(), member_loss

    @torch.no_grad()
    def update(self, obs: torch.Tensor, g: torch.Tensor, functional: bool = False) -> dict[str, torch.Tensor]:
        grads, member_loss = take_grad(self.loss, [self.lam], obs, g, functional=functional)
        self.optimizer.step(grads)
        self.lam.clamp_(0.0, self.lam_max)
        return {"multiplier_loss": member_loss}

    def end_round(self) -> None:
        pass


class PIDMultiplier(nn.Module):
    """One λ per member for all states from a PID controller on ḡ = mean_B g (Stooke et al. 2020;
    docs/algorithm.md §5, in OmniSafe's EMA-smoothed form). The integral term alone is projected dual ascent
    with step K_I::

        I  ← max(0, I + K_I ḡ)                         (starts at λ_init)
        P  ← a_p P + (1 − a_p) ḡ                       (EMA of the residual)
        J  ← a_d J + (1 − a_d) ḡ                       (EMA for the derivative)
        D  = max(0, J − J[k − d_delay])
        λ  = clip(K_P P + I + K_D D, 0, λ_max)

    All state lives in tensors with a leading member dimension (checkpointed with the module); no optimiser.
    """

    STATS = ("pid_p", "pid_i", "pid_d")
    per_state = False
    optimizer = None

    def __init__(self, members: int, obs_dim: int, cfg: MultiplierConfig, shape: tuple[int, ...] = ()):
        super().__init__()
        self.schedule = Schedule.from_config(cfg)
        self.lam_max = cfg.lam_max
        self.kp, self.ki, self.kd = cfg.pid_kp, cfg.pid_ki, cfg.pid_kd
        self.ema_p, self.ema_d = cfg.pid_ema_p, cfg.pid_ema_d
        self.register_buffer("lam", torch.full((members, *shape), float(cfg.lam_init)))
        self.register_buffer("integral", torch.full((members, *shape), float(cfg.lam_init)))
        self.register_buffer("p_ema", torch.zeros(members, *shape))
        self.register_buffer("d_ema", torch.zeros(members, *shape))
        # ring buffer of past d_ema, per constraint
        self.register_buffer("d_history", torch.zeros(members, *shape, cfg.pid_d_delay))
        self.register_buffer("count", torch.zeros(members, dtype=torch.long))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        lam = self.lam.clone().view(obs.shape[0], -1, 1)  # a copy: update() changes self.lam in place
        return lam.expand(*lam.shape[:2], obs.shape[1])

    @torch.no_grad()
    def update(self, obs: torch.Tensor, g: torch.Tensor, functional: bool = False) -> dict[str, torch.Tensor]:
        s, m = g.shape[:2]  # views (S, M) of the (S, *shape) state: in-place changes reach the buffers
        lam, integral, p_ema, d_ema = (t.view(s, m) for t in (self.lam, self.integral, self.p_ema, self.d_ema))
        history = self.d_history.view(s, m, -1)
        delta = g.mean(-1)
        integral.copy_((integral + self.ki * delta).clamp(min=0.0))
        p_ema.mul_(self.ema_p).add_((1.0 - self.ema_p) * delta)
        d_ema.mul_(self.ema_d).add_((1.0 - self.ema_d) * delta)
        delay = history.shape[-1]
        # oldest entry: d_ema from d_delay updates ago (no host sync)
        slot = (self.count % delay).view(s, 1, 1).expand(s, m, 1)
        old = torch.where((self.count >= delay).view(s, 1), history.gather(2, slot).squeeze(2), d_ema)
        derivative = (d_ema - old).clamp(min=0.0)
        history.scatter_(2, slot, d_ema.unsqueeze(2))
        self.count += 1
        lam.copy_((self.kp * p_ema + integral + self.kd * derivative).clamp(0.0, self.lam_max))
        return {"pid_p": p_ema.clone(), "pid_i": integral.clone(), "pid_d": derivative}

    def end_round(self) -> None:
        pass


class NetworkMultiplier(nn.Module):
    """State-wise multiplier network λ_ξ(s) (softplus head, clamped to [0, λ_max] when used), one per member.

    ``dual-ascent`` (FAC, docs/algorithm.md §5):   L(ξ) = −mean_B[ λ_ξ(s) · sg(g(s, ã)) ]
                                               (anti_windup: g set to 0 where λ_ξ(s) ≥ λ_max and g > 0)
    ``regression``  (ALaM, docs/algorithm.md §5):  λ̂(s) = clip( λ_prev(s) + ρ_λ · g(s, ã), 0, λ_max )
                                               L(ξ) = mean_B[ (λ_ξ(s) − sg(λ̂(s)))² ]
    where λ_prev is the previous dual iterate: a frozen copy moved towards λ_ξ after each round
    (hard copy for target_tau = 1). The raw softplus output is trained, so the gradient never dies
    at the cap; the target is clipped, so λ cannot drift into the softplus dead zone below 0.
    Each member's loss is its own batch mean; the members' losses are summed, so gradients never mix.
    """

    STATS = ("multiplier_loss",)
    per_state = True

    def __init__(self, members: int, obs_dim: int, cfg: MultiplierConfig, shape: tuple[int, ...] = ()):
        super().__init__()
        self.schedule = Schedule.from_config(cfg)
        self.rule = cfg.update
        self.lam_max = cfg.lam_max
        self.rho_lambda = float(cfg.rho_lambda)
        self.target_tau = cfg.target_tau
        self.grad_clip = cfg.grad_clip
        self.anti_windup = cfg.anti_windup
        self.fit_space = cfg.fit_space
        self.net = MultiplierNet(members, obs_dim, cfg.hidden, cfg.lam_init, cfg.activation, math.prod(shape))
        self.prev: MultiplierNet | None = None
        if self.rule == "regression":
            self.prev = copy.deepcopy(self.net).requires_grad_(False)
        self._names = [name for name, _ in self.net.named_parameters()]
        self.optimizer = Adam(list(self.net.parameters()), cfg.lr)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(obs).clamp(0.0, self.lam_max)

    def dual_target(self, obs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """λ̂(s) = clip(λ_prev(s) + ρ_λ g, 0, λ_max): the method-of-multipliers step, pointwise."""
        assert self.prev is not None
        with torch.no_grad():
            lam_prev = self.prev(obs).clamp(0.0, self.lam_max)
            return (lam_prev + self.rho_lambda * g).clamp(0.0, self.lam_max)

    def loss(self, params: list[torch.Tensor], obs: torch.Tensor, g: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule's loss as a function of the network's parameter tensors: (sum over members, per member)."""
        lam = torch.func.functional_call(self.net, dict(zip(self._names, params, strict=True)), (obs,))
        if self.rule == "regression":
            target = self.dual_target(obs, g)
            if self.fit_space == "log":
                lam, target = torch.log1p(lam), torch.log1p(target)
            member_loss = (lam - target).pow(2).mean(-1)  # (S, M): each constraint's fit
        else:
            if self.anti_windup:  # projected dual ascent: no push above the cap
                g = torch.where((lam.detach() >= self.lam_max) & (g > 0), torch.zeros_like(g), g)
            member_loss = -(lam * g).mean(-1)
        return member_loss.sum(), member_loss

    @torch.no_grad()
    def update(self, obs: torch.Tensor, g: torch.Tensor, functional: bool = False) -> dict[str, torch.Tensor]:
        grads, member_loss = take_grad(self.loss, self.optimizer.params, obs, g, functional=functional)
        self.optimizer.step(clip_per_member(grads, self.grad_clip))
        return {"multiplier_loss": member_loss}

    def end_round(self) -> None:
        if self.prev is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.prev.parameters()), list(self.net.parameters()), self.target_tau)


def jitter_states(obs: torch.Tensor, scale: float, noise: torch.Tensor) -> torch.Tensor:
    """The states a λ network is fit on in one round (``multiplier.state_noise``, docs/algorithm.md §5):
    s + scale · σ ⊙ ε, with σ the per-dimension standard deviation of member k's round of replay states
    obs (S, K, B, D) and ε (S, K, B, D) standard normals. The dual target is defined at every state (the policy and
    the cost critic are), so λ is fit on a neighbourhood of the data instead of extrapolating between data points."""
    std = obs.flatten(1, 2).std(dim=1, correction=0)[:, None, None, :]  # defined for a round of one state too
    return obs + scale * std * noise


Multiplier = ScalarMultiplier | PIDMultiplier | NetworkMultiplier

MULTIPLIERS: dict[str, type[Multiplier]] = {
    "scalar": ScalarMultiplier,
    "pid": PIDMultiplier,
    "network": NetworkMultiplier,
}


def make_multiplier(members: int, obs_dim: int, cfg: MultiplierConfig, shape: tuple[int, ...] = ()
                    ) -> Multiplier | None:
    """The multiplier ``multiplier.kind`` names, built from its own config section, for constraints of ``shape`` (the
    signal's: () for one unnamed constraint, (M,) for M named costs); None for unconstrained SAC."""
    return None if cfg.kind == "none" else MULTIPLIERS[cfg.kind](members, obs_dim, cfg, shape)


def per_state(kind: str) -> bool:
    """Whether a multiplier of this kind has a per-state λ (a λ map, a λ-based risk score); False for "none"."""
    return kind in MULTIPLIERS and MULTIPLIERS[kind].per_state
