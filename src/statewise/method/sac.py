"""The one SAC backbone and its update (docs/algorithm.md §3-§5).

Every algorithm is this class with a different constraint signal / multiplier / penalty plugged in:
``sac`` has none; ``sac-lag``, ``fac``, ``sac-alam`` and the ablations differ only in the
:mod:`statewise.method.multipliers` object and the :mod:`statewise.method.penalties` term they use.

One gradient step (:meth:`SAC.update`):

1. critics:  y   = r + γ (1−term) (min_i Q̄_i(s',a') − α log π(a'|s'))          a' ~ π(·|s')
             y_c = signal.backup(c, agg_i Q̄^c_i(s',a'), term)      agg: constraint.twin_target (mean by default)
             L   = Σ_i mean (Q_i(s,a) − y)² + Σ_i mean (Q^c_i(s,a) − y_c)²    (one batched ensemble;
                                                                           gradient norm clipped per twin pair)
2. actor:    L_π = mean[ (α log π(ã|s) − min_i Q_i(s,ã) + pen(g, λ(s))) / norm ],   g = agg_i Q^c_i(s,ã) − d
             (agg: constraint.twin_aggregate, mean by default)
3. alpha:    L_α = −mean[ log α · sg(log π(ã|s) + H̄) ]
4. every m_λ steps, K_λ times: multiplier.update(s, g(s, ã ~ π)) on a fresh batch (s jittered: multiplier.state_noise),
   then end_round()
5. Polyak:   Q̄ ← (1−τ) Q̄ + τ Q  (reward critics: sac.tau; cost critics: constraint.tau)

The class holds a *population*: S independent agents (one per seed) whose every network, target, optimiser
state and multiplier carries a leading member dimension, so one batched update serves all S. Members never mix:
each member's loss is its own batch mean and the members' losses are summed (so each gradient is the member's
own), Adam is elementwise, gradient norms are clipped per member, and every random draw (policy noise, replay
indices) comes from the member's own generators. A single run is a population of one.

No host-device synchronisation happens inside an update: statistics stay tensors of shape (S,) and are only
read when the trainer logs. Steps 1-3 and 5 are :meth:`SAC._step`, one step of 4 is :meth:`SAC._multiplier_step`;
both are written over parameter tensors (:mod:`statewise.method.optim`) so that :meth:`SAC.compile` can capture
each as one graph.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from statewise.config import Config, MultiplierConfig, SACConfig
from statewise.errors import ConfigError
from statewise.memory import available_memory, human_bytes, out_of_memory
from statewise.method.buffer import ReplayBuffer
from statewise.method.multipliers import jitter_states, make_multiplier
from statewise.method.nets import Critic, TanhGaussianPolicy, member_randn
from statewise.method.optim import Adam, clip_per_member, take_grad
from statewise.method.penalties import Penalty, make_penalty
from statewise.method.signals import ConstraintSignal, make_signal

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


@dataclass(frozen=True)
class Parts:
    """What one SAC update is made of, each part built from its own config section: the backbone's settings, the
    constraint signal (which owns the threshold d and the cost critics' Polyak rate), the penalty (which owns ρ) and
    the multiplier's section (a multiplier is built per member, see :class:`Networks`). Unconstrained SAC has no
    signal, penalty or multiplier."""

    sac: SACConfig
    signal: ConstraintSignal | None = None
    penalty: Penalty | None = None
    multiplier: MultiplierConfig | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> Parts:
        if not cfg.constrained:
            return cls(cfg.sac)
        return cls(cfg.sac, make_signal(cfg.constraint), make_penalty(cfg.multiplier), cfg.multiplier)

    @property
    def constrained(self) -> bool:
        return self.signal is not None

    @property
    def constraints(self) -> int:
        """M: how many state-wise constraints (0 for unconstrained SAC)."""
        return self.signal.count if self.signal is not None else 0


class Networks(nn.Module):
    """Every network and learned scalar of ``members`` agents, freshly initialised from the global RNG (the state
    dict keys are those of :class:`SAC`)."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, parts: Parts):
        super().__init__()
        s = parts.sac
        self.actor = TanhGaussianPolicy(members, obs_dim, act_dim, s.hidden, s.activation)
        self.critic = Critic(members, obs_dim, act_dim, s.hidden, parts.constraints, s.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((members,), math.log(s.alpha_init)))
        self.multiplier = None if parts.multiplier is None else make_multiplier(members, obs_dim, parts.multiplier,
                                                                                 parts.signal.shape)


class SAC(nn.Module):
    """S independent SAC agents, one per seed in ``seeds``, with a leading member dimension, composed of ``parts``."""

    def __init__(self, obs_dim: int, act_dim: int, parts: Parts, seeds: list[int]):
        super().__init__()
        self.parts = parts
        self.hp = parts.sac
        self.seeds = [int(x) for x in seeds]
        self.members = len(self.seeds)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.constrained = parts.constrained
        self.constraints = parts.constraints  # M (0 for unconstrained SAC)
        self.signal, self.penalty = parts.signal, parts.penalty
        with networks_fit(obs_dim, act_dim, parts, self.members):  # one line, not an allocator's traceback
            self._build(self.members)
            self._init_members()
        s = self.hp
        self.target_entropy = float(-act_dim if s.target_entropy == "auto" else s.target_entropy)
        self.opt_actor = Adam(list(self.actor.parameters()), s.lr_actor)
        self.opt_critic = Adam(list(self.critic.parameters()), s.lr_critic)
        self.opt_alpha = Adam([self.log_alpha], s.lr_alpha)
        self._actor_names = [name for name, _ in self.actor.named_parameters()]
        self._critic_names = [name for name, _ in self.critic.named_parameters()]
        self._target_params = list(self.critic_target.parameters())
        self._compiled = False
        self.compile_seconds = 0.0  # time spent compiling (the first update and the first multiplier round)
        self._step_fn, self._multiplier_step_fn = self._step, self._multiplier_step
        m = parts.constraints  # the reward twins, then each constraint's cost twins, are clipped as separate groups
        self._critic_groups = [slice(2 * k, 2 * k + 2) for k in range(1 + m)] if self.constrained else None
        self._member_tau: torch.Tensor | None = None  # per-critic Polyak rates when the cost twins' differ
        if self.constrained and self.signal.tau != s.tau:
            self._member_tau = torch.tensor([s.tau] * 2 + [self.signal.tau] * 2 * m)
        self.generators: dict[str, list[torch.Generator]] = {}
        self.seed_generators(torch.device("cpu"))
        self.n_updates = 0

    @classmethod
    def from_config(cls, obs_dim: int, act_dim: int, cfg: Config, seeds: list[int] | None = None) -> SAC:
        """The agents a validated ``cfg`` describes (seeds default to ``[cfg.seed]``)."""
        return cls(obs_dim, act_dim, Parts.from_config(cfg), seeds if seeds is not None else [cfg.seed])

    def _build(self, members: int) -> None:
        nets = Networks(members, self.obs_dim, self.act_dim, self.parts)
        self.actor, self.critic, self.critic_target = nets.actor, nets.critic, nets.critic_target
        self.log_alpha, self.multiplier = nets.log_alpha, nets.multiplier

    def _init_members(self) -> None:
        """Member k's initial weights come from ``torch.manual_seed(seeds[k])`` alone (the global RNG is left as it
        was), so a member starts identically whether it trains alone or beside others."""
        singles = []
        for seed in self.seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                singles.append(Networks(1, self.obs_dim, self.act_dim, self.parts).state_dict())
        self.load_state_dict({key: torch.cat([sd[key] for sd in singles]) for key in singles[0]})

    def seed_generators(self, device: torch.device) -> None:
        """Each member's own random streams (policy noise in updates, in acting) on ``device``."""
        self.generators = {purpose: [torch.Generator(device=device).manual_seed(stream_seed(seed, purpose))
                                     for seed in self.seeds] for purpose in ("update", "act")}

    def _apply(self, fn, recurse=True):  # .to(device) moves generators and optimiser states with the weights
        with networks_fit(self.obs_dim, self.act_dim, self.parts, self.members, check=False):
            out = super()._apply(fn, recurse)
        device = self.log_alpha.device
        if self.generators and self.generators["update"][0].device != device:
            self.seed_generators(device)
            for opt in self.optimizers().values():
                opt.to(device)
            if self._member_tau is not None:
                self._member_tau = self._member_tau.to(device)
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
    def lam_k(self, obs: torch.Tensor) -> torch.Tensor:
        """λ_k(s) of every constraint for a batch of states per member, (S, N, obs) -> (S, M, N) (zeros for
        unconstrained SAC, M = 1)."""
        if self.multiplier is None:
            return torch.zeros(obs.shape[0], 1, obs.shape[1], device=obs.device)
        return self.multiplier.value(pad_rows(obs))[:, :, :obs.shape[1]]

    @torch.no_grad()
    def lam(self, obs: torch.Tensor) -> torch.Tensor:
        """λ(s) for a batch of states per member, (S, N, obs) -> (S, N); with several constraints the largest
        λ_k(s), the multiplier of the constraint that binds hardest there."""
        return self.lam_k(obs).amax(1) if self.constraints > 1 else self.lam_k(obs)[:, 0]

    @torch.no_grad()
    def cost_value_k(self, obs: torch.Tensor) -> torch.Tensor:
        """Q^c_k(s, π(s)) of every constraint at the deterministic action, twins combined, (S, M, N)."""
        if not self.constrained:
            return torch.zeros(obs.shape[0], 1, obs.shape[1], device=obs.device)
        x = pad_rows(obs)
        return self.signal.combine(self.critic(x, self.actor.mode(x))[:, 2:])[:, :, :obs.shape[1]]

    @torch.no_grad()
    def cost_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Q^c(s, π(s)) at the deterministic action, twins aggregated (a reference risk score), (S, N); with several
        constraints the largest residual Q^c_k − d_k, shifted back by the smallest threshold."""
        values = self.cost_value_k(obs)
        if self.constraints <= 1:
            return values[:, 0]
        return self.signal.residual(values).amax(1) + min(self.signal.thresholds)

    @torch.no_grad()
    def residual(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """g_k(s, ã) = Q^c_k(s, ã) − d_k with ã ~ π(·|s) (noise ``eps``, or drawn from the members' update streams):
        the signal every multiplier is driven by, (S, M, N)."""
        if eps is None:
            eps = self.noise("update", (obs.shape[1], self.act_dim))
        act, _ = self.actor.sample(obs, eps)
        return self.signal.residual(self.signal.combine(self.critic(obs, act)[:, 2:]))

    # ----------------------------------------------------------------- update
    def update(self, buffer: ReplayBuffer, log: bool = False) -> dict[str, torch.Tensor]:
        """One gradient step of every member (and, every m_λ steps, a multiplier round). Random draws (replay
        indices, policy noise) happen here, from each member's own generators; the arithmetic is in :meth:`_step`
        and :meth:`_multiplier_step`, which :meth:`compile` replaces by compiled versions."""
        b = self.hp.batch_size
        schedule = self.multiplier.schedule if self.multiplier is not None else None
        warming = self._compiled and self.n_updates < (schedule.period if schedule is not None else 1)
        start = time.perf_counter() if warming else 0.0
        batch = buffer.sample(b)
        eps = self.noise("update", (2, b, self.act_dim))
        stats = self._step_fn(batch, eps, log or self._compiled)
        self.n_updates += 1
        if schedule is not None and self.n_updates % schedule.period == 0:
            k = schedule.steps  # K_λ fresh minibatches; policy and critics are fixed during the round
            obs = buffer.sample_obs(b * k).view(self.members, k, b, self.obs_dim)
            if schedule.state_noise > 0:  # fit λ on a neighbourhood of the replay states (docs/algorithm.md §5)
                obs = jitter_states(obs, schedule.state_noise, self.noise("update", (k, b, self.obs_dim)))
            stats.update(self.by_constraint(self._round(obs, self.noise("update", (k, b, self.act_dim)))))
        if warming:  # the first calls of the compiled functions compile them
            self.compile_seconds += time.perf_counter() - start
        return stats

    @torch.no_grad()
    def _step(self, batch, eps: torch.Tensor, log: bool) -> dict[str, torch.Tensor]:
        """Steps 1-3 and 5 of the module docstring for a batch (S, B, ...) and policy noise eps (S, 2, B, act)."""
        s, functional = self.hp, self._compiled
        alpha = member_exp(self.log_alpha).unsqueeze(1)  # (S, 1)

        # 1) critics (reward twins + cost twins of every member in one ensemble)
        next_act, next_logp = self.actor.sample(batch.next_obs, eps[:, 0])
        next_values = self.critic_target(batch.next_obs, next_act)
        not_done = 1.0 - batch.terminated
        y = batch.rew + s.gamma * not_done * (Critic.reward_value(next_values) - alpha * next_logp)
        targets = [y, y]
        if self.constrained:  # one target per constraint, (S, M, B), for its pair of cost twins
            y_c = self.signal.backup(self._per_constraint(batch.cost), self.signal.target_value(next_values[:, 2:]),
                                     batch.terminated.unsqueeze(1))
            for k in range(self.constraints):
                targets += [y_c[:, k], y_c[:, k]]
        targets = torch.stack(targets, dim=1)  # (S, K, B)
        grads, member_loss = take_grad(self._critic_loss, self.opt_critic.params, batch.obs, batch.act, targets,
                                       functional=functional)
        # per member; the reward and the cost twins separately (their scales differ)
        self.opt_critic.step(clip_per_member(grads, s.grad_clip, 2, self._critic_groups))

        # 2) actor against the updated critics (which receive no gradient)
        grads, aux = take_grad(self._actor_loss, self.opt_actor.params, batch.obs, eps[:, 1], alpha,
                               functional=functional)
        self.opt_actor.step(clip_per_member(grads, s.grad_clip))
        logp = aux["logp"]

        # 3) temperature: L_α = −mean[log α · (log π + H̄)], whose gradient in log α is −mean(log π + H̄)
        self.opt_alpha.step([-(logp + self.target_entropy).mean(1)])

        # 5) Polyak averaging of the target critics: rate τ for the reward twins, constraint.tau for the cost twins
        if self._member_tau is None:
            torch._foreach_lerp_(self._target_params, self._critic_params, s.tau)
        else:
            for target, param in zip(self._target_params, self._critic_params, strict=True):
                target.lerp_(param, self._member_tau.view(1, -1, *([1] * (param.dim() - 2))))

        if not log:
            return {}
        stats = dict(reward_critic_loss=member_loss[:, :2].sum(1), actor_loss=aux["loss"], alpha=alpha.squeeze(1),
                     entropy=-logp.mean(1), q=aux["q"].mean(1))
        if self.constrained:  # every statistic has shape (S,), one per constraint
            g, lam, lam_eff = aux["g"], aux["lam"], aux["lam_eff"]  # (S, M, B)
            residual = g.mean(-1)
            d = self.signal.threshold if self.signal.threshold is not None else self.signal.thresholds_on(g.device)
            qc = residual + d
            stats.update(self.by_constraint(dict(
                cost_critic_loss=member_loss[:, 2:].unflatten(1, (self.constraints, 2)).sum(2), qc=qc,
                residual=residual, violated_frac=(g > 0).float().mean(-1), lam_batch_mean=lam.mean(-1),
                lam_batch_max=lam.amax(-1), lam_eff_mean=lam_eff.mean(-1), active_frac=(lam_eff > 0).float().mean(-1))))
        return stats

    def _per_constraint(self, cost: torch.Tensor) -> torch.Tensor:
        """Stored costs (S, B) or, with named costs, (S, B, M) -> (S, M, B)."""
        return cost.movedim(-1, 1) if self.signal.shape else cost.unsqueeze(1)

    def by_constraint(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-constraint statistics (S, M) as (S,) columns: ``name`` for one unnamed constraint, else
        ``name[cost]`` per named cost (metrics.csv, TensorBoard)."""
        if not self.signal.shape:
            return {name: value[:, 0] for name, value in stats.items()}
        return {f"{name}[{cost}]": value[:, k] for name, value in stats.items()
                for k, cost in enumerate(self.signal.names)}

    def _critic_loss(self, params, obs, act, targets):
        """Σ_members Σ_i mean_B (Q_i(s,a) − y_i)², and the per-member, per-critic terms (S, K)."""
        values = torch.func.functional_call(self.critic, dict(zip(self._critic_names, params, strict=True)), (obs, act))
        member_loss = (values - targets).pow(2).mean(dim=2)
        return member_loss.sum(), member_loss

    def _actor_loss(self, params, obs, eps, alpha):
        """Σ_members mean_B[(α log π(ã|s) − min_i Q_i(s,ã) + pen(g, λ(s))) / norm], ã = tanh(μ + σ·eps)."""
        named = dict(zip(self._actor_names, params, strict=True))
        act, logp = torch.func.functional_call(self.actor, named, (obs, eps))
        pi_values = self.critic(obs, act)
        q_pi = Critic.reward_value(pi_values)
        per_sample = alpha * logp - q_pi
        aux = {"logp": logp, "q": q_pi}
        if self.constrained:  # Σ_k ψ(g_k, λ_k) over the constraints, each (S, M, B)
            g = self.signal.residual(self.signal.combine(pi_values[:, 2:]))
            lam = self.multiplier.value(obs)
            pen, lam_eff = self.penalty(g, lam)
            lam_eff = lam_eff.detach()
            per_sample = per_sample + pen.sum(1)
            if self.penalty.normalize:
                per_sample = per_sample / (1.0 + lam_eff.sum(1))
            aux.update(g=g, lam=lam, lam_eff=lam_eff)
        aux["loss"] = per_sample.mean(1)
        return aux["loss"].sum(), aux

    @torch.no_grad()
    def _round(self, obs: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 4: K_λ multiplier steps on minibatches obs (S, K, B, obs) with residual noise eps (S, K, B, act),
        then end_round(). One residual pass per minibatch keeps the activations small enough to stay in cache."""
        stats: dict[str, torch.Tensor] = {}
        for k in range(obs.shape[1]):
            stats = self._multiplier_step_fn(obs[:, k], eps[:, k])
        self.multiplier.end_round()
        return stats

    @torch.no_grad()
    def _multiplier_step(self, obs: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """One multiplier step on a minibatch: the residual g(s, ã) = Q^c(s, ã) − d at ã ~ π (or at the mean action,
        ``multiplier.residual_action``), then the rule's update."""
        if self.multiplier.schedule.residual_action == "mean":
            eps = torch.zeros_like(eps)
        return self.multiplier.update(obs, self.residual(obs, eps), functional=self._compiled)

    # ------------------------------------------------------------ compilation
    def compile(self, mode: bool | str, device: torch.device, updates: float = math.inf) -> str:
        """Compile the update (``torch.compile`` of :meth:`_step` and :meth:`_multiplier_step`; CUDA graphs on a
        GPU) for ``mode`` = True, False or "auto" (compile on a GPU, and on a CPU when a C++ compiler is present and
        the run has at least :data:`COMPILE_MIN_UPDATES` ``updates``, see :func:`compile_decision`). Returns a
        one-line note for the user (empty when nothing needs saying). Compiled and eager updates agree to float
        rounding."""
        want, note = compile_decision(mode, device, updates)
        if not want:
            return note
        self._compiled = True
        # torch.compile caches per code object, and every SAC shares the code of _step: without a reset, the 9th agent
        # compiled in one process (a grid run inline, a benchmark) would hit the recompile limit and run unoptimised
        torch._dynamo.reset()
        options = {"mode": "reduce-overhead"} if device.type == "cuda" else {}
        self._step_fn = torch.compile(self._step, **options)
        self._multiplier_step_fn = torch.compile(self._multiplier_step, **options)
        return note

    def stat_names(self) -> list[str]:
        """Every statistic a logged :meth:`update` can return (the learning columns of metrics.csv), in order."""
        names = ["reward_critic_loss", "actor_loss", "alpha", "entropy", "q"]
        per_constraint = []
        if self.constrained:
            per_constraint += ["cost_critic_loss", "qc", "residual", "violated_frac", "lam_batch_mean",
                               "lam_batch_max", "lam_eff_mean", "active_frac"]
        if self.multiplier is not None:
            per_constraint += list(self.multiplier.STATS)
        if per_constraint and self.signal.shape:
            per_constraint = [f"{name}[{cost}]" for name in per_constraint for cost in self.signal.names]
        return names + per_constraint

    @property
    def compiled(self) -> bool:
        return self._compiled

    @property
    def _critic_params(self) -> list[torch.Tensor]:
        return self.opt_critic.params

    # ------------------------------------------------------------ checkpoints
    def optimizers(self) -> dict[str, Adam]:
        opts = {"actor": self.opt_actor, "critic": self.opt_critic, "alpha": self.opt_alpha}
        if self.multiplier is not None and self.multiplier.optimizer is not None:
            opts["multiplier"] = self.multiplier.optimizer
        return opts

    def optimizer_states(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers().items()}

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        for name, opt in self.optimizers().items():
            opt.load_state_dict(states[name])

    def member(self, k: int) -> SAC:
        """Member k as its own agent (a population of one, on the same device; optimiser states not copied)."""
        one = SAC(self.obs_dim, self.act_dim, self.parts, [self.seeds[k]])
        one.load_state_dict({key: value[k:k + 1] for key, value in self.state_dict().items()})
        return one.to(self.log_alpha.device)

    @torch.no_grad()
    def finite_members(self) -> list[bool]:
        """Whether each member's networks, targets, temperature and multiplier are all finite (one host sync)."""
        flags = [torch.isfinite(v).reshape(self.members, -1).all(1) for v in self.state_dict().values()
                 if v.is_floating_point()]
        return torch.stack(flags).all(0).tolist()

    def member_state(self, k: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Member k as a population of one: (module state, optimiser states), every member-leading tensor sliced
        [k:k+1] and copied. This is what member k's checkpoint holds, readable by :func:`statewise.load`."""
        module = {key: value[k:k + 1].clone() for key, value in self.state_dict().items()}
        return module, {name: _slice_optimizer_state(state, k) for name, state in self.optimizer_states().items()}

    def load_member_states(self, parts: list[tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> None:
        """The inverse of :meth:`member_state`: member k's (module state, optimiser states) into slice k."""
        modules, optimizers = zip(*parts, strict=True)
        self.load_state_dict({key: torch.cat([m[key] for m in modules]) for key in modules[0]})
        self.load_optimizer_states({name: _stack_optimizer_states([o[name] for o in optimizers])
                                    for name in optimizers[0]})


def _stack_optimizer_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Members' :class:`statewise.method.optim.Adam` states back into one (moments concatenated; the shared step
    kept)."""
    return {name: ([torch.cat([st[name][i] for st in states]) for i in range(len(value))]
                   if isinstance(value, list) else value) for name, value in states[0].items()}


def _slice_optimizer_state(state: dict[str, Any], k: int) -> dict[str, Any]:
    """Member k of an :class:`statewise.method.optim.Adam` state (moments sliced; the shared step count kept)."""
    return {name: ([t[k:k + 1].clone() for t in value] if isinstance(value, list) else value.clone())
            for name, value in state.items()}


# ------------------------------------------------------------------ memory
@contextlib.contextmanager
def networks_fit(obs_dim: int, act_dim: int, parts: Parts, members: int, check: bool = True) -> Iterator[None]:
    """Build (or move) the networks inside: refused first (``check``) where their parameters cannot fit in the memory
    this machine has left, and an allocator's refusal inside becomes a ConfigError that says which setting asks for
    how much memory."""
    free = available_memory() if check else None
    if free is not None and _roughhuman_bytes(obs_dim, act_dim, parts, members) > free // 8:  # small networks: no count
        sizes = network_memory(obs_dim, act_dim, parts, members)
        if 2 * sum(sizes.values()) > free:  # the members are built one by one, then stacked
            raise ConfigError(_memory_message(sizes, obs_dim, act_dim, parts, members,
                                              f"this machine has {human_bytes(free)} of memory available"))
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"the allocator refused ({first[:160]})"
        raise ConfigError(_memory_message(network_memory(obs_dim, act_dim, parts, members), obs_dim, act_dim, parts,
                                          members, why)) from None


def network_memory(obs_dim: int, act_dim: int, parts: Parts, members: int) -> dict[str, int]:
    """Bytes of the networks' parameters by the setting that sizes them: ``sac.hidden`` (actor, critics, their targets
    and α) and ``multiplier.hidden`` (the multiplier, with its copy for the dual target). Counted on torch's meta
    device: nothing is allocated."""
    with torch.device("meta"):
        nets = Networks(members, obs_dim, act_dim, parts)
    sizes = {"sac.hidden": 0, "multiplier.hidden": 0}
    for name, value in nets.state_dict().items():
        sizes["multiplier.hidden" if name.startswith("multiplier.") else "sac.hidden"] += \
            value.numel() * value.element_size()
    return sizes


def _roughhuman_bytes(obs_dim: int, act_dim: int, parts: Parts, members: int) -> int:
    """A generous bound on :func:`network_memory` (float32; copies of the backbone's MLP: actor, 2 + 2M critics and
    their targets; 2 of the multiplier's), cheap enough for every construction."""
    def mlp(n_in: int, hidden: list[int], n_out: int) -> int:
        dims = [n_in, *hidden, n_out]
        return sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:], strict=False))

    m = max(parts.constraints, 1)
    backbone = (1 + 2 * (2 + 2 * m)) * mlp(obs_dim + act_dim, list(parts.sac.hidden), 2 * act_dim)
    multiplier = 2 * mlp(obs_dim, list(parts.multiplier.hidden), m) if parts.multiplier is not None else 0
    return 4 * members * (backbone + multiplier + 64)


def _memory_message(sizes: dict[str, int], obs_dim: int, act_dim: int, parts: Parts, members: int, why: str) -> str:
    asks = f"sac.hidden={list(parts.sac.hidden)} asks for {human_bytes(sizes['sac.hidden'])}"
    if parts.multiplier is not None and parts.multiplier.kind == "network":
        asks += f" and multiplier.hidden={list(parts.multiplier.hidden)} for {human_bytes(sizes['multiplier.hidden'])}"
    return (f"the networks do not fit in memory: {asks} of parameters ({members} member(s), {obs_dim} observation and "
            f"{act_dim} action dimensions; twice that while they are built, more in training), but {why}; choose "
            "smaller hidden layers")


def has_cpp_compiler() -> bool:
    """Whether torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    import os
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


COMPILE_MIN_UPDATES = 10_000  # compile: auto compiles on a CPU only for runs with at least this many updates


def planned_updates(cfg: Config) -> float:
    """Gradient updates a run of ``cfg`` makes (what ``compile: auto`` weighs against the compile time)."""
    return (cfg.steps - cfg.sac.start_steps) * cfg.sac.update_ratio


def compile_decision(mode: bool | str, device: torch.device, updates: float) -> tuple[bool, str]:
    """(compile?, note for the user) for ``compile`` = True, False or "auto" and a run of ``updates`` updates."""
    if mode is False:
        return False, ""
    if device.type == "cuda":
        return True, ""
    if not has_cpp_compiler():
        return False, "compile: no C++ compiler found (g++, c++ or clang++), so the update runs eagerly"
    if mode == "auto":
        return updates >= COMPILE_MIN_UPDATES, ""
    return True, ""
