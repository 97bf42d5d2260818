"""Building environments for statewise: :func:`make_env` and the wrappers it applies.

statewise needs the per-step cost of every transition in ``info["cost"]``. Two kinds of
environments are supported:

* gymnasium envs that already put the cost in ``info["cost"]`` (like the built-in ones);
* Safety-Gymnasium-style envs whose ``step`` returns six values
  ``(obs, reward, cost, terminated, truncated, info)``; :class:`SafetyGymnasiumAdapter`
  turns them into the standard 5-tuple with the cost moved into ``info["cost"]``.

:class:`CostSignalCheck` (outermost wrapper) fails fast, with an :class:`EnvError`, when
an environment reports no cost or a non-finite one, or an observation of another shape than its space's; an exception
the environment raises becomes an :class:`EnvStepError` that names it and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import traceback
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

import statewise.envs.registration  # noqa: F401  (registers the built-in envs)
from statewise import quiet
from statewise.envs import safety_gymnasium
from statewise.envs.base import BUILTIN_ENVS
from statewise.envs.velocity import VELOCITY_TASKS
from statewise.errors import EnvConstructionError, EnvError, StatewiseError

# the env checker's warnings shown so far, so that a warning that several environments of a run raise shows once
_SHOWN_WARNINGS: set = set()
CHECKED_CALLS = 3  # gymnasium's env checker looks at the first reset and the first two steps


class EnvStepError(EnvError):
    """The environment raised in ``reset`` or ``step`` (a bug in it, most likely): the message names the environment
    and the step of its episode; ``trace`` is the traceback of what it raised, as text (it survives the pickling by
    which an async vector env's worker hands it on), ``env_id`` the environment and ``source`` the wrapper that caught
    it (:func:`raised_by`)."""

    def __init__(self, message: str | EnvStepError, env_id: str = "", trace: str = "",
                 source: tuple[int, int] | None = None):
        if isinstance(message, EnvStepError):  # AsyncVectorEnv raises type(error)(error) again in the parent
            message, env_id, trace, source = str(message), message.env_id, message.trace, message.source
        super().__init__(message)
        self.env_id, self.trace, self.source = env_id, trace, source


def raised_by(exc: EnvStepError, env: gym.Env) -> bool:
    """Whether ``exc`` came from ``env`` (a stack of wrappers made by :func:`make_env`) in this process."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, CostSignalCheck):
            return exc.source == (os.getpid(), id(env))
        env = env.env
    return False


class SafetyGymnasiumAdapter(gym.Wrapper):
    """Converts Safety-Gymnasium-style 6-tuples ``(obs, reward, cost, terminated,
    truncated, info)`` into gymnasium's 5-tuple with ``info["cost"] = cost``.

    Standard 5-tuples are passed through unchanged, so the adapter can be applied to any
    env; the check is one ``len`` per step. It must sit *below* gymnasium's ``TimeLimit``
    and ``PassiveEnvChecker`` wrappers, which unpack exactly five values.
    """

    def step(self, action):
        result = self.env.step(action)
        if len(result) == 6:
            obs, reward, cost, terminated, truncated, info = result
            info = dict(info)  # do not mutate a dict the env may keep
            info["cost"] = cost
            return obs, reward, terminated, truncated, info
        return result


class CostSignalCheck(gym.Wrapper):
    """Checks on every step that ``info["cost"]`` exists and is finite, and converts it
    to a Python float, and that observations have the shape of the observation space. Raises :class:`EnvError`
    otherwise, and :class:`EnvStepError` for an exception raised below it (by the environment). Cheap: one dict lookup,
    one ``float``, one ``isfinite`` and one ``np.shape`` per step.

    ``held`` are warnings of gymnasium's env checker from its construction; those of the calls it checks (the first
    :data:`CHECKED_CALLS`, if ``checked``) are held as well. They are shown once a call returns accepted, and dropped
    when this wrapper refuses the environment: its one line says what is wrong."""

    _watch = 0  # (environments pickled by a resume file before the env checker's calls were watched have none)

    def __init__(self, env: gym.Env, held: list | None = None, checked: bool = False):
        super().__init__(env)
        self._t = 0  # steps since the last reset, for error messages
        self._held = list(held or [])
        self._watch = CHECKED_CALLS if checked else 0

    def _env_id(self) -> str:
        spec = self.env.spec
        return spec.id if spec is not None else type(self.env.unwrapped).__name__

    def reset(self, **kwargs):
        self._t = 0
        return self._watched(self._reset, kwargs) if self._watch > 0 else self._reset(kwargs)

    def step(self, action):
        return self._watched(self._step, action) if self._watch > 0 else self._step(action)

    def _reset(self, kwargs: dict[str, Any]):
        obs, info = self._call(True, self.env.reset, **kwargs)
        self._check_obs("reset", obs)
        return obs, info

    def _step(self, action):
        obs, reward, terminated, truncated, info = self._call(False, self.env.step, action)
        self._check_obs("step", obs)
        self._check_cost(info)
        return obs, reward, terminated, truncated, info

    def _watched(self, call: Any, arg: Any) -> Any:
        """A call the env checker looks at: its warnings are shown if the call is accepted. Raised, they are dropped:
        the environment is refused in one line that says what is wrong."""
        self._watch -= 1
        with quiet.held_warnings() as held:
            out = call(arg)
        self._held += held
        quiet.show_warnings(self._held, _SHOWN_WARNINGS)
        return out

    def _call(self, reset: bool, method: Any, *args: Any, **kwargs: Any) -> Any:
        """``method`` (the environment's reset or step): what it raises becomes an EnvStepError."""
        try:
            return method(*args, **kwargs)
        except StatewiseError:
            raise
        except Exception as exc:  # noqa: BLE001 - the environment's own exception, with its traceback
            first = _first_line(exc)
            where = "reset" if reset else f"step {self._t + 1} of an episode"
            raise EnvStepError(
                f"environment '{self._env_id()}' raised {type(exc).__name__}{': ' + first if first else ''} in {where}",
                self._env_id(), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                (os.getpid(), id(self))) from exc

    def _check_obs(self, where: str, obs: Any) -> None:
        shape = getattr(self.observation_space, "shape", None)
        if shape is not None and np.shape(obs) != shape:
            raise EnvError(f"environment '{self._env_id()}': {where} returned an observation of shape "
                           f"{np.shape(obs)}, but its observation space says {shape}")

    def _check_cost(self, info: dict) -> None:
        self._t += 1
        try:
            cost = float(info["cost"])
        except KeyError:
            raise EnvError(
                f"environment '{self._env_id()}' reports no cost: statewise needs the per-step cost in "
                "info['cost'] (or as the 3rd of 6 step values, Safety-Gymnasium style)"
            ) from None
        except (TypeError, ValueError):
            raise EnvError(
                f"environment '{self._env_id()}' reports a non-numeric cost {info['cost']!r} at step {self._t} "
                "(info['cost'] must be a float)"
            ) from None
        if not math.isfinite(cost):
            raise EnvError(f"environment '{self._env_id()}' reported a non-finite cost ({cost}) at step {self._t}")
        info["cost"] = cost


def _suggestion(name: str) -> str:
    """' Did you mean ...?' for a close built-in id (preferred) or registered id, else ''."""
    for candidates in (BUILTIN_ENVS + tuple(VELOCITY_TASKS) + safety_gymnasium.SUITE, tuple(gym.registry.keys())):
        lowered = {c.lower(): c for c in candidates}
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        if match:
            return f" Did you mean '{lowered[match[0]]}'?"
    return ""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def _resolve_spec(env_id: str) -> EnvSpec:
    """Find the registered spec of ``env_id`` (``Name-v0`` or ``module:Name-v0``).

    Like ``gymnasium.make``, the ``module:`` prefix imports the module first so that it
    can register the env; unlike it, failures become one-line :class:`EnvError` messages.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"environment id must be a non-empty string, got {env_id!r}")
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        if not module or not name:
            raise EnvError(f"environment id '{env_id}' must be Name-v0 or module:Name-v0")
        if module == "safety_gymnasium":
            safety_gymnasium.load()
        else:
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001 - the user's module failed to import: say why in one line
                raise EnvError(f"cannot import module '{module}' for environment '{env_id}': "
                               f"{type(e).__name__}: {_first_line(e)}") from None
    if safety_gymnasium.is_safety_gymnasium_id(name):
        safety_gymnasium.check_supported(name)
        if name not in gym.registry:
            safety_gymnasium.load()  # registers the suite's ids, or says how to install it
    spec = gym.registry.get(name)
    if spec is None:
        raise EnvError(f"unknown environment id '{env_id}'.{_suggestion(name)}")
    return spec


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Build the environment ``env_id`` for statewise.

    ``env_id`` is a registered gymnasium id (e.g. ``statewise/DoubleIntegrator-v0``) or
    ``module:Name-v0`` (the module is imported first so it can register ``Name-v0``).
    ``kwargs`` go to the env constructor, except ``max_episode_steps`` (overrides the
    registered time limit; -1 disables it) and ``disable_env_checker``.

    Wrapper stack, innermost first::

        env (+ OrderEnforcing from gymnasium) -> SafetyGymnasiumAdapter
            -> PassiveEnvChecker (unless disabled) -> TimeLimit -> CostSignalCheck

    We cannot let ``gymnasium.make`` add ``TimeLimit``/``PassiveEnvChecker`` itself: both
    unpack five step values and would crash on Safety-Gymnasium-style 6-tuples. So we ask
    gymnasium for the bare env (a copy of the spec without a time limit, and
    ``disable_env_checker=True``; this works on gymnasium 0.29 and 1.x alike), add the adapter
    (a no-op for 5-tuples), and then add those wrappers ourselves on top.
    """
    spec = _resolve_spec(env_id)
    max_steps = kwargs.pop("max_episode_steps", None)
    disable_checker = kwargs.pop("disable_env_checker", None)
    try:
        env = gym.make(dataclasses.replace(spec, max_episode_steps=None), disable_env_checker=True, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise EnvError(f"environment '{env_id}' does not accept these arguments {sorted(kwargs)}: {e}") from None
        raise
    except gym.error.Error as e:
        raise EnvError(f"cannot create environment '{env_id}': {e}") from None
    except Exception as e:  # noqa: BLE001 - the env's constructor raised: one line, not a traceback
        raise EnvConstructionError(f"cannot create environment '{env_id}': {type(e).__name__}: {_first_line(e)}",
                                   e) from None
    _refuse_empty_spaces(env, env_id)

    env = SafetyGymnasiumAdapter(env)
    checked, held = disable_checker is False or (disable_checker is None and not spec.disable_env_checker), []
    if checked:
        with quiet.held_warnings() as held:  # shown once statewise accepts the environment (CostSignalCheck)
            env = gym.wrappers.PassiveEnvChecker(env)
    steps = max_steps if max_steps is not None else spec.max_episode_steps
    if steps is not None and steps != -1:
        env = gym.wrappers.TimeLimit(env, int(steps))
    return CostSignalCheck(env, held, checked)


def _refuse_empty_spaces(env: gym.Env, env_id: str) -> None:
    """An observation or action space with a dimension of size 0 (e.g. Box of shape (0,)) leaves nothing to learn
    from or to act with: EnvError, before the networks are sized from it."""
    for which, space in (("observation", env.observation_space), ("action", env.action_space)):
        shape = getattr(space, "shape", None)
        if shape and 0 in shape:
            env.close()
            raise EnvError(f"environment '{env_id}' has no dimension: its {which} space is {space}; statewise needs "
                           f"at least one {which} dimension")
