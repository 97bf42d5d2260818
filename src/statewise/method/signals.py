"""Constraint signals: what the cost critic learns and how the state-wise residual g is formed
(docs/algorithm.md §2). All methods in one comparison share the same signal and threshold.

A signal has three parts:

* ``transition_value(cost, h, h_next)``: the number stored in the replay buffer for each transition, from the
  environment's raw cost and the signed state constraint ``h`` (safe iff ``h <= 0``) before and after the step;
* ``backup(x, V', terminated)``: the Bellman target of the twin cost critics from that number and the twins'
  value at ``(s', a' ~ π)``;
* ``residual(F)``: ``g = F - d``; the state-wise constraint holds where ``g <= 0``.

The four signals (``constraint.signal``), with ``c = 1[cost > 0]``, ``h' = h(s')``, ``γ = γ_c``:

=====  ==========================================  ==============================================  ===========
name   what F(s, a) is                             Bellman target y                                 default d
=====  ==========================================  ==============================================  ===========
cvf    discounted future cost (FAC, SAC-Lag)       ``c + γ (1 - term) V'``                          0.1
cdf    constraint decay: γ^k, k = steps to the     ``c + γ (1 - term) (1 - c) clip(V', 0, 1)``      0.1
       first violation (FPI/FDPI), in [0, 1]
hjr    discounted worst future constraint value    ``h'`` if term, else                             0
       (HJ reachability, RCRL)                     ``(1 - γ) h' + γ max(h', V')``
cbf    barrier residual h(s') - (1 - k) h(s)       ``h' - (1 - k) h`` (one step, no bootstrap)       0
       (RCRL's SAC-CBF), k = 1 - γ by default
=====  ==========================================  ==============================================  ===========

**Several constraints** (``constraint.costs``, docs/algorithm.md §2c): M named costs, each with its own pair of cost
critics and threshold d_k. The cost twins sit in the critic ensemble as M consecutive pairs, and every per-constraint
tensor carries the constraint axis right after the member axis: residuals and multipliers are (S, M, B). One
unnamed constraint (the default) is M = 1 with the shapes of a single constraint: ``shape`` is () and the public
:meth:`_Signal.aggregate` returns (S, B), exactly as before several constraints existed.

Every cost here is the cost *of the step* (s, a) -> s', so each value counts s' and later states, never s itself:
``hjr`` is RCRL's reachability value shifted by one step (RCRL puts h(s) in the target of Q(s, a), which no action
can change). ``hjr`` and ``cbf`` need ``h``, which the built-in and velocity tasks report in ``info["constraint"]``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch

from statewise.config import ConstraintConfig

#: the signals that need the signed constraint h(s) from the environment (``info["constraint"]``)
NEEDS_CONSTRAINT = ("hjr", "cbf")


class ConstraintSignal(Protocol):
    name: str
    threshold: float
    thresholds: list[float]
    names: tuple[str, ...]
    shape: tuple[int, ...]
    count: int
    needs_constraint: bool

    def transition_value(self, cost: np.ndarray, h: np.ndarray, h_next: np.ndarray) -> np.ndarray:
        """The per-transition number stored in the replay buffer, from the raw cost and h(s), h(s')."""

    def aggregate(self, twins: torch.Tensor) -> torch.Tensor:
        """One value from the twin cost critics' outputs (S, 2, B) -> (S, B); (S, 2M, B) -> (S, M, B) with costs."""

    def combine(self, twins: torch.Tensor, how: str | None = None) -> torch.Tensor:
        """The twins combined per constraint, (S, 2M, B) -> (S, M, B) (M = 1 without named costs)."""

    def target_value(self, twins: torch.Tensor) -> torch.Tensor:
        """The twins' value at the next state inside the Bellman target, (S, 2M, B) -> (S, M, B)."""

    def backup(self, x: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """Bellman target for F(s, a) from the stored value ``x`` and the target value at (s', a' ~ π)."""

    def residual(self, value: torch.Tensor) -> torch.Tensor:
        """g = F(s, a) - d; the constraint holds where g <= 0."""


class _Signal:
    """What all signals share: the twins' combination, the residual, the discount."""

    name = ""
    needs_constraint = False

    def __init__(self, cfg: ConstraintConfig):
        cfg = dataclasses.replace(cfg)
        cfg.resolve()
        self.names = tuple(cfg.costs) or ("cost",)
        self.shape = (len(cfg.costs),) if cfg.costs else ()  # the constraint axis of per-constraint state
        self.count = len(self.names)
        self.thresholds = cfg.thresholds
        # one d for every constraint (always so for one): subtracted as a number, as before several constraints
        self.threshold = self.thresholds[0] if len(set(self.thresholds)) == 1 else None
        self._d: dict[torch.device, torch.Tensor] = {}  # (M,) thresholds per device, where they differ
        self.gamma_c = cfg.gamma_c
        self.twin = cfg.twin_aggregate
        self.twin_target = cfg.twin_target
        self.tau = cfg.tau  # Polyak rate of the cost critics' targets
        self.cfg = cfg

    def aggregate(self, twins: torch.Tensor) -> torch.Tensor:
        """The risk estimate F(s, a) that forms g for the actor and the multiplier: ``mean`` (default) or ``max``
        (pessimistic) of the twin cost critics; (S, B) for one unnamed constraint, else (S, M, B)."""
        value = self.combine(twins)
        return value if self.shape else value[:, 0]

    def combine(self, twins: torch.Tensor, how: str | None = None) -> torch.Tensor:
        """(S, 2M, B) -> (S, M, B): each constraint's twin pair combined (``constraint.twin_aggregate``, or ``how``)."""
        pairs = twins.unflatten(1, (self.count, 2))
        return _combine(pairs[:, :, 0], pairs[:, :, 1], how or self.twin)

    def target_value(self, twins: torch.Tensor) -> torch.Tensor:
        """The twins' value at (s', a') inside the Bellman target (``constraint.twin_target``), (S, M, B)."""
        return self.combine(twins, self.twin_target)

    def residual(self, value: torch.Tensor) -> torch.Tensor:
        """g = F − d; per constraint along axis 1 of a (S, M, B) value where the thresholds differ."""
        if self.threshold is not None:
            return value - self.threshold
        return value - self.thresholds_on(value.device)[:, None]

    def thresholds_on(self, device: torch.device) -> torch.Tensor:
        """d_k of every constraint as a (M,) tensor on ``device`` (made once per device)."""
        d = self._d.get(device)
        if d is None:
            d = self._d[device] = torch.tensor(self.thresholds, dtype=torch.float32, device=device)
        return d


class CostValue(_Signal):
    """CVF: Q^c(s,a) = E[Σ_t γ_c^t c_t], constraint Q^c(s, π(s)) <= d in every state.

    Target: ``y_c = c + γ_c (1 - terminated) Q̄^c(s', a')`` (no entropy term), with binary costs
    ``c = 1[c_env > 0]`` by default (FDPI ``BinaryCostWrapper``).
    """

    name = "cvf"

    def __init__(self, cfg: ConstraintConfig):
        super().__init__(cfg)
        self.binary = cfg.binary_cost

    def transition_value(self, cost: np.ndarray, h: np.ndarray, h_next: np.ndarray) -> np.ndarray:
        cost = np.asarray(cost, dtype=np.float64)
        return (cost > 0.0).astype(np.float64) if self.binary else cost

    def backup(self, x: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return x + self.gamma_c * (1.0 - terminated) * next_value


class ConstraintDecay(_Signal):
    """CDF: G(s, a) = γ_c^k where k is the number of steps after (s, a) to the first violation (0 if the step
    itself violates), 0 if none comes; bounded in [0, 1], constraint G(s, π(s)) <= ε.

    Target: ``y_G = c + γ_c (1 - terminated) (1 - c) clip(Ḡ(s', a'), 0, 1)`` with binary c: a violation ends the
    recursion, so G is a discounted probability of ever violating.
    """

    name = "cdf"

    def transition_value(self, cost: np.ndarray, h: np.ndarray, h_next: np.ndarray) -> np.ndarray:
        return (np.asarray(cost, dtype=np.float64) > 0.0).astype(np.float64)

    def backup(self, x: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return x + self.gamma_c * (1.0 - terminated) * (1.0 - x) * next_value.clamp(0.0, 1.0)


class Reachability(_Signal):
    """HJR: the discounted reachability value of the worst constraint value ahead, V^h ≈ max_{t ≥ 1} h(s_t)
    (exactly that as γ_c -> 1), constraint V^h(s, π(s)) <= d (0 by default: never leave the safe set).

    Target: ``y_h = h'`` if terminated, else ``(1 - γ_c) h' + γ_c max(h', V̄^h(s', a'))`` (RCRL's discounted
    safety Bellman equation, one step later; see the module docstring).
    """

    name = "hjr"
    needs_constraint = True

    def transition_value(self, cost: np.ndarray, h: np.ndarray, h_next: np.ndarray) -> np.ndarray:
        return np.asarray(h_next, dtype=np.float64)

    def backup(self, x: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        ongoing = (1.0 - self.gamma_c) * x + self.gamma_c * torch.maximum(x, next_value)
        return torch.where(terminated > 0.5, x, ongoing)


class BarrierResidual(_Signal):
    """CBF: the discrete barrier condition ``h(s') - (1 - k) h(s) <= d`` (0 by default), learned as
    B(s, a) = E[h(s') - (1 - k) h(s)]: the target is the transition's own residual, nothing is bootstrapped.
    k in (0, 1] is how fast the state may approach the boundary (``constraint.cbf_k``; RCRL: 1 - γ_c)."""

    name = "cbf"
    needs_constraint = True

    def __init__(self, cfg: ConstraintConfig):
        super().__init__(cfg)
        self.k = float(self.cfg.cbf_k)

    def transition_value(self, cost: np.ndarray, h: np.ndarray, h_next: np.ndarray) -> np.ndarray:
        return np.asarray(h_next, dtype=np.float64) - (1.0 - self.k) * np.asarray(h, dtype=np.float64)

    def backup(self, x: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return x


def _combine(first: torch.Tensor, second: torch.Tensor, how: str) -> torch.Tensor:
    """Two twins' values into one: their max or their mean."""
    return torch.maximum(first, second) if how == "max" else 0.5 * (first + second)


SIGNAL_CLASSES: dict[str, type[_Signal]] = {cls.name: cls for cls in (CostValue, ConstraintDecay, Reachability,
                                                                      BarrierResidual)}


def make_signal(cfg: ConstraintConfig) -> ConstraintSignal:
    if cfg.signal not in SIGNAL_CLASSES:  # config validation rejects this earlier
        raise ValueError(f"unknown constraint signal {cfg.signal}")
    return SIGNAL_CLASSES[cfg.signal](cfg)


def rollout_values(signal: ConstraintSignal, x: np.ndarray, terminated: np.ndarray) -> np.ndarray:
    """The signal's value F(s_0, a_0) of rollouts, from their per-step stored values ``x`` (T, N) and
    ``terminated`` (T, N): the Bellman target applied backwards, every rollout ending at its first termination or at
    step T (cut there as if terminated; for cvf and cdf the same as dropping the steps beyond). Monte-Carlo truth
    for the critic (statewise.run.value_bias)."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ended = torch.as_tensor(np.asarray(terminated, dtype=bool)).clone()
    ended[-1] = True
    value = torch.zeros(x.shape[1], dtype=torch.float64)
    for t in range(x.shape[0] - 1, -1, -1):
        value = signal.backup(x[t][None], value[None], ended[t][None].double())[0]
    return value.numpy()
