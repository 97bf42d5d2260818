"""Collecting transitions from one environment or from N at once (``num_envs``, ``vector_mode``).

The training loop sees one interface, :class:`Collector`: ``reset(seed)`` and ``step(actions)`` on batches
of N rows. Three implementations share it:

* ``single``: one environment stepped directly (no vector machinery; the default for N = 1);
* ``sync``: gymnasium's ``SyncVectorEnv``, N environments stepped in turn in this process;
* ``async``: gymnasium's ``AsyncVectorEnv``, one worker process per environment (for slow simulators).

Every environment is wrapped in :class:`SelfReset`, which resets it *inside* the step that ended an episode and
reports the end through ``info`` instead of through ``terminated``/``truncated``. Gymnasium's vector envs then
never autoreset. We do this because their autoreset protocol changed between gymnasium 0.29 (which the
Safety-Gymnasium extra needs) and 1.x (same-step vs next-step resets, ``final_observation`` vs ``final_obs``),
and because on an autoreset they replace the step's ``info`` by the reset's, which would lose the cost of the
final step. With :class:`SelfReset` each transition keeps its true final observation and its cost on every
gymnasium version, and a reset happens in exactly the order the single-environment path uses, so N = 1 gives
identical transitions in all three modes (tests/test_collect.py).

Seeds: ``reset(seed)`` seeds environment i with ``seed + i`` (gymnasium's vector convention); later resets
continue each environment's own random stream.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from statewise import quiet
from statewise.envs.lockstep import Lockstep
from statewise.envs.named_costs import PARTS

_END = "statewise_episode_end"  # info keys written by SelfReset
_TERMINATED = "statewise_terminated"
_FINAL_OBS = "statewise_final_obs"
_H_BEFORE = "statewise_constraint_before"


class SelfReset(gym.Wrapper):
    """Resets the environment in the step that ends an episode; the step then returns the *reset*
    observation with ``terminated = truncated = False`` and puts the real flags and the final observation
    in ``info`` (``statewise_episode_end``, ``statewise_terminated``, ``statewise_final_obs``).

    It also keeps the signed constraint h of the state the next action is taken in (from ``info["constraint"]``
    of the last step or reset; NaN where the environment reports none) and puts it in each step's ``info`` as
    ``statewise_constraint_before``: with ``info["constraint"]`` = h(s') that gives both ends of a transition,
    which the ``cbf`` signal needs. Being part of the wrapper, it is saved with the environment on resume."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._h = math.nan

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._h = info_constraint(info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[_END] = bool(terminated or truncated)
        info[_TERMINATED] = bool(terminated)
        info[_H_BEFORE] = getattr(self, "_h", math.nan)  # (a resume state written before 0.3 has none)
        info.setdefault("constraint", math.nan)
        self._h = info_constraint(info)
        if info[_END]:
            info[_FINAL_OBS] = obs
            obs, reset_info = self.env.reset()
            self._h = info_constraint(reset_info)
        return obs, reward, False, False, info


def info_constraint(info: dict) -> float:
    """h from an env's ``info["constraint"]`` as a float; NaN where it is missing or not a number."""
    try:
        return float(info.get("constraint", math.nan))
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Transitions:
    """One step of N environments. ``next_obs`` is the true successor (the final observation where an episode
    ended); ``obs`` is what to act on next (the reset observation there)."""

    next_obs: np.ndarray  # (N, obs_dim)
    reward: np.ndarray  # (N,) float64
    cost: np.ndarray  # (N,) float64, raw environment cost
    terminated: np.ndarray  # (N,) bool: a true end (no bootstrap)
    done: np.ndarray  # (N,) bool: terminated or truncated
    obs: np.ndarray  # (N, obs_dim)
    h: np.ndarray  # (N,) float64: signed constraint h(s) of the state acted in (NaN: not reported)
    h_next: np.ndarray  # (N,) float64: h(s') of next_obs (NaN: not reported)
    cost_parts: np.ndarray | None = None  # (N, M) float64: the costs named by constraint.costs (None without)


class Collector:
    """Steps N environments with a batch of actions; see the module docstring."""

    num_envs: int
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Box

    def reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> Transitions:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def get_state(self) -> bytes | None:
        """The environments mid-episode, pickled (with the warm-up action space); None if they cannot be."""
        return None

    def set_state(self, state: bytes) -> None:
        raise NotImplementedError


class SingleCollector(Collector):
    """One environment, no vector env: the reference path that N = 1 in the vector modes must reproduce."""

    def __init__(self, env: gym.Env):
        self.env = SelfReset(env)
        self.num_envs = 1
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs)[None]

    def step(self, actions: np.ndarray) -> Transitions:
        obs, reward, _, _, info = self.env.step(actions[0])
        end = info[_END]
        return Transitions(
            next_obs=np.asarray(info[_FINAL_OBS] if end else obs)[None], reward=np.array([float(reward)]),
            cost=np.array([float(info["cost"])]), terminated=np.array([info[_TERMINATED]]), done=np.array([end]),
            obs=np.asarray(obs)[None], h=np.array([info[_H_BEFORE]]), h_next=np.array([info_constraint(info)]),
            cost_parts=np.asarray(info[PARTS])[None] if PARTS in info else None)

    def close(self) -> None:
        self.env.close()

    def get_state(self) -> bytes | None:
        from statewise.run.resume import pickle_envs

        if _rebuilt_by_pickle(self.env):
            return None
        return pickle_envs((self.env, self.single_observation_space, self.single_action_space))

    def set_state(self, state: bytes) -> None:
        self.env.close()
        self.env, self.single_observation_space, self.single_action_space = pickle.loads(state)


class VectorCollector(Collector):
    """N environments in gymnasium's ``SyncVectorEnv`` or ``AsyncVectorEnv``."""

    def __init__(self, make: Callable[[], gym.Env], num_envs: int, mode: str):
        fns = [functools.partial(_self_resetting, make) for _ in range(num_envs)]
        self.venv = gym.vector.AsyncVectorEnv(fns) if mode == "async" else gym.vector.SyncVectorEnv(fns)
        # an error in an async worker is raised again here, and reported by statewise in one line (the trainer's):
        # gymnasium's echo of it is silenced
        self._calls = quiet.worker_errors if mode == "async" else contextlib.nullcontext
        self._raised = False  # a call raised: the vector env may be mid-call, so close() must not wait on it
        self.num_envs = num_envs
        self.single_observation_space = self.venv.single_observation_space
        self.single_action_space = self.venv.single_action_space

    @contextlib.contextmanager
    def _call(self):
        try:
            with self._calls():
                yield
        except BaseException:
            self._raised = True
            raise

    def reset(self, seed: int) -> np.ndarray:
        with self._call():
            obs, _ = self.venv.reset(seed=seed)
        return obs

    def step(self, actions: np.ndarray) -> Transitions:
        with self._call():
            obs, reward, _, _, info = self.venv.step(actions)
        # gymnasium merges per-env info dicts into arrays (and a boolean mask "_key" per key); every env of ours
        # reports cost and the end flags on every step, final observations only where an episode ended
        done = np.asarray(info[_END], dtype=bool)
        next_obs = obs
        if done.any():
            next_obs = np.array(obs, copy=True)
            for i in np.flatnonzero(done):
                next_obs[i] = info[_FINAL_OBS][i]
        return Transitions(next_obs=next_obs, reward=np.asarray(reward, dtype=np.float64),
                           cost=np.asarray(info["cost"], dtype=np.float64),
                           terminated=np.asarray(info[_TERMINATED], dtype=bool), done=done, obs=obs,
                           h=np.asarray(info[_H_BEFORE], dtype=np.float64),
                           h_next=np.asarray(info["constraint"], dtype=np.float64),
                           # gymnasium 0.29 merges array values into an object array of rows: stack them
                           cost_parts=np.stack(list(info[PARTS])).astype(np.float64) if PARTS in info else None)

    def close(self) -> None:
        with self._calls():  # after an error, gymnasium 0.29 would wait on the failed call's closed pipe: terminate
            self.venv.close(terminate=True) if self._raised else self.venv.close()

    def get_state(self) -> bytes | None:
        if isinstance(self.venv, gym.vector.AsyncVectorEnv):  # the environments live in worker processes
            return None
        from statewise.run.resume import pickle_envs

        if any(_rebuilt_by_pickle(env) for env in self.venv.envs):
            return None
        return pickle_envs((self.venv, self.single_observation_space, self.single_action_space))

    def set_state(self, state: bytes) -> None:
        self.venv.close()
        self.venv, self.single_observation_space, self.single_action_space = pickle.loads(state)


class LockstepCollectors:
    """The single-environment collectors of a population's members, stepped as one array operation where their
    environments allow it (built-in tasks, :class:`statewise.envs.lockstep.Lockstep`); each member's transitions are
    exactly those of its own collector's ``step``. :meth:`of` gives None where they do not qualify."""

    def __init__(self, collectors: list[SingleCollector], lockstep: Lockstep):
        self.collectors, self.lockstep = collectors, lockstep

    @classmethod
    def of(cls, collectors: list[Collector]) -> LockstepCollectors | None:
        if not collectors or not all(isinstance(c, SingleCollector) for c in collectors):
            return None
        lockstep = Lockstep.of([c.env.env for c in collectors])
        return None if lockstep is None else cls(collectors, lockstep)

    def step(self, actions: np.ndarray, which: list[int]) -> list[Transitions] | None:
        """Transitions of members ``which`` for their actions (len(which), 1, act); None until every environment
        is past its wrappers' first calls (step the collectors one by one until then)."""
        if not self.lockstep.ready():
            return None
        st = self.lockstep.step(actions[:, 0], which)
        out = []
        for i, k in enumerate(which):
            env = self.collectors[k].env  # the SelfReset wrapper: its protocol, as in SelfReset.step
            h_before, h_next = env._h, float(st.constraint[i])
            end, obs = bool(st.terminated[i] or st.truncated[i]), st.obs[i]
            env._h, next_obs = h_next, obs
            if end:
                obs, reset_info = env.env.reset()
                env._h = info_constraint(reset_info)
            out.append(Transitions(
                next_obs=np.asarray(next_obs)[None], reward=st.reward[i:i + 1], cost=st.cost[i:i + 1],
                terminated=st.terminated[i:i + 1], done=np.array([end]), obs=np.asarray(obs)[None],
                h=np.array([h_before]), h_next=np.array([h_next])))
        return out


def _rebuilt_by_pickle(env: gym.Env) -> bool:
    """Environments built on gymnasium's EzPickle (MuJoCo's among them) pickle their constructor arguments, not their
    state: unpickled, they are fresh environments. Their state cannot be saved this way."""
    from gymnasium.utils import EzPickle

    return isinstance(env.unwrapped, EzPickle)


def _self_resetting(make: Callable[[], gym.Env]) -> gym.Env:
    return SelfReset(make())


def make_collector(make: Callable[[], gym.Env], num_envs: int, mode: str) -> Collector:
    """Build the collector for ``mode`` (single | sync | async, as validated by :class:`statewise.Config`).
    ``make`` builds one environment; for ``async`` it must be picklable (a module-level function or a
    ``functools.partial`` of one)."""
    if mode == "single":
        return SingleCollector(make())
    return VectorCollector(make, num_envs, mode)

