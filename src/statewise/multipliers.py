"""Multipliers: one object owns λ and its update rule (docs/algorithm.md §5).

Every multiplier has the same small interface, so the SAC backbone never knows which one it holds:

* ``value(obs)``: the detached multiplier λ(s) ∈ [0, λ_max] for a batch of states, shape (B,);
* ``update(obs, g)``: one optimiser step given the residual g = Q^c(s, ã) − d at ã ~ π (no grad);
* ``end_round()``: called after the K_λ steps of one multiplier update (moves the dual iterate).

Implementations: :class:`ScalarMultiplier` (SAC-Lag: dual ascent on the batch-mean residual),
:class:`PIDMultiplier` (SAC-PID-Lag: PID control of a scalar λ on the same residual),
:class:`NetworkMultiplier` with ``update="dual-ascent"`` (FAC) or ``update="regression"`` (ALaM).
"""

from __future__ import annotations

import copy
import torch
import torch.nn.functional as F
from torch import nn

from statewise.config import MultiplierConfig
from statewise.nets import MultiplierNet, adam


class ScalarMultiplier(nn.Module):
    """One λ for all states, trained by projected dual ascent on ḡ = mean_B g (docs/algorithm.md §5).

    Loss ``−λ·ḡ`` (gradient ``−ḡ``), Adam step, then projection ``λ ← clip(λ, 0, λ_max)``.
    """

    def __init__(self, cfg: MultiplierConfig):
        super().__init__()
        self.lam_max = cfg.lam_max
        self.lam = nn.Parameter(torch.tensor(cfg.lam_init))
        self.optimizer = adam([self.lam], cfg.lr)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.lam.detach().clamp(0.0, self.lam_max).expand(obs.shape[0])

    def update(self, obs: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = -self.lam * g.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.lam.clamp_(0.0, self.lam_max)
        return {"multiplier_loss": loss.detach()}

    def end_round(self) -> None:
        pass


class PIDMultiplier(nn.Module):
    """One λ for all states from a PID controller on ḡ = mean_B g (Stooke et al. 2020; docs/algorithm.md §5,
    in OmniSafe's EMA-smoothed form). The integral term alone is projected dual ascent with step K_I::

        I  ← max(0, I + K_I ḡ)                         (starts at λ_init)
        P  ← a_p P + (1 − a_p) ḡ                       (EMA of the residual)
        J  ← a_d J + (1 − a_d) ḡ                       (EMA for the derivative)
        D  = max(0, J − J[k − d_delay])
        λ  = clip(K_P P + I + K_D D, 0, λ_max)

    All state lives in tensors (checkpointed with the module); there is no optimiser.
    """

    optimizer = None

    def __init__(self, cfg: MultiplierConfig):
        super().__init__()
        self.lam_max = cfg.lam_max
        self.kp, self.ki, self.kd = cfg.pid_kp, cfg.pid_ki, cfg.pid_kd
        self.ema_p, self.ema_d = cfg.pid_ema_p, cfg.pid_ema_d
        self.register_buffer("lam", torch.tensor(cfg.lam_init))
        self.register_buffer("integral", torch.tensor(cfg.lam_init))
        self.register_buffer("p_ema", torch.tensor(0.0))
        self.register_buffer("d_ema", torch.tensor(0.0))
        self.register_buffer("d_history", torch.zeros(cfg.pid_d_delay))  # ring buffer of past d_ema
        self.register_buffer("count", torch.tensor(0))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.lam.clone().expand(obs.shape[0])  # a copy: update() changes self.lam in place

    @torch.no_grad()
    def update(self, obs: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        delta = g.mean()
        self.integral.copy_((self.integral + self.ki * delta).clamp(min=0.0))
        self.p_ema.mul_(self.ema_p).add_((1.0 - self.ema_p) * delta)
        self.d_ema.mul_(self.ema_d).add_((1.0 - self.ema_d) * delta)
        slot = self.count % self.d_history.numel()  # oldest entry: d_ema from d_delay updates ago (no host sync)
        old = torch.where(self.count >= self.d_history.numel(), self.d_history[slot], self.d_ema)
        derivative = (self.d_ema - old).clamp(min=0.0)
        self.d_history[slot] = self.d_ema
        self.count += 1
        self.lam.copy_((self.kp * self.p_ema + self.integral + self.kd * derivative).clamp(0.0, self.lam_max))
        return {"pid_p": self.p_ema.clone(), "pid_i": self.integral.clone(), "pid_d": derivative}

    def end_round(self) -> None:
        pass


class NetworkMultiplier(nn.Module):
    """State-wise multiplier network λ_ξ(s) (softplus head, clamped to [0, λ_max] when used).

    ``dual-ascent`` (FAC, docs/algorithm.md §5):   L(ξ) = −mean_B[ λ_ξ(s) · sg(g(s, ã)) ]
                                               (anti_windup: g set to 0 where λ_ξ(s) ≥ λ_max and g > 0)
    ``regression``  (ALaM, docs/algorithm.md §5):  λ̂(s) = clip( λ_prev(s) + ρ_λ · g(s, ã), 0, λ_max )
                                               L(ξ) = mean_B[ (λ_ξ(s) − sg(λ̂(s)))² ]
    where λ_prev is the previous dual iterate: a frozen copy moved towards λ_ξ after each round
    (hard copy for target_tau = 1). The raw softplus output is trained, so the gradient never dies
    at the cap; the target is clipped, so λ cannot drift into the softplus dead zone below 0.
    """

    def __init__(self, obs_dim: int, cfg: MultiplierConfig, activation: str = "relu"):
        super().__init__()
        self.rule = cfg.update
        self.lam_max = cfg.lam_max
        self.rho_lambda = float(cfg.rho_lambda)
        self.target_tau = cfg.target_tau
        self.grad_clip = cfg.grad_clip
        self.anti_windup = cfg.anti_windup
        self.net = MultiplierNet(obs_dim, cfg.hidden, cfg.lam_init, activation)
        self.prev: MultiplierNet | None = None
        if self.rule == "regression":
            self.prev = copy.deepcopy(self.net).requires_grad_(False)
        self.optimizer = adam(self.net.parameters(), cfg.lr)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(obs).clamp(0.0, self.lam_max)

    def dual_target(self, obs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """λ̂(s) = clip(λ_prev(s) + ρ_λ g, 0, λ_max): the method-of-multipliers step, pointwise."""
        assert self.prev is not None
        with torch.no_grad():
            lam_prev = self.prev(obs).clamp(0.0, self.lam_max)
            return (lam_prev + self.rho_lambda * g).clamp(0.0, self.lam_max)

    def update(self, obs: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        lam = self.net(obs)
        if self.rule == "regression":
            target = self.dual_target(obs, g)
            loss = F.mse_loss(lam, target)
        else:
            g = g.detach()
            if self.anti_windup:  # projected dual ascent: no push above the cap
                g = torch.where((lam.detach() >= self.lam_max) & (g > 0), torch.zeros_like(g), g)
            loss = -(lam * g).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        return {"multiplier_loss": loss.detach()}

    def end_round(self) -> None:
        if self.prev is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.prev.parameters()), list(self.net.parameters()), self.target_tau)


Multiplier = ScalarMultiplier | PIDMultiplier | NetworkMultiplier


def make_multiplier(obs_dim: int, cfg: MultiplierConfig, activation: str = "relu") -> Multiplier | None:
    if cfg.kind == "none":
        return None
    if cfg.kind == "scalar":
        return ScalarMultiplier(cfg)
    if cfg.kind == "pid":
        return PIDMultiplier(cfg)
    return NetworkMultiplier(obs_dim, cfg, activation)


