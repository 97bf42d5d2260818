"""Penalty terms that the constraint adds to the actor loss (docs/algorithm.md §4).

A penalty takes the per-sample residual ``g = F(s, ã) − d`` (differentiable in the policy) and the detached
per-state multiplier ``lam``, and returns the per-sample penalty and the *effective multiplier* that weights ``∇g``
in the policy gradient. Each penalty object owns its settings (ρ for the augmented term; whether the actor loss is
divided by 1 + λ_eff), and :data:`PENALTIES` maps ``multiplier.penalty`` names to their builders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from statewise.config import MultiplierConfig


def lagrangian(g: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain Lagrangian term ``λ·g``; its gradient in g is λ."""
    return lam * g, lam


def augmented(g: torch.Tensor, lam: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hestenes-Powell-Rockafellar term for an inequality constraint:

        ψ_ρ(g, λ) = ( [λ + ρ g]_+² − λ² ) / (2ρ)
                  = λ g + ρ g² / 2      if λ + ρ g >= 0
                  = −λ² / (2ρ)          otherwise

    ∂ψ/∂g = [λ + ρ g]_+ : the look-ahead multiplier, i.e. the value one more dual step would give.
    """
    look_ahead = lam + rho * g
    # the two-branch form avoids the float32 cancellation of ([λ+ρg]_+² − λ²) / 2ρ for small ρ
    value = torch.where(look_ahead >= 0, g * (lam + 0.5 * rho * g), -lam.pow(2) / (2.0 * rho))
    return value, F.relu(look_ahead)


@dataclass(frozen=True)
class Lagrangian:
    """λ·g (SAC-Lag, FAC, the no-QP ablation)."""

    normalize: bool = False  # divide the actor loss by 1 + λ_eff (the SAC-Lag convention)

    def __call__(self, g: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lagrangian(g, lam)


@dataclass(frozen=True)
class Augmented:
    """ψ_ρ(g, λ), the augmented-Lagrangian term with its quadratic penalty (SAC-ALaM, SAC-AL)."""

    rho: float
    normalize: bool = False

    def __call__(self, g: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augmented(g, lam, self.rho)


Penalty = Lagrangian | Augmented

PENALTIES: dict[str, Callable[[MultiplierConfig], Penalty]] = {
    "lagrangian": lambda cfg: Lagrangian(normalize=bool(cfg.normalize_actor)),
    "augmented": lambda cfg: Augmented(rho=float(cfg.rho), normalize=bool(cfg.normalize_actor)),
}


def make_penalty(cfg: MultiplierConfig) -> Penalty | None:
    """The penalty ``multiplier.penalty`` names, built from its own config section (None for unconstrained SAC)."""
    return None if cfg.kind == "none" else PENALTIES[cfg.penalty](cfg)
