"""Tests of the built-in environments, the state-wise task API and make_env."""

import itertools
import math
import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from statewise.envs import BUILTIN_ENVS, PlaneSlice, make_env
from statewise.envs.adapters import CostSignalCheck, EnvStepError
from statewise.envs.double_integrator import DoubleIntegratorEnv
from statewise.envs.point_hazard import PointHazardEnv
from statewise.errors import EnvError

DI_ID, PH_ID = BUILTIN_ENVS[:2]
X_MAX, DT, U_MAX = 5.0, 0.1, 1.0
TOL = DoubleIntegratorEnv.FEASIBLE_TOL


@pytest.fixture
def toy_envs(monkeypatch):
    """Make tests/_toy_envs.py importable whatever pytest's import mode is."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return "_toy_envs"


def di_at(x, v, **kwargs):
    env = DoubleIntegratorEnv(**kwargs)
    obs, info = env.reset(seed=0, options={"state": [x, v]})
    return env, obs, info


# ---------------------------------------------------------------- DoubleIntegrator
def test_di_two_step_trajectory_by_hand():
    env, obs, _ = di_at(1.0, 2.0)
    np.testing.assert_array_equal(obs, np.float32([1.0, 2.0]))
    obs, r, term, trunc, info = env.step(np.array([0.5], np.float32))
    # x' = 1 + 0.1 * 2 = 1.2 (old velocity), v' = 2 + 0.1 * 0.5 = 2.05
    np.testing.assert_allclose(obs, [1.2, 2.05], rtol=1e-6)
    assert r == pytest.approx(0.2) and info["cost"] == 0.0 and not term and not trunc
    assert info["constraint"] == pytest.approx(1.2 - X_MAX)
    obs, r, *_ = env.step(np.array([-3.0], np.float32))  # clipped to -1
    # x'' = 1.2 + 0.1 * 2.05 = 1.405, v'' = 2.05 - 0.1 = 1.95
    np.testing.assert_allclose(obs, [1.405, 1.95], rtol=1e-6)
    assert r == pytest.approx(0.205)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_di_cost_refers_to_new_state():
    env, _, _ = di_at(4.95, 1.0)  # moves out: 5.05
    _, _, _, _, info = env.step([0.0])
    assert info["cost"] == 1.0 and info["constraint"] == pytest.approx(0.05)
    env, _, _ = di_at(-5.05, 1.0)  # starts outside, moves back in: -4.95
    _, _, _, _, info = env.step([0.0])
    assert info["cost"] == 0.0 and info["constraint"] == pytest.approx(-0.05)
    assert isinstance(info["cost"], float)


def test_di_terminates_when_leaving_domain():
    env, _, _ = di_at(9.85, 1.0)
    assert env.step([0.0])[2] is False  # 9.95 is still inside 2 * x_max
    assert env.step([0.0])[2] is True  # 10.05
    env, _, _ = di_at(-9.95, -1.0)
    assert env.step([0.0])[2] is True


def test_di_truncates_at_200_steps_through_make_env():
    assert gym.spec(DI_ID).max_episode_steps == 200
    env = make_env(DI_ID)
    env.reset(seed=0, options={"state": [0.0, 0.0]})
    for t in range(1, 201):
        _, _, term, trunc, info = env.step(np.zeros(1, np.float32))
        assert not term and info["cost"] == 0.0
        assert trunc == (t == 200)


def simulate_optimal_braking(x, v):
    """Step-by-step simulation of full braking with a final partial brake to v = 0.
    Returns max |x| over the whole trajectory (the state itself included)."""
    worst = abs(x)
    b = DT * U_MAX
    while v != 0.0:
        a = -math.copysign(U_MAX, v) if abs(v) > b else -v / DT
        x, v = x + DT * v, v + DT * a
        worst = max(worst, abs(x))
    return worst


def test_di_feasible_set_matches_brute_force_braking():
    env = DoubleIntegratorEnv()
    rng = np.random.default_rng(1)
    states = [np.stack([rng.uniform(-6, 6, 300), rng.uniform(-4, 4, 300)], axis=-1)]
    # Tricky states: velocities that are (near) multiples of dt * u_max, positioned so that
    # the simulated peak is exactly x_max, and just beyond / just inside that boundary.
    tricky = []
    for v in list(np.round(np.arange(0.0, 4.01, 0.1), 10)) + [0.05, 0.15, 1.23456, 2.99999, 3.00001]:
        offset = simulate_optimal_braking(0.0, v)  # stopping distance
        for sign in (1.0, -1.0):
            for dx in (0.0, 1e-6, -1e-6):
                tricky.append([sign * (X_MAX - offset + dx), sign * v])
    tricky += [[X_MAX, 0.0], [-X_MAX, 0.0], [X_MAX + 1e-6, 0.0], [X_MAX + 1e-6, -3.0], [-X_MAX - 1e-6, 3.0]]
    states = np.concatenate(states + [np.array(tricky)])

    expected = np.array([simulate_optimal_braking(x, v) <= X_MAX + TOL for x, v in states])
    got = env.feasible(states)
    assert got.dtype == bool and got.shape == (len(states),)
    mismatch = states[got != expected]
    assert len(mismatch) == 0, f"feasible() disagrees with simulation at {mismatch[:5]}"
    assert 0.1 < expected.mean() < 0.9  # both classes are exercised
    # The exact boundary states are feasible, and 1e-6 beyond them is not.
    t = np.array(tricky[:-5]).reshape(-1, 3, 2)
    assert env.feasible(t[:, 0]).all() and not env.feasible(t[:, 1]).any() and env.feasible(t[:, 2]).all()


def test_di_full_braking_beats_any_action_sequence():
    """No action sequence reaches a smaller peak than full braking, so states it marks
    infeasible really violate the limit whatever the agent does."""
    env = DoubleIntegratorEnv()
    rng = np.random.default_rng(2)
    horizon = 9  # v <= 0.8 stops within 8 steps under full braking
    bang = np.array(list(itertools.product([-1.0, 0.0, 1.0], repeat=horizon)))  # 3^9 sequences
    smooth = rng.uniform(-1.0, 1.0, (3000, horizon))
    sequences = np.concatenate([bang, smooth])
    for v in (0.8, 0.55, 0.3, 0.1):
        x0 = X_MAX - simulate_optimal_braking(0.0, v) + 1e-3  # just infeasible
        assert not env.feasible(np.array([x0, v]))
        x = np.full(len(sequences), x0)
        vel = np.full(len(sequences), v)
        peak = x.copy()
        for k in range(horizon):
            x, vel = x + DT * vel, vel + DT * U_MAX * sequences[:, k]
            peak = np.maximum(peak, x)
        assert (peak > X_MAX).all()
        assert peak.min() == pytest.approx(env.braking_peak(np.array([x0, v])), abs=1e-12)


def test_di_initial_states_and_reset_options():
    env = DoubleIntegratorEnv()
    env.reset(seed=123)
    infeasible = 0
    n = 3000
    for _ in range(n):
        obs, info = env.reset()
        assert -4.5 <= obs[0] <= 4.5 and -3.0 <= obs[1] <= 3.0
        assert info["feasible"] == bool(env.feasible(obs))
        infeasible += not info["feasible"]
    assert 0.05 < infeasible / n < 0.5

    obs, info = env.reset(options={"state": np.array([0.25, -1.5])})
    np.testing.assert_array_equal(obs, np.float32([0.25, -1.5]))
    assert info["feasible"] is True
    obs, info = env.reset(options={"state": [4.9, 3.0]})  # needs 4.65 to stop
    assert info["feasible"] is False
    for bad in ([1.0, 2.0, 3.0], [[1.0, 2.0]], [np.nan, 0.0]):
        with pytest.raises(EnvError, match="state"):
            env.reset(options={"state": bad})


def test_di_reset_is_seeded():
    env = DoubleIntegratorEnv()
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- PointHazard
def ph_at(px, py, wx=0.0, wy=0.0):
    env = PointHazardEnv()
    obs, info = env.reset(seed=0, options={"state": [px, py, wx, wy]})
    return env, obs, info


def test_ph_cost_inside_hazard_only():
    env, obs, info = ph_at(0.0, 0.0)
    _, _, _, _, info = env.step([0.0, 0.0])
    assert info["cost"] == 1.0 and info["constraint"] == pytest.approx(1.5)
    env, _, _ = ph_at(1.5, 2.2)  # centre of a small hazard
    assert env.step([0.0, 0.0])[4]["cost"] == 1.0
    env, _, _ = ph_at(-4.0, 0.0)
    _, _, _, _, info = env.step([0.0, 0.0])
    assert info["cost"] == 0.0 and info["constraint"] < 0


def test_ph_constraint_sign_and_values():
    env = PointHazardEnv()
    pts = np.array([[0.0, 0.0], [1.5, 2.2], [3.0, 0.0], [1.5, 0.0], [0.0, 3.1], [-4.0, 0.0]])
    h = env.constraint(env.plane().to_obs(pts))
    np.testing.assert_allclose(h[:3], [1.5, 0.9, -1.5])
    assert h[3] == pytest.approx(0.0, abs=1e-12)  # on the central hazard's rim
    assert (h[4:] < 0).all()


def test_ph_plane_feasible_set_is_exact_at_rest():
    """At rest the zero action keeps the robot in place for ever, so the feasible set on the plane is h <= 0: a resting
    state just outside a hazard stays cost-free for 300 steps, one just inside costs at once."""
    env = PointHazardEnv()
    pts = np.array([[1.55, 0.0], [1.45, 0.0], [-4.0, 0.0], [0.0, 0.0]])  # the central hazard: radius 1.5
    obs = env.plane().to_obs(pts)
    np.testing.assert_array_equal(env.plane_feasible(obs), [True, False, True, False])
    np.testing.assert_allclose(env.plane_slack(obs), -env.constraint(obs))
    for point, feasible in zip(pts, env.plane_feasible(obs), strict=True):
        env.reset(options={"state": [point[0], point[1], 0.0, 0.0]})
        costs = [env.step([0.0, 0.0])[4]["cost"] for _ in range(300)]
        assert (sum(costs) == 0) == feasible
    moving = obs.copy()
    moving[0, 2] = 1.0
    with pytest.raises(ValueError, match="at rest"):
        env.plane_feasible(moving)


def test_calibration_uses_the_plane_truth_of_either_task():
    from statewise.run.evaluate import calibration

    for env_id in (DI_ID, PH_ID):
        env = make_env(env_id)
        task = env.unwrapped
        truth = getattr(task, "plane_feasible", None) or task.feasible
        oracle = lambda obs, truth=truth: (~truth(obs)).astype(float)  # noqa: E731 - a perfect λ: 1 on the infeasible set
        got = calibration(env, oracle, n=41)
        assert got["lambda_auroc"] == 1.0 and 0.0 < got["infeasible_fraction_of_grid"] < 0.5
        assert got["lambda_max_slack1"] == 0.0 and got["lambda_le1_share_slack1"] == 1.0


def test_ph_straight_line_to_goal_crosses_a_hazard():
    env = PointHazardEnv()
    for start in ([-4.5, 1.5], [-3.5, -1.5], [-4.0, 0.0]):
        line = np.linspace(start, env.goal, 200)
        assert env.constraint(env.plane().to_obs(line)).max() > 0


def test_ph_goal_terminates_with_bonus():
    env, _, _ = ph_at(3.5, 0.0, 4.0, 0.0)
    obs, r, term, trunc, info = env.step([1.0, 0.0])
    # w = min(0.95 * 4 + 0.2, 4) = 4, p = 3.9: distance 0.1 <= 0.4
    assert term and not trunc and info["goal_reached"]
    assert r == pytest.approx(0.5 - 0.1 + 1.0)
    np.testing.assert_allclose(obs[4:], [0.1, 0.0], atol=1e-6)
    env, _, _ = ph_at(2.5, 0.0, 1.0, 0.0)
    _, r, term, _, _ = env.step([1.0, 0.0])
    assert not term and r == pytest.approx(0.115)  # p: 2.5 -> 2.615


def test_ph_wall_clamping():
    env, _, _ = ph_at(5.95, 0.0, 3.0, 1.0)
    obs, *_ = env.step([1.0, 0.0])  # wx = 3.05 -> x = 6.255 beyond the wall
    np.testing.assert_allclose(obs[:4], [6.0, 0.095, 0.0, 0.95], rtol=1e-6)
    env, _, _ = ph_at(0.0, -5.98, 0.0, -2.0)
    obs, *_ = env.step([0.0, -1.0])
    assert obs[1] == -6.0 and obs[3] == 0.0
    assert env.observation_space.contains(obs)


def test_ph_reset_distribution_and_validation():
    env = PointHazardEnv()
    env.reset(seed=3)
    for _ in range(200):
        obs, info = env.reset()
        assert -4.5 <= obs[0] <= -3.5 and -1.5 <= obs[1] <= 1.5 and (obs[2:4] == 0).all()
        np.testing.assert_allclose(obs[4:], np.subtract(env.goal, obs[:2]), atol=1e-6)
        assert info["constraint"] < 0  # starts are safe
    obs, _ = env.reset(options={"state": np.array([1.0, 2.0, 0.5, -0.5, 99.0, 99.0])})  # 6-d obs form
    np.testing.assert_allclose(obs, [1.0, 2.0, 0.5, -0.5, 3.0, -2.0])
    with pytest.raises(EnvError, match="shape"):
        env.reset(options={"state": [1.0, 2.0, 3.0]})
    with pytest.raises(EnvError, match="arena"):
        env.reset(options={"state": [7.0, 0.0, 0.0, 0.0]})


# ---------------------------------------------------------------- shared API
def test_plane_grid_shapes_and_ordering():
    for env in (DoubleIntegratorEnv(), PointHazardEnv()):
        plane = env.plane()
        assert isinstance(plane, PlaneSlice)
        n = 5
        xs, ys, obs = plane.grid(n)
        assert xs.shape == (n,) and ys.shape == (n,)
        assert obs.shape == (n * n, env.observation_space.shape[0]) and obs.dtype == np.float32
        # Row-major over (y, x): row i * n + j is the point (xs[j], ys[i]).
        grid = obs[:, :2].reshape(n, n, 2)
        np.testing.assert_allclose(grid[2, 3], [xs[3], ys[2]], rtol=1e-6)
        np.testing.assert_allclose(grid[..., 0], np.broadcast_to(xs, (n, n)), rtol=1e-6)
        np.testing.assert_allclose(grid[..., 1], np.broadcast_to(ys[:, None], (n, n)), rtol=1e-6)
        # Cell centres: symmetric inside the limits, one cell width apart.
        width = (plane.xlim[1] - plane.xlim[0]) / n
        assert xs[0] == pytest.approx(plane.xlim[0] + width / 2) and xs[-1] == pytest.approx(plane.xlim[1] - width / 2)
        assert np.all(np.diff(ys) > 0)


def test_constraint_is_vectorised():
    rng = np.random.default_rng(4)
    for env, dim in ((DoubleIntegratorEnv(), 2), (PointHazardEnv(), 6)):
        obs = rng.uniform(-6, 6, (3, 4, dim)).astype(np.float32)
        h = env.constraint(obs)
        assert h.shape == (3, 4)
        single = np.array([env.constraint(o) for o in obs.reshape(-1, dim)]).reshape(3, 4)
        np.testing.assert_allclose(h, single)
        assert env.constraint(obs[0, 0]).shape == ()
    di = DoubleIntegratorEnv()
    assert di.feasible(rng.uniform(-6, 6, (2, 3, 2))).shape == (2, 3)


def test_render_rgb_array():
    for env, state in ((DoubleIntegratorEnv(render_mode="rgb_array"), [0.0, 0.0]),
                       (PointHazardEnv(render_mode="rgb_array"), [-4.0, 0.0, 0.0, 0.0])):
        env.reset(seed=0, options={"state": state})
        img = env.render()
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert img.shape[0] >= 100 and img.shape[1] >= 100
        env.step(np.ones(env.action_space.shape, np.float32) * 0.0)
        env.reset(options={"state": np.array(state) + 1.0})
        assert not np.array_equal(img, env.render())  # the agent moved in the picture
    with pytest.raises(EnvError, match="render_mode"):
        DoubleIntegratorEnv(render_mode="human")


# ---------------------------------------------------------------- make_env
def test_make_env_builtin_ids():
    for env_id in BUILTIN_ENVS:
        assert env_id in gym.registry
        env = make_env(env_id)
        assert isinstance(env, CostSignalCheck)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert isinstance(info["cost"], float) and "constraint" in info
        assert callable(env.unwrapped.constraint) and isinstance(env.unwrapped.plane(), PlaneSlice)
    assert make_env(DI_ID, max_episode_steps=3).spec.max_episode_steps == 3


def test_make_env_module_form_and_cost(toy_envs):
    env = make_env(f"{toy_envs}:ToyCost-v0")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(1, np.float32))
    assert info["cost"] == 0.5 and type(info["cost"]) is float


def test_make_env_adapts_safety_gymnasium_six_tuples(toy_envs):
    env = make_env(f"{toy_envs}:ToySafetyGym-v0")
    env.reset(seed=0)
    for t in range(1, 6):
        result = env.step(np.zeros(1, np.float32))
        assert len(result) == 5
        obs, reward, term, trunc, info = result
        assert info["cost"] == 0.5 and reward == 1.0 and not term
        assert trunc == (t == 5)  # TimeLimit of the registration still applies


def test_make_env_rejects_missing_and_nan_cost(toy_envs):
    env = make_env(f"{toy_envs}:ToyNoCost-v0")
    env.reset(seed=0)
    with pytest.raises(EnvError, match=r"info\['cost'\]") as excinfo:
        env.step(np.zeros(1, np.float32))
    assert "ToyNoCost-v0" in str(excinfo.value) and "\n" not in str(excinfo.value)

    env = make_env(f"{toy_envs}:ToyCost-v0", cost=float("nan"))
    env.reset(seed=0)
    with pytest.raises(EnvError, match="step 1"):
        env.step(np.zeros(1, np.float32))
    env = make_env(f"{toy_envs}:ToySafetyGym-v0", cost=float("inf"))
    env.reset(seed=0)
    with pytest.raises(EnvError, match="non-finite"):
        env.step(np.zeros(1, np.float32))


def test_make_env_unknown_ids():
    with pytest.raises(EnvError, match="NoSuchEnv-v3"):
        make_env("NoSuchEnv-v3")
    with pytest.raises(EnvError, match="Did you mean 'statewise/DoubleIntegrator-v0'"):
        make_env("statewise/DoubleIntegrater-v0")
    with pytest.raises(EnvError, match="cannot import module"):
        make_env("statewise_no_such_module:Env-v0")
    with pytest.raises(EnvError, match="does not accept"):
        make_env(DI_ID, no_such_kwarg=1)


@pytest.mark.parametrize("name, which", [("ToyEmptyObs-v0", "observation"), ("ToyEmptyAction-v0", "action")])
def test_make_env_refuses_a_space_without_dimensions(toy_envs, name, which):
    with pytest.raises(EnvError, match=f"{name}' has no dimension: its {which} space is Box"):
        make_env(f"{toy_envs}:{name}")


def test_checker_warnings_are_shown_only_for_environments_statewise_accepts(toy_envs):
    """gymnasium's env checker warns about an observation of the wrong shape; statewise refuses the environment for it
    in one line, so the warning is dropped. A warning about an environment that statewise accepts is shown."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        env = make_env(f"{toy_envs}:ToyWrongShape-v0")
        with pytest.raises(EnvError, match=r"ToyWrongShape-v0.*reset returned an observation of shape \(2,\)"):
            env.reset(seed=0)
    assert [str(w.message) for w in shown] == []
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        env = make_env(f"{toy_envs}:ToyOutOfBounds-v0")
        env.reset(seed=0)
    assert any("not within the observation space" in str(w.message) for w in shown), shown
    assert all(w.filename.endswith("passive_env_checker.py") for w in shown)  # shown where gymnasium raised it


def test_an_exception_in_step_names_the_environment_and_keeps_its_traceback(toy_envs):
    env = make_env(f"{toy_envs}:ToyRaising-v0")
    env.reset(seed=0)
    with pytest.raises(EnvStepError) as info:
        for _ in range(100):
            *_, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
            if terminated or truncated:
                env.reset()
    exc = info.value
    assert isinstance(exc, EnvError) and isinstance(exc.__cause__, ZeroDivisionError)
    assert str(exc) == ("environment 'ToyRaising-v0' raised ZeroDivisionError: the toy simulator divided by zero in "
                        "step 15 of an episode")  # its 90th step: 3 episodes of 25, then 15
    assert "in _collide" in exc.trace and exc.trace.startswith("Traceback")
    # a worker of an async vector env pickles it, and the parent raises type(value)(value)
    again = type(exc)(pickle.loads(pickle.dumps(exc)))
    assert (str(again), again.trace, again.env_id) == (str(exc), exc.trace, "ToyRaising-v0")
