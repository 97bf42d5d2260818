"""Replay buffer kept on the training device (one preallocated tensor per field).

``terminated`` is stored, ``truncated`` is not: a time-limit truncation stores the true final
observation as ``next_obs`` with ``terminated = 0``, so both the reward and the cost critic
bootstrap through it (USERS.md #10).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, obs_dim)
    act: torch.Tensor  # (B, act_dim)
    rew: torch.Tensor  # (B,)
    cost: torch.Tensor  # (B,) training cost (binary by default)
    next_obs: torch.Tensor  # (B, obs_dim)
    terminated: torch.Tensor  # (B,) 1.0 where the episode really ended (no bootstrap)


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, device: torch.device | str, seed: int):
        self.capacity = capacity
        self.device = torch.device(device)
        f32 = dict(dtype=torch.float32, device=self.device)
        self.obs = torch.zeros(capacity, obs_dim, **f32)
        self.act = torch.zeros(capacity, act_dim, **f32)
        self.rew = torch.zeros(capacity, **f32)
        self.cost = torch.zeros(capacity, **f32)
        self.next_obs = torch.zeros(capacity, obs_dim, **f32)
        self.terminated = torch.zeros(capacity, **f32)
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, cost: float, next_obs: np.ndarray,
            terminated: bool) -> None:
        """Store one transition. The five scalars/vectors are written with one host-to-device copy."""
        i = self.pos
        self.obs[i] = torch.as_tensor(obs, dtype=torch.float32)
        self.act[i] = torch.as_tensor(act, dtype=torch.float32)
        self.next_obs[i] = torch.as_tensor(next_obs, dtype=torch.float32)
        scalars = torch.tensor([rew, cost, float(terminated)], dtype=torch.float32)
        if self.device.type != "cpu":
            scalars = scalars.to(self.device, non_blocking=True)
        self.rew[i], self.cost[i], self.terminated[i] = scalars
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _indices(self, batch_size: int) -> torch.Tensor:
        return torch.randint(0, self.size, (batch_size,), generator=self.generator, device=self.device)

    def sample(self, batch_size: int) -> Batch:
        idx = self._indices(batch_size)
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.cost[idx], self.next_obs[idx],
                     self.terminated[idx])

    def sample_obs(self, batch_size: int) -> torch.Tensor:
        return self.obs[self._indices(batch_size)]
