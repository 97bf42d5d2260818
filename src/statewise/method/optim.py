"""Optimisation as plain tensor functions, so that one gradient step can be traced and compiled whole.

* :func:`take_grad`: gradients of a loss written as a function of a list of parameter tensors (``torch.autograd`` in
  eager mode, ``torch.func.grad`` when the step is compiled: the same loss functions serve both);
* :func:`clip_per_member`: per-member global-norm gradient clipping;
* :class:`Adam`: Adam over a list of tensors with a leading member dimension, same formula as ``torch.optim.Adam``.

Every operation here is elementwise or a row reduction over a member's own slice, so each member of a population is
updated exactly as if it were alone (tests/test_population.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Loss = Callable[..., tuple[torch.Tensor, Any]]


def take_grad(loss_fn: Loss, params: list[torch.Tensor], *args: Any, functional: bool = False
              ) -> tuple[list[torch.Tensor], Any]:
    """Gradients of ``loss_fn(params, *args) -> (scalar loss, aux)`` with respect to ``params``, and ``aux``
    (detached). ``functional`` uses ``torch.func.grad`` (traceable by ``torch.compile`` as one graph); otherwise
    ``torch.autograd.grad`` on detached copies (faster in eager mode). Either way no parameter's ``.grad`` is
    touched and gradients flow only into ``params``."""
    if functional:
        grads, aux = torch.func.grad(loss_fn, has_aux=True)(params, *args)
        return list(grads), aux
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in params]
        loss, aux = loss_fn(leaves, *args)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
    return list(grads), _detach(aux)


def _detach(aux: Any) -> Any:
    if isinstance(aux, torch.Tensor):
        return aux.detach()
    if isinstance(aux, (tuple, list)):
        return type(aux)(_detach(a) for a in aux)
    if isinstance(aux, dict):
        return {k: _detach(v) for k, v in aux.items()}
    return aux


def clip_per_member(grads: list[torch.Tensor], max_norm: float, member_dims: int = 1,
                    groups: list[slice] | None = None) -> list[torch.Tensor]:
    """Global-norm gradient clipping (as ``nn.utils.clip_grad_norm_``) applied to each member on its own; returns
    the scaled gradients.

    Every gradient leads with the member dimensions: (S, ...) with ``member_dims = 1``, or (S, K, ...) with
    ``member_dims = 2``, where ``groups`` splits the K axis into sets clipped separately (the critic's reward twins
    and cost twins, whose scales differ). Sums of squares run over the last axis first, one row at a time, and are
    added tensor by tensor, so a member's norm does not depend on how many members sit beside it."""
    if max_norm <= 0 or not grads:
        return grads
    total = None  # (S,) or (S, K)
    for g in grads:
        x = g.pow(2)
        while x.dim() > member_dims:
            x = x.sum(-1)
        total = x if total is None else total + x
    if groups is None:
        scale = (max_norm / (total.sqrt() + 1e-6)).clamp(max=1.0)
    else:
        parts = []
        for group in groups:
            norm = total[:, group].sum(1, keepdim=True).sqrt()
            parts.append((max_norm / (norm + 1e-6)).clamp(max=1.0).expand(-1, group.stop - group.start))
        scale = torch.cat(parts, dim=1)
    return [g * scale.view(*scale.shape, *([1] * (g.dim() - scale.dim()))) for g in grads]


class Adam:
    """Adam (Kingma & Ba 2015) on a fixed list of tensors, updated in place:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

    (the formula of ``torch.optim.Adam``). The step count is a tensor, so a compiled step never recompiles, and
    every operation is a separate elementwise ``_foreach`` kernel (no fused multiply-add that a vector body and a
    scalar tail would round differently).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, float(eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.step_count = torch.zeros((), device=self.params[0].device)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.step_count += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1 ** self.step_count)
        bc2_sqrt = (1 - b2 ** self.step_count).sqrt()
        torch._foreach_mul_(self.exp_avg, b1)
        torch._foreach_add_(self.exp_avg, torch._foreach_mul(grads, 1 - b1))
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_add_(self.exp_avg_sq, torch._foreach_mul(torch._foreach_mul(grads, grads), 1 - b2))
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, step_size)
        torch._foreach_sub_(self.params, update)

    def to(self, device: torch.device) -> None:
        """Follow the parameters to ``device`` (they were moved by the module that owns them)."""
        self.exp_avg = [t.to(device) for t in self.exp_avg]
        self.exp_avg_sq = [t.to(device) for t in self.exp_avg_sq]
        self.step_count = self.step_count.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count.clone(), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a saved state in place (the tensors keep their identity, so a compiled step stays valid)."""
        if len(state["exp_avg"]) != len(self.exp_avg):
            raise ValueError(f"optimiser state holds {len(state['exp_avg'])} tensors, expected {len(self.exp_avg)}")
        with torch.no_grad():
            self.step_count.copy_(state["step"])
            for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"]),
                                strict=True):
                if dst.shape != src.shape:
                    raise ValueError(f"optimiser state shape {tuple(src.shape)} != {tuple(dst.shape)}")
                dst.copy_(src)
