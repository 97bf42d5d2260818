"""Constraint signals: what the cost critic learns and how the state-wise residual g is formed
(docs/algorithm.md §2). All methods in one comparison share the same signal and threshold.

A signal turns per-step costs into a Bellman target for the twin cost critics and the pessimistic
critic value into the residual ``g(s, a) = F(s, a) - d`` (``g <= 0`` means satisfied). New signals
(reachability, constraint decay, ...) implement the same two methods.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from statewise.config import ConstraintConfig


class ConstraintSignal(Protocol):
    threshold: float

    def train_cost(self, raw_cost: np.ndarray) -> np.ndarray:
        """The costs stored in the replay buffer for a batch of raw environment costs."""

    def aggregate(self, twins: torch.Tensor) -> torch.Tensor:
        """One value from the twin cost critics' outputs (S, 2, B) -> (S, B)."""

    def target_value(self, twins: torch.Tensor) -> torch.Tensor:
        """The twins' value at the next state inside the Bellman target, (S, 2, B) -> (S, B)."""

    def backup(self, cost: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """Bellman target for Q^c(s, a) from the pessimistic target value at (s', a' ~ π)."""

    def residual(self, value: torch.Tensor) -> torch.Tensor:
        """g = F(s, a) - d; the constraint holds where g <= 0."""


class CostValue:
    """CVF: Q^c(s,a) = E[Σ_t γ_c^t c_t], constraint Q^c(s, π(s)) <= d in every state.

    Target: ``y_c = c + γ_c (1 - terminated) max_i Q^c_{ψ̄i}(s', a')`` (no entropy term), with
    binary costs ``c = 1[c_env > 0]`` by default (FDPI ``BinaryCostWrapper``).
    """

    def __init__(self, cfg: ConstraintConfig):
        self.threshold = cfg.threshold
        self.gamma_c = cfg.gamma_c
        self.binary = cfg.binary_cost
        self.twin = cfg.twin_aggregate
        self.twin_target = cfg.twin_target

    def train_cost(self, raw_cost: np.ndarray) -> np.ndarray:
        cost = np.asarray(raw_cost, dtype=np.float64)
        return (cost > 0.0).astype(np.float64) if self.binary else cost

    def aggregate(self, twins: torch.Tensor) -> torch.Tensor:
        """The risk estimate Q^c(s, a) that forms g for the actor and the multiplier: ``max`` (pessimistic) or
        ``mean`` of the twin cost critics."""
        return _combine(twins, self.twin)

    def target_value(self, twins: torch.Tensor) -> torch.Tensor:
        """The twins' value at (s', a') inside the Bellman target (``constraint.twin_target``)."""
        return _combine(twins, self.twin_target)

    def backup(self, cost: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return cost + self.gamma_c * (1.0 - terminated) * next_value

    def residual(self, value: torch.Tensor) -> torch.Tensor:
        return value - self.threshold


def _combine(twins: torch.Tensor, how: str) -> torch.Tensor:
    """(S, 2, B) -> (S, B)."""
    return torch.maximum(twins[:, 0], twins[:, 1]) if how == "max" else 0.5 * (twins[:, 0] + twins[:, 1])


def make_signal(cfg: ConstraintConfig) -> ConstraintSignal:
    if cfg.signal == "cvf":
        return CostValue(cfg)
    raise ValueError(f"unknown constraint signal {cfg.signal}")  # config validation rejects this earlier
