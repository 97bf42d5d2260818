"""Networks with a leading *member* dimension (docs/algorithm.md §3, §5).

Every network of statewise is a stack of independent copies evaluated with batched matmuls: a population of S
training runs (``statewise train --seeds 0-7``) holds S policies, S multiplier networks and S × K critics, and one
call serves them all. A single run is a population of one. Shapes: inputs (*members, B, in) -> (*members, B, out),
where ``members`` is (S,) for the policy and λ network and (S, K) for the critic ensemble (K = 2 reward twins, plus 2
cost twins when the run is constrained).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # docs/algorithm.md §3
_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


class BatchedLinear(nn.Module):
    """Independent linear layers, one per member: weight (*members, in, out), bias (*members, 1, out).

    Input (*members, B, in) -> (*members, B, out) with one ``baddbmm``. Each member is initialised like
    ``nn.Linear`` (U(−1/√in, 1/√in) for weight and bias).
    """

    def __init__(self, members: tuple[int, ...], in_dim: int, out_dim: int, row_sums: bool = False):
        super().__init__()
        self.members = tuple(members)
        self.row_sums = row_sums  # compute every output as a row sum (see forward), not only a single one
        self.weight = nn.Parameter(torch.empty(*self.members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(*self.members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if w.shape[-1] == 1:
            # one output (critic, λ network): an elementwise product and a row sum. MKL computes a batch of one
            # matrix-vector product differently from a batch of several, so with a matmul a member's value would
            # depend on how many members sit beside it; the row sum does not (and is faster than the padded matmul).
            return (x * w.transpose(-1, -2)).sum(-1, keepdim=True) + b
        if self.row_sums:  # a few outputs (λ of several constraints): the same row sums, side by side
            return (x.unsqueeze(-2) * w.transpose(-1, -2).unsqueeze(-3)).sum(-1) + b
        n = math.prod(self.members)
        out = torch.baddbmm(b.reshape(n, 1, b.shape[-1]), x.reshape(n, *x.shape[-2:]), w.reshape(n, *w.shape[-2:]))
        return out.reshape(*self.members, *out.shape[-2:])


class BatchedMLP(nn.Module):
    """One MLP per member, identical shapes: (*members, B, in) -> (*members, B, out)."""

    def __init__(self, members: tuple[int, ...], in_dim: int, hidden: list[int], out_dim: int,
                 activation: str = "relu", row_sums: bool = False):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(BatchedLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.layers[-1].row_sums = row_sums  # the output layer's outputs as row sums (BatchedLinear)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class Critic(nn.Module):
    """Per member: twin reward critics Q_{φ1,2}(s, a) and, per constraint k, twin cost critics Q^c_{k,1,2}(s, a),
    all S × K of them (K = 2 + 2M for M constraints) in one batched MLP."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: list[int], constraints: int,
                 activation: str = "relu"):
        super().__init__()
        self.constrained = constraints > 0
        self.k = 2 + 2 * constraints
        self.net = BatchedMLP((members, self.k), obs_dim + act_dim, hidden, 1, activation)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """(S, B, obs), (S, B, act) -> (S, K, B): per member the rows [Q1, Q2], then [Qc1, Qc2] per constraint."""
        x = torch.cat([obs, act], dim=-1)
        x = x.unsqueeze(1).expand(x.shape[0], self.k, *x.shape[1:])
        return self.net(x).squeeze(-1)

    @staticmethod
    def reward_value(values: torch.Tensor) -> torch.Tensor:
        """Clipped double-Q: min over the twin reward critics, (S, K, B) -> (S, B)."""
        return torch.minimum(values[:, 0], values[:, 1])


class TanhGaussianPolicy(nn.Module):
    """ã = tanh(μ(s) + σ(s)·ε), with the exact log-density of the squashed Gaussian; one policy per member."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "relu"):
        super().__init__()
        self.net = BatchedMLP((members,), obs_dim, hidden, 2 * act_dim, activation)
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def _dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reparameterised sample (:meth:`sample`), so ``functional_call`` can differentiate through it."""
        return self.sample(obs, eps)

    def sample(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample for standard-normal noise ``eps`` (same shape as the action) and its
        log-probability: (S, B, obs) -> (S, B, act), (S, B). The caller draws ``eps`` from each member's own
        generator (:func:`member_randn`), so members never share a random stream."""
        mean, log_std = self._dist_params(obs)
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


def member_randn(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(S, *shape) standard normals, member k's slice drawn from ``generators[k]`` only: member k's stream is the
    same whether it trains alone or beside others."""
    return torch.stack([torch.randn(shape, generator=g, device=device) for g in generators])


def softplus_inverse(y: float) -> float:
    """x with softplus(x) = y, for y > 0."""
    return y + math.log(-math.expm1(-y))


class MultiplierNet(nn.Module):
    """λ_ξ(s) = softplus(MLP_ξ(s)) >= 0 per member, output bias initialised so that λ(s) ≈ ``lam_init`` everywhere;
    one output per constraint (``outputs``), all from one network.

    The raw (unclamped) output is what the multiplier losses train; users of λ clamp it to [0, λ_max].
    """

    def __init__(self, members: int, obs_dim: int, hidden: list[int], lam_init: float, activation: str = "relu",
                 outputs: int = 1):
        super().__init__()
        # row sums keep a member's λ independent of the members beside it (BatchedLinear.forward)
        self.net = BatchedMLP((members,), obs_dim, hidden, outputs, activation, row_sums=True)
        last = self.net.layers[-1]
        nn.init.uniform_(last.weight, -1e-3, 1e-3)  # start (almost) flat at lam_init
        nn.init.constant_(last.bias, softplus_inverse(lam_init))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(S, B, obs) -> (S, M, B), one row per constraint."""
        return F.softplus(self.net(obs)).movedim(-1, 1)

