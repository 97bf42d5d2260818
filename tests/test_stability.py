"""The stability study's parts: the perturbation test's extra cost, its refusals, and the report rows that measure
λ's swings, their reach and the policy's violation runs."""

import numpy as np
import pytest

from statewise.analysis.report import run_metrics
from statewise.api import train
from statewise.envs.perturb import RegionCost
from statewise.errors import ConfigError, EnvError
from statewise.run.evaluate import build_env


def _costs(env, actions):
    out = []
    for a in actions:
        _, _, term, trunc, info = env.step(a)
        out.append(info["cost"])
        assert not (term or trunc)
    return np.array(out)


def test_region_cost_adds_cost_inside_the_region_during_the_window_only():
    base = build_env("statewise/DoubleIntegrator-v0")
    obs, _ = base.reset(seed=3)
    env = RegionCost(base, center=list(obs), radius=10.0, start=2, steps=3, cost=1.0)  # the whole plane
    env.reset(seed=3)
    reference = build_env("statewise/DoubleIntegrator-v0")
    reference.reset(seed=3)
    zero = np.zeros(1)
    extra = _costs(env, [zero] * 8) - _costs(reference, [zero] * 8)
    assert extra.tolist() == [0, 0, 1, 1, 1, 0, 0, 0]  # training steps 3, 4, 5: the window (2, 5]
    # with two environments collecting, an environment's k-th step ends training step 2k: the window is 1.5 as long
    env = RegionCost(build_env("statewise/DoubleIntegrator-v0"), list(obs), 10.0, 2, 3, 1.0, num_envs=2)
    env.reset(seed=3)
    reference.reset(seed=3)
    extra = _costs(env, [zero] * 4) - _costs(reference, [zero] * 4)
    assert extra.tolist() == [0, 1, 0, 0]  # steps 2, 4, 6, 8: only 4 lies in (2, 5]
    far = RegionCost(build_env("statewise/DoubleIntegrator-v0"), [100.0, 100.0], 0.5, 0, 100, 1.0)
    far.reset(seed=3)
    reference.reset(seed=3)
    assert np.array_equal(_costs(far, [zero] * 5), _costs(reference, [zero] * 5))  # outside the region: nothing


def test_perturbation_refusals(tmp_path, tiny):
    cfg = tiny(tmp_path / "a")
    cfg.perturbation.steps = 100
    with pytest.raises(ConfigError, match="perturbation.center"):
        cfg.validate()
    cfg = tiny(tmp_path / "b")
    cfg.perturbation.steps, cfg.perturbation.center = 100, [0.0, 0.0, 0.0]  # the double integrator observes 2 values
    with pytest.raises(EnvError, match="perturbation.center has 3 values"):
        train(cfg, plots=False)
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_report_measures_swings_reach_violation_runs_and_the_perturbation(tmp_path, tiny):
    cfg = tiny(tmp_path / "run", steps=600)
    cfg.perturbation.center, cfg.perturbation.radius = [0.0, 0.0], 1.0
    cfg.perturbation.start, cfg.perturbation.steps = 200, 150
    result = train(cfg, plots=False)
    metrics = run_metrics(result.run_dir, cost_limit=0.0)
    runs = result.summary["violation_runs"]
    assert metrics["longest violation run (training steps)"] == runs["longest"] > 0
    for key in ("λ oscillation amplitude (median state)", "λ oscillation amplitude ÷ λ_max (median state)",
                "λ high-frequency share (> 0.1 per log)", "Δλ correlation by distance: nearest sixth of pairs",
                "λ sign changes per 100 logs (old oscillation proxy)", "eval return std (last 20%)",
                "λ swing → training violations, max lagged corr", "perturbation: peak near",
                "perturbation: return steps", "perturbation: rise 0-0.5"):
        assert key in metrics, key
    assert metrics["λ oscillation amplitude (median state)"] >= 0.0
    assert -1.0 <= metrics["Δλ correlation by distance: nearest sixth of pairs"] <= 1.0


def test_lambda_traces_draw_fixed_plane_states(tmp_path, tiny):
    from statewise.analysis.plots import TRACE_POINTS, lambda_traces
    from statewise.run.diagnostics import LAMBDA_GRID_N

    result = train(tiny(tmp_path / "run", steps=300), plots=False)
    (tmp_path / "plots").mkdir()
    path = lambda_traces([result.run_dir], tmp_path / "plots")
    assert path is not None and path.stat().st_size > 0
    # the plane point (0.5, 0.5) is the grid's centre: on the double integrator's plane, x = v = 0
    env = build_env("statewise/DoubleIntegrator-v0")
    _, _, grid = env.unwrapped.plane().grid(LAMBDA_GRID_N)
    fx, fy = TRACE_POINTS[0]
    centre = grid[int(round(fy * (LAMBDA_GRID_N - 1))) * LAMBDA_GRID_N + int(round(fx * (LAMBDA_GRID_N - 1)))]
    plane = env.unwrapped.plane()
    assert centre == pytest.approx([np.mean(plane.xlim), np.mean(plane.ylim)])
