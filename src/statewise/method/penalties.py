"""Penalty terms that the constraint adds to the actor loss (docs/algorithm.md §4).

Both take the per-sample residual ``g = Q^c(s, ã) - d`` (differentiable in the policy) and the
detached per-state multiplier ``lam``; both return the per-sample penalty and the *effective
multiplier* that weights ``∇Q^c`` in the policy gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def penalty(name: str, g: torch.Tensor, lam: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "augmented":
        return augmented(g, lam, rho)
    if name == "lagrangian":
        return lagrangian(g, lam)
    raise ValueError(f"unknown penalty {name}")
