"""Stepping many copies of a built-in task as one array operation.

A population trains and evaluates S members, each with its own environments: stepped one after the other, each
step of each copy passes through the wrappers of :func:`statewise.envs.make_env` and the task's scalar ``step``.
The built-in tasks also have batched dynamics (``transition(states, actions)``, the same floating-point operations
as ``step``) and their state as an array (``get_state``, ``set_state``, ``observe``), so :class:`Lockstep` steps
all copies at once: it reads their states, applies ``transition`` once, writes the states back and advances the
counters the wrappers keep (the time limit's, the cost check's). Each copy stays a whole environment: it resets,
pickles (for resume files) and seeds as before, and steps to exactly the values its own ``step`` would give.

Only plain stacks qualify: a built-in task under exactly the wrappers of :func:`make_env`, every wrapper past its
first calls (the env checker looks at the first reset and steps). Anything else (a perturbation wrapper, a user's
environment, a copy not yet past the checker) is stepped one by one by the caller, which asks :meth:`Lockstep.of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from statewise.envs.adapters import CostSignalCheck, SafetyGymnasiumAdapter

_PASSIVE = (SafetyGymnasiumAdapter, gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)
_TASK_API = ("transition", "get_state", "set_state", "observe", "constraint")


@dataclass
class _Copy:
    """One environment's pieces that a step touches."""

    task: Any
    check: CostSignalCheck
    limit: gym.wrappers.TimeLimit | None
    waiting: list[gym.Wrapper]  # wrappers whose first calls are still to come (the env checker, OrderEnforcing)

    def ready(self) -> bool:
        self.waiting = [w for w in self.waiting if not _past_first_calls(w)]
        return not self.waiting and self.check._watch <= 0


def _past_first_calls(w: gym.Wrapper) -> bool:
    if isinstance(w, gym.wrappers.PassiveEnvChecker):
        # (own attributes only: gymnasium 0.29 has no checked_data_reuse, and forwards the lookup with a warning)
        return bool(vars(w).get("checked_step", False)) and bool(vars(w).get("checked_data_reuse", True))
    if isinstance(w, gym.wrappers.OrderEnforcing):
        return bool(vars(w).get("_has_reset", False))
    return True


def _copy_of(env: gym.Env) -> _Copy | None:
    """The pieces of a make_env stack around a built-in task, or None for any other environment."""
    if not isinstance(env, CostSignalCheck):
        return None
    check, limit, waiting, inner = env, None, [], env.env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, gym.wrappers.TimeLimit) and limit is None:
            limit = inner
        elif isinstance(inner, _PASSIVE):
            waiting.append(inner)
        else:
            return None
        inner = inner.env
    from statewise.envs.base import BUILTIN_ENVS

    spec = getattr(inner, "spec", None)
    builtin = spec is not None and spec.id in BUILTIN_ENVS
    if not builtin or not all(callable(getattr(inner, name, None)) for name in _TASK_API):
        return None
    return _Copy(inner, check, limit, waiting)


@dataclass
class Steps:
    """One step of K copies: what each copy's ``step`` would have returned, as arrays."""

    obs: np.ndarray  # (K, obs) float32
    reward: np.ndarray  # (K,) float64
    terminated: np.ndarray  # (K,) bool
    truncated: np.ndarray  # (K,) bool (the time limit)
    cost: np.ndarray  # (K,) float64
    constraint: np.ndarray  # (K,) float64, h of the new state


class Lockstep:
    """K copies of one built-in task, each a :func:`make_env` stack, stepped as one array operation."""

    def __init__(self, copies: list[_Copy]):
        self.copies = copies
        self.task = copies[0].task
        self._ready = False

    @classmethod
    def of(cls, envs: Sequence[gym.Env]) -> Lockstep | None:
        """A lockstep over ``envs``, or None where they do not qualify (see the module docstring)."""
        copies = [_copy_of(env) for env in envs]
        if not copies or any(c is None for c in copies):
            return None
        kinds = {(type(c.task), c.limit is None) for c in copies}
        return cls(copies) if len(kinds) == 1 else None

    def ready(self) -> bool:
        """Whether every copy is past its wrappers' first calls (until then, step them one by one)."""
        if not self._ready:
            self._ready = all(c.ready() for c in self.copies)
        return self._ready

    def step(self, actions: np.ndarray, which: Sequence[int] | None = None) -> Steps:
        """Step copies ``which`` (all by default) with ``actions`` (len(which), act_dim)."""
        copies = self.copies if which is None else [self.copies[i] for i in which]
        states = np.stack([c.task.get_state() for c in copies])
        nxt, reward, cost, terminated = self.task.transition(states, np.asarray(actions, dtype=np.float64))
        truncated = np.zeros(len(copies), dtype=bool)
        for i, c in enumerate(copies):
            c.task.set_state(nxt[i])
            c.check._t += 1
            if c.limit is not None:
                c.limit._elapsed_steps += 1
                truncated[i] = c.limit._elapsed_steps >= c.limit._max_episode_steps
        return Steps(self.task.observe(nxt), np.asarray(reward, dtype=np.float64), np.asarray(terminated, dtype=bool),
                     truncated, np.asarray(cost, dtype=np.float64), self.task.constraint(nxt))
