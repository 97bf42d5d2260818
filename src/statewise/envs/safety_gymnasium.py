"""Safety-Gymnasium, the standard safe-RL benchmark suite, as an optional extra.

Install (one command on a fresh machine, plain pip, in its *own* virtual environment; the exact pins are in
``pyproject.toml``, extra ``safety-gymnasium``)::

    pip install torch==2.13.0 && pip install --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2 \\
        && pip install -e ".[safety-gymnasium]"

Why it takes three steps (measured when the extra was added):

* safety-gymnasium 1.0.0 (the newest on PyPI, 2023) pins ``pygame==2.1.0``, which has no wheel for
  Python >= 3.11 and does not build; it never imports pygame. Its other pins (gymnasium 0.28.1,
  mujoco 2.3.3, numpy < 1.24) are old, and gymnasium-robotics 1.2.2, which it imports at start-up (for its
  multi-agent tasks), pins the same. Both are therefore installed with ``--no-deps`` and their real needs
  come from the extra: gymnasium 0.29.1, mujoco 3.17.0, numpy 2.3.5 (numpy 2.4 breaks
  ``SafetyCarGoal1-v0``), pettingzoo 1.24.3, xmltodict, pyyaml, imageio, jinja2. pip then warns that
  safety-gymnasium's own pins are unmet; the warning is expected. gymnasium 0.29 imports
  gymnasium-robotics as a plugin at ``import gymnasium``, which prints a notice about its Adroit hand
  tasks to stderr (twice); statewise does not use them.
* It imports ``gymnasium.wrappers.compatibility``, which gymnasium 1.x removed, so it cannot share an
  environment with gymnasium 1.x (the ``statewise[mujoco]`` velocity tasks): use a second virtual environment.
* On Python >= 3.11 ``import safety_gymnasium`` fails: its dataclasses declare numpy arrays as field
  defaults (``color: np.array = COLOR['hazard']``), which Python 3.11 rejects as mutable defaults.
  :func:`load` works around it while the package is imported (:func:`_ndarray_defaults_as_factories`).

* gymnasium 0.29's renderer draws markers with MuJoCo 2's field layout, which crashes MuJoCo 3 when a frame
  is rendered; :func:`_drop_render_markers` turns the decorative markers off.
* ``SafetySwimmerVelocity-v1`` cannot run with MuJoCo 3: gymnasium 0.29's ``swimmer.xml`` sets
  ``<option collision="predefined">``, an attribute MuJoCo 3.0 removed, and MuJoCo 2.3.3 (its pin) has
  no wheel for current numpy. :func:`check_supported` refuses it with a pointer to
  ``statewise/SwimmerVelocity-v0`` (same threshold and speed measure, on gymnasium 1.x).

Its ``step`` returns six values ``(obs, reward, cost, terminated, truncated, info)``;
:class:`statewise.envs.SafetyGymnasiumAdapter` turns them into gymnasium's five with ``info["cost"] = cost``
(the project's cost convention), below the time limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import re
import sys
from types import ModuleType

import numpy as np

from statewise.errors import EnvError

INSTALL = ('pip install torch==2.13.0 && pip install --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2 '
           '&& pip install -e ".[safety-gymnasium]"')

#: The Safety-Gymnasium tasks statewise is tested on (any other id of the suite works the same way).
SUITE: tuple[str, ...] = (
    "SafetyPointGoal1-v0", "SafetyCarGoal1-v0", "SafetyPointButton1-v0", "SafetyPointPush1-v0",
    "SafetyPointCircle1-v0", "SafetyHalfCheetahVelocity-v1", "SafetyHopperVelocity-v1",
    "SafetyWalker2dVelocity-v1", "SafetyAntVelocity-v1", "SafetySwimmerVelocity-v1",
)  # SafetySwimmerVelocity-v1 is refused with an explanation (UNSUPPORTED)

# id -> why it cannot run with the pinned versions (see the module docstring)
UNSUPPORTED = {
    "SafetySwimmerVelocity-v1": "gymnasium 0.29's swimmer.xml uses <option collision=...>, which MuJoCo 3 removed; "
                                "use statewise/SwimmerVelocity-v0 (same threshold and speed limit, gymnasium 1.x)",
}

_ID = re.compile(r"Safety[A-Z][A-Za-z0-9]*-v\d+")


def is_safety_gymnasium_id(name: str) -> bool:
    """Whether ``name`` has the form of a Safety-Gymnasium id (``Safety<Task>-v<N>``)."""
    return bool(_ID.fullmatch(name))


def check_supported(name: str) -> None:
    """Raise a one-line :class:`EnvError` for a suite id known not to run with the pinned versions."""
    if name in UNSUPPORTED:
        raise EnvError(f"'{name}' cannot run with MuJoCo 3: {UNSUPPORTED[name]}")


def load() -> ModuleType:
    """Import ``safety_gymnasium`` (which registers its ids with gymnasium), or raise a one-line
    :class:`EnvError` that says how to install it."""
    if "safety_gymnasium" in sys.modules:
        return sys.modules["safety_gymnasium"]
    import gymnasium

    if importlib.util.find_spec("safety_gymnasium") is None:
        raise EnvError(f"Safety-Gymnasium is not installed; install it in a virtual environment of its own "
                       f"(it needs gymnasium 0.29): {INSTALL}")
    if int(gymnasium.__version__.split(".")[0]) >= 1:
        raise EnvError(f"Safety-Gymnasium needs gymnasium 0.29 but this environment has gymnasium "
                       f"{gymnasium.__version__}; install it in a virtual environment of its own: {INSTALL}")
    try:
        with _ndarray_defaults_as_factories():
            module = importlib.import_module("safety_gymnasium")
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        what = "is not installed" if missing.startswith("safety_gymnasium") else f"needs '{missing}'"
        raise EnvError(f"Safety-Gymnasium {what}; install the extra: {INSTALL}") from None
    _drop_render_markers()
    return module


def _drop_render_markers() -> None:
    """Turn off the decorative markers of gymnasium 0.29's MuJoCo renderer.

    Safety-Gymnasium draws lidar, cost and velocity indicators as markers; gymnasium 0.29 writes them into
    MuJoCo's ``mjvGeom`` with the field layout of MuJoCo 2 (``texid``, ``texuniform``...), and with MuJoCo 3.17
    rendering a frame with a marker crashes the process (segmentation fault, measured on SafetyPointGoal1-v0 and
    SafetyHalfCheetahVelocity-v1). Frames are rendered without them; nothing else uses markers in that
    environment, and training never renders.
    """
    from gymnasium.envs.mujoco import mujoco_rendering

    mujoco_rendering.BaseRender.add_marker = lambda self, **marker_params: None


@contextlib.contextmanager
def _ndarray_defaults_as_factories():
    """Let dataclasses declared while this is active use numpy arrays as field defaults.

    Python >= 3.11 refuses any unhashable default (``ValueError: mutable default <class 'numpy.ndarray'>``);
    3.10 only refused list, dict and set. We wrap ``dataclasses._get_field`` (the one place a default is
    checked) so that an ndarray default becomes ``field(default_factory=...)`` returning a copy: every
    instance gets its own array, which is what the field means, instead of all instances sharing one. The
    original function is restored on exit, so nothing else is affected.
    """
    original = dataclasses._get_field  # type: ignore[attr-defined]

    def get_field(cls, name, type_, *args):
        default = cls.__dict__.get(name)
        if isinstance(default, np.ndarray):
            setattr(cls, name, dataclasses.field(default_factory=functools.partial(np.array, default)))
        return original(cls, name, type_, *args)

    dataclasses._get_field = get_field  # type: ignore[attr-defined]
    try:
        yield
    finally:
        dataclasses._get_field = original  # type: ignore[attr-defined]
