"""Replay buffers of a population, kept on the training device (one preallocated tensor per field).

Member k of a population owns slice k of every field: (S, capacity, ...). Members collect in lockstep, so they
share one write position; each member draws its sample indices from its own generator.

``terminated`` is stored, ``truncated`` is not: a time-limit truncation stores the true final
observation as ``next_obs`` with ``terminated = 0``, so both the reward and the cost critic
bootstrap through it (a common request of safe-RL users: time limits are not terminal states).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # (S, B, obs_dim)
    act: torch.Tensor  # (S, B, act_dim)
    rew: torch.Tensor  # (S, B)
    cost: torch.Tensor  # (S, B) training cost (binary by default); (S, B, M) with M named costs
    next_obs: torch.Tensor  # (S, B, obs_dim)
    terminated: torch.Tensor  # (S, B) 1.0 where the episode really ended (no bootstrap)


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, device: torch.device | str,
                 seeds: list[int] | int, cost_shape: tuple[int, ...] = ()):
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        self.members = len(seeds)
        self.capacity = capacity
        self.device = torch.device(device)
        s = self.members
        f32 = dict(dtype=torch.float32, device=self.device)
        self.obs = torch.zeros(s, capacity, obs_dim, **f32)
        self.act = torch.zeros(s, capacity, act_dim, **f32)
        self.rew = torch.zeros(s, capacity, **f32)
        self.cost = torch.zeros(s, capacity, *cost_shape, **f32)  # cost_shape: the signal's (M,) or ()
        self.next_obs = torch.zeros(s, capacity, obs_dim, **f32)
        self.terminated = torch.zeros(s, capacity, **f32)
        self._offset = (torch.arange(s, device=self.device) * capacity).unsqueeze(1)  # row k starts at k·capacity
        self.pos = 0
        self.size = 0
        self.generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]

    FIELDS = ("obs", "act", "rew", "cost", "next_obs", "terminated")

    def member_state(self, k: int) -> dict:
        """Member k's filled rows, write position and sampling generator (for an exact resume)."""
        return {"rows": {f: getattr(self, f)[k, :self.size].cpu().clone() for f in self.FIELDS},
                "pos": self.pos, "size": self.size, "generator": self.generators[k].get_state()}

    def load_member_state(self, k: int, state: dict) -> None:
        self.pos, self.size = int(state["pos"]), int(state["size"])
        for f in self.FIELDS:
            getattr(self, f)[k, :self.size] = state["rows"][f].to(self.device)
        self.generators[k].set_state(state["generator"])

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, cost: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Store N transitions per member (every argument shaped (S, N, ...); N <= capacity), overwriting
        the oldest ones once the buffer is full. One host-to-device copy per field."""
        n = np.shape(rew)[1]
        if self.pos + n <= self.capacity:  # the usual case: one contiguous slice, no index tensor
            idx = slice(self.pos, self.pos + n)
        else:
            idx = ((self.pos + torch.arange(n)) % self.capacity).to(self.device)
        for store, value in ((self.obs, obs), (self.act, act), (self.rew, rew), (self.cost, cost),
                             (self.next_obs, next_obs), (self.terminated, terminated)):
            store[:, idx] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device, non_blocking=True)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def indices(self, batch_size: int) -> torch.Tensor:
        """(S, batch_size) row indices into the flattened (S·capacity) storage, member k's from its generator."""
        idx = torch.stack([torch.randint(0, self.size, (batch_size,), generator=g, device=self.device)
                           for g in self.generators])
        return idx + self._offset

    @staticmethod
    def _take(store: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        rows = store.reshape(-1, *store.shape[2:]).index_select(0, flat.reshape(-1))
        return rows.reshape(*flat.shape, *store.shape[2:])

    def sample(self, batch_size: int) -> Batch:
        flat = self.indices(batch_size)
        return Batch(*(self._take(store, flat) for store in
                       (self.obs, self.act, self.rew, self.cost, self.next_obs, self.terminated)))

    def sample_obs(self, batch_size: int) -> torch.Tensor:
        return self._take(self.obs, self.indices(batch_size))
