"""Networks: a batched MLP ensemble (all critics in one module), the tanh-Gaussian policy and the
multiplier network λ_ξ(s) (docs/algorithm.md §3, §5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # docs/algorithm.md §3
_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (several times faster than the per-tensor loop on CPU for small nets)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), _ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers evaluated with one batched matmul.

    Input (n, B, in) -> output (n, B, out). Each member is initialised like ``nn.Linear``.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        # nn.Linear's default init: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in)) for weights and bias
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``n`` MLPs with identical shapes sharing one input, evaluated as one batched module.

    The statewise critic is one ensemble: members 0-1 are the twin reward critics, members 2-3 (when
    the run is constrained) the twin cost critics, so every critic evaluation is a single batched pass.
    """

    def __init__(self, n: int, in_dim: int, hidden: list[int], out_dim: int = 1, activation: str = "relu"):
        super().__init__()
        self.n = n
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in) shared by all members -> (n, B) for out_dim = 1."""
        h = x.unsqueeze(0).expand(self.n, *x.shape)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h).squeeze(-1)


class Critic(nn.Module):
    """Twin reward critics Q_{φ1,2}(s, a) and, if constrained, twin cost critics Q^c_{ψ1,2}(s, a)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], constrained: bool, activation: str = "relu"):
        super().__init__()
        self.constrained = constrained
        self.net = EnsembleMLP(4 if constrained else 2, obs_dim + act_dim, hidden, 1, activation)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """(B, obs), (B, act) -> (n, B): rows [Q1, Q2] or [Q1, Q2, Qc1, Qc2]."""
        return self.net(torch.cat([obs, act], dim=-1))

    @staticmethod
    def reward_value(values: torch.Tensor) -> torch.Tensor:
        """Clipped double-Q: min over the twin reward critics."""
        return torch.minimum(values[0], values[1])


class TanhGaussianPolicy(nn.Module):
    """ã = tanh(μ(s) + σ(s)·ε), with the exact log-density of the squashed Gaussian."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "relu"):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, activation)
        self.act_dim = act_dim

    def _dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability, shapes (B, act) and (B,). A ``generator`` keeps the
        draw off the global RNG (diagnostics during training must not change the training run)."""
        mean, log_std = self._dist_params(obs)
        if generator is None:
            eps = torch.randn_like(mean)
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        # log N(u; μ, σ) summed over action dims
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # change of variables for tanh: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action tanh(μ(s)), used for evaluation."""
        mean, _ = self._dist_params(obs)
        return torch.tanh(mean)


def softplus_inverse(y: float) -> float:
    """x with softplus(x) = y, for y > 0."""
    return y + math.log(-math.expm1(-y))


class MultiplierNet(nn.Module):
    """λ_ξ(s) = softplus(MLP_ξ(s)) >= 0, output bias initialised so that λ(s) ≈ ``lam_init`` everywhere.

    The raw (unclamped) output is what the multiplier losses train; users of λ clamp it to [0, λ_max].
    """

    def __init__(self, obs_dim: int, hidden: list[int], lam_init: float, activation: str = "relu"):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.uniform_(last.weight, -1e-3, 1e-3)  # start (almost) flat at lam_init
        nn.init.constant_(last.bias, softplus_inverse(lam_init))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.net(obs)).squeeze(-1)
