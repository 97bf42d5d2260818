"""Replay buffer kept on the training device (one preallocated tensor per field).

``terminated`` is stored, ``truncated`` is not: a time-limit truncation stores the true final
observation as ``next_obs`` with ``terminated = 0``, so both the reward and the cost critic
bootstrap through it (a common request of safe-RL users: time limits are not terminal states).
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

    def add(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, cost: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Store a batch of N transitions (leading dimension N on every argument; N <= capacity), overwriting
        the oldest ones once the buffer is full. One host-to-device copy per field."""
        n = len(rew)
        if self.pos + n <= self.capacity:  # the usual case: one contiguous slice, no index tensor
            idx = slice(self.pos, self.pos + n)
        else:
            idx = ((self.pos + torch.arange(n)) % self.capacity).to(self.device)
        for store, value in ((self.obs, obs), (self.act, act), (self.rew, rew), (self.cost, cost),
                             (self.next_obs, next_obs), (self.terminated, terminated)):
            store[idx] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device, non_blocking=True)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _indices(self, batch_size: int) -> torch.Tensor:
        return torch.randint(0, self.size, (batch_size,), generator=self.generator, device=self.device)

    def sample(self, batch_size: int) -> Batch:
        idx = self._indices(batch_size)
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.cost[idx], self.next_obs[idx],
                     self.terminated[idx])

    def sample_obs(self, batch_size: int) -> torch.Tensor:
        return self.obs[self._indices(batch_size)]
