"""Value bias: how far the critics are from the truth (the over-estimation check of Fujimoto et al. 2018, TD3, Fig. 1).

For a set of states, compares each critic's estimate at the deterministic action a₀ = tanh(μ(s)) with a
Monte-Carlo estimate of the same quantity for the *current* policy:

* reward critic, the soft value SAC learns:  Q(s, a₀) ≈ E[ Σ_t γ^t r_t − α Σ_{t≥1} γ^t log π(a_t|s_t) ]
* cost critic (constraint signal ``cvf``):   Q^c(s, a₀) ≈ E[ Σ_t γ_c^t c_t ]      (training costs, binary by default);
  for the other signals the same rollouts give their value by the signal's own Bellman recursion, run backwards
  (:func:`statewise.method.signals.rollout_values`)

Rollouts take a₀ first and then sample a_t ~ π(·|s_t); they stop when the task terminates and run past the time limit
(the critics bootstrap through truncation, so their target is the infinite-horizon value), up to ``horizon`` steps.
The estimates are the twins as the algorithm aggregates them: ``min`` for the reward, ``constraint.twin_aggregate``
(the mean by default; ``max`` is the pessimistic choice) for the cost.

Rollouts run batched, all at once, through the task's vectorised dynamics ``task.transition(states, actions)``, so
the check needs a task whose observation is its state and which provides ``transition`` (the double integrator
does). Action noise comes from its own generator, never from the global RNG, so measuring during training leaves
the training run bit-for-bit unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from statewise.errors import EnvError
from statewise.method.signals import rollout_values

#: reset seeds of the fixed set of exactly feasible states (the same set for every run, so methods compare)
FEASIBLE_STATES_SEED = 3_000_000


def supports_value_bias(task: Any) -> bool:
    return callable(getattr(task, "transition", None)) and callable(getattr(task, "feasible", None))


def feasible_states(env: Any, n: int, seed: int = FEASIBLE_STATES_SEED) -> np.ndarray:
    """``n`` initial states of the task that are exactly feasible (``info["feasible"]`` at reset), reset seeds
    seed, seed+1, ... (the environment's own initial distribution, infeasible draws skipped)."""
    states: list[np.ndarray] = []
    i = 0
    while len(states) < n:
        obs, info = env.reset(seed=seed + i)
        i += 1
        if info.get("feasible") is None:
            raise EnvError("value bias needs a task that reports info['feasible'] at reset")
        if info["feasible"]:
            states.append(np.asarray(obs, dtype=np.float64))
        if i > 100 * n:
            raise EnvError(f"fewer than {n} feasible initial states in {i} resets")
    return np.stack(states)


def monte_carlo_values(sac: Any, task: Any, states: np.ndarray, rollouts: int, horizon: int,
                       generator: torch.Generator) -> dict[str, np.ndarray]:
    """Critic estimates and Monte-Carlo truth at ``states`` (N, obs_dim), each averaged over ``rollouts`` rollouts,
    for a single agent ``sac`` (a population of one: ``statewise.load(...).sac``, or ``population.member(k)``).

    Returns per-state arrays: ``q`` / ``q_mc`` (soft reward value, scaled by ``sac.reward_scale``), and for a
    constrained agent ``qc`` / ``qc_mc`` (cost value) and ``lam`` (λ(s))."""
    if sac.members != 1:
        raise ValueError("monte_carlo_values measures one agent; pass population.member(k), or use "
                         "monte_carlo_values_members")
    return monte_carlo_values_members(sac, task, np.asarray(states)[None], rollouts, horizon, [generator])[0]


@torch.no_grad()
def monte_carlo_values_members(sac: Any, task: Any, states: np.ndarray, rollouts: int, horizon: int,
                               generators: list[torch.Generator | None]) -> list[dict[str, np.ndarray] | None]:
    """:func:`monte_carlo_values` for every member of a population at once: ``states`` (S, N, obs_dim), member k's
    rollouts drawing their action noise from ``generators[k]`` (None: member k is not measured, e.g. it diverged).
    One batched policy call and one call of the task's dynamics per step serve all members. Member k's numbers are
    exactly those of measuring it alone: it draws noise only while its own rollouts run, as it would alone."""
    device = next(sac.parameters()).device
    members, n = len(generators), states.shape[1]
    measured = np.array([g is not None for g in generators])
    alpha = np.array([float(sac.log_alpha[k].exp()) for k in range(members)])[:, None]  # each as alone
    obs0 = torch.as_tensor(np.asarray(states, dtype=np.float32), device=device)
    act0 = sac.actor.mode(obs0)
    values = sac.critic(obs0, act0)
    out: list[dict[str, np.ndarray]] = [{"q": values[k, :2].min(dim=0).values.cpu().numpy()} for k in range(members)]
    if sac.constrained:
        qc, lam = sac.signal.aggregate(values[:, 2:]).cpu().numpy(), sac.lam(obs0).cpu().numpy()
        for k in range(members):
            out[k].update(qc=qc[k], lam=lam[k])

    state = np.repeat(np.asarray(states, dtype=np.float64).reshape(members * n, -1), rollouts, axis=0)
    act = np.repeat(act0.reshape(members * n, -1).cpu().numpy(), rollouts, axis=0)
    ret, signal_steps, ends, lengths = _rollouts(sac, task, state, act, alpha, horizon, generators)
    results: list[dict[str, np.ndarray] | None] = []
    for k in range(members):
        if not measured[k]:
            results.append(None)
            continue
        out[k]["q_mc"] = ret[k].reshape(-1, rollouts).mean(axis=1)
        if sac.constrained:
            steps_k = np.stack([x[k] for x in signal_steps[:lengths[k]]])
            ends_k = np.stack([e[k] for e in ends[:lengths[k]]])
            out[k]["qc_mc"] = rollout_values(sac.signal, steps_k, ends_k).reshape(-1, rollouts).mean(1)
        results.append(out[k])
    return results


def _rollouts(sac: Any, task: Any, state: np.ndarray, act: np.ndarray, alpha: np.ndarray, horizon: int,
              generators: list[torch.Generator | None]) -> tuple[np.ndarray, list, list, np.ndarray]:
    """The batched rollouts of :func:`monte_carlo_values_members` from (S·N·rollouts) start states and first actions:
    (discounted soft returns (S, N·rollouts), the signal's per-step values and terminations, steps each member ran)."""
    device = next(sac.parameters()).device
    gamma, reward_scale = sac.hp.gamma, sac.hp.reward_scale
    members = len(generators)
    rows = len(state) // members
    ret = np.zeros((members, rows))
    alive = np.ones((members, rows), dtype=bool)
    running = np.array([g is not None for g in generators])  # alone, each member would stop at its own end
    lengths = np.zeros(members, dtype=int)
    signal_steps, ends = [], []  # the constraint signal's per-step values, for its backward recursion
    h = _constraint(task, state) if sac.constrained and sac.signal.needs_constraint else None
    for t in range(horizon):
        if t > 0:
            eps = torch.stack([torch.randn((rows, sac.act_dim), generator=g, device=device) if run
                               else torch.zeros((rows, sac.act_dim), device=device)
                               for g, run in zip(generators, running, strict=True)])
            a, logp = sac.actor.sample(torch.as_tensor(state, dtype=torch.float32, device=device)
                                       .reshape(members, rows, -1), eps)
            act = a.reshape(members * rows, -1).cpu().numpy()
            ret[running] -= (alive * gamma**t * alpha * logp.cpu().numpy())[running]
        with np.errstate(all="ignore"):  # a diverged member's states may be non-finite; it is not measured
            state, r, c, terminated = task.transition(state, act)
        ret[running] += (alive * gamma**t * reward_scale * r.reshape(members, -1))[running]
        if sac.constrained:
            h_next = _constraint(task, state) if h is not None else None
            signal_steps.append(sac.signal.transition_value(c, h, h_next).reshape(members, -1))
            ends.append(terminated.reshape(members, -1).copy())
            h = h_next
        lengths[running] += 1
        alive &= ~terminated.reshape(members, -1)
        running &= alive.any(axis=1)
        if not running.any():
            break
    return ret, signal_steps, ends, lengths


def _constraint(task: Any, state: np.ndarray) -> np.ndarray:
    if not callable(getattr(task, "constraint", None)):
        raise EnvError("the value-bias check of the hjr and cbf signals needs task.constraint(states)")
    return np.asarray(task.constraint(state), dtype=np.float64)


def summarize(values: dict[str, np.ndarray], threshold: float | None, prefix: str) -> dict[str, float]:
    """Scalar summaries of :func:`monte_carlo_values`: mean estimate, mean truth, mean and median bias."""
    out = {f"{prefix}q": float(values["q"].mean()), f"{prefix}q_mc": float(values["q_mc"].mean()),
           f"{prefix}q_bias_mean": float((values["q"] - values["q_mc"]).mean()),
           f"{prefix}q_bias_median": float(np.median(values["q"] - values["q_mc"]))}
    if "qc" in values:
        bias = values["qc"] - values["qc_mc"]
        out.update({f"{prefix}qc": float(values["qc"].mean()), f"{prefix}qc_mc": float(values["qc_mc"].mean()),
                    f"{prefix}qc_bias_mean": float(bias.mean()), f"{prefix}qc_bias_median": float(np.median(bias)),
                    f"{prefix}lam_mean": float(values["lam"].mean())})
        if threshold is not None:  # how often the sign of g = Q^c − d is wrong
            out[f"{prefix}g_pos_frac"] = float(np.mean(values["qc"] > threshold))
            out[f"{prefix}g_pos_frac_mc"] = float(np.mean(values["qc_mc"] > threshold))
    return out


class ValueBiasProbe:
    """Measures value bias during training on (a) states drawn from each member's replay buffer and (b) a fixed set of
    exactly feasible states (the same for every member and run); one row per member and call for
    ``value_bias.csv``. All members are measured at once (:func:`monte_carlo_values_members`); a member's row is the
    same as when it trains alone."""

    def __init__(self, env: Any, seeds: list[int], states: int = 256, rollouts: int = 8, horizon: int = 500):
        self.task = env.unwrapped
        if not supports_value_bias(self.task):
            raise EnvError("value_bias needs a task with exact feasibility and batched dynamics "
                           "(task.feasible and task.transition, e.g. statewise/DoubleIntegrator-v0)")
        self.n, self.rollouts, self.horizon = states, rollouts, horizon
        self.feasible = feasible_states(env, states)
        self.seeds = list(seeds)

    def measure(self, sac: Any, replay_obs: torch.Tensor, step: int, members: list[bool]) -> list[dict[str, float]]:
        """``sac``: the population; ``replay_obs`` (S, L, obs): the members' stored observations; ``members``: which
        to measure. Returns a row per member (empty for those not measured)."""
        device = next(sac.parameters()).device
        gens = [torch.Generator(device=device).manual_seed(seed * 1_000_003 + step) if on else None
                for seed, on in zip(self.seeds, members, strict=True)]
        replay = np.stack([replay_obs[k, torch.randint(0, replay_obs.shape[1], (self.n,), generator=g, device=device)]
                           .cpu().numpy().astype(np.float64) if g is not None else
                           np.zeros((self.n, replay_obs.shape[2])) for k, g in enumerate(gens)])
        threshold = sac.signal.threshold if sac.constrained else None
        rows: list[dict[str, float]] = [{} for _ in gens]
        feasible = np.broadcast_to(self.feasible, (len(gens), *self.feasible.shape))
        for name, states in (("replay", replay), ("feasible", feasible)):
            values = monte_carlo_values_members(sac, self.task, states, self.rollouts, self.horizon, gens)
            for row, v in zip(rows, values, strict=True):
                if v is not None:
                    row.update(summarize(v, threshold, f"{name}_"))
        return rows
