"""``statewise calibrate RUN_DIR``: fit the risk monitor (:mod:`statewise.analysis.risk`) of a trained run.

Data: the final deterministic policy is rolled out from the task's own initial distribution; every visited state is
labelled y = 1[a cost > 0 within the next H transitions], states with an unknown label left out
(:func:`statewise.run.evaluate.labelled_states`, the labelling of the training-time check in summary.json too). Fit:
isotonic regression of y on the score, on one set of episodes. Check, on a second, held-out set: the expected
calibration error over all states and over the states at risk (predicted risk ≥ 0.01: most states have risk 0 and
make the first tiny), the Brier score and its skill against the base rate, and a reliability curve with the number of
states per bin (:func:`statewise.analysis.risk.calibration_scores`). Both sets use reset seeds of their own
(``evaluate.episode_seeds``), disjoint from every evaluation's. Written to RUN_DIR/risk.json and
RUN_DIR/plots/risk_reliability.png.

With several constraints (``constraint.costs``) the monitor of risk.json (what ``agent.risk`` and the export use) is
the one for "any": a violation of any constraint, scored by the largest λ_k (or residual). Beside it, risk.json's
``constraints`` holds one monitor per constraint: its own labels (a violation of that cost), its own score λ_k(s)
(or Q^c_k(s, π(s))), fitted and checked on the same episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from statewise.analysis.agent import Agent, load
from statewise.analysis.plots import plt, save_figure
from statewise.analysis.risk import (
    SCORES,
    RiskModel,
    calibration_scores,
    default_score,
    isotonic_fit,
    score_fn,
)
from statewise.errors import StatewiseError
from statewise.run import runio
from statewise.run.evaluate import episode_seeds, labelled_states, rollout_members, task_env

LOCKSTEP = 16  # environments stepped together by calibrate


def calibrate(run_dir: str | Path, episodes: int = 100, test_episodes: int = 100, horizon: int = 50,
              score: str = "auto", bins: int = 10) -> dict[str, Any]:
    """Fit the risk monitor of a run (module docstring), write risk.json and plots/risk_reliability.png, and return
    what was written."""
    run_dir = Path(run_dir)
    for name, value in (("episodes", episodes), ("test episodes", test_episodes), ("horizon", horizon)):
        if value < 1:
            raise StatewiseError(f"{name} must be at least 1, got {value}")
    agent = load(run_dir)
    if not agent.config.constrained:
        raise StatewiseError(f"{run_dir} is an unconstrained run ({agent.config.algo}): it has no λ or cost critic "
                             "to calibrate")
    if score == "auto":
        score = default_score(agent)
    if score not in SCORES:
        raise StatewiseError(f"unknown score '{score}'; choose from auto, {', '.join(SCORES)}")
    data = _scored_states(agent, score, horizon, {"calibrate-fit": episodes, "calibrate-test": test_episodes})
    out = {"score": score, "horizon": horizon, "policy": "deterministic", "checkpoint_step": agent.step,
           **_monitor(data[None], score, horizon, bins, (episodes, test_episodes))}
    names = agent.config.constraint.costs
    if names:
        out["constraints"] = {name: _monitor(data[k], score, horizon, bins, (episodes, test_episodes))
                              for k, name in enumerate(names)}
    runio.write_json(run_dir / runio.RISK_FILE, out)
    out["plot"] = str(_reliability_plot(run_dir, out))
    return out


def _monitor(data: dict[str, tuple[np.ndarray, np.ndarray]], score: str, horizon: int, bins: int,
             episodes: tuple[int, int]) -> dict[str, Any]:
    """One isotonic risk monitor fitted on the fit episodes' (scores, labels) and checked on the held-out ones."""
    (x_fit, y_fit), (x_test, y_test) = data["calibrate-fit"], data["calibrate-test"]
    if len(y_fit) == 0 or len(y_test) == 0:
        raise StatewiseError("no state with a known label: episodes shorter than the horizon all ended by the time "
                             "limit; use a shorter --horizon")
    lefts, values = isotonic_fit(x_fit, y_fit)
    model = RiskModel(score, horizon, lefts, values)
    return {"fit": {"episodes": episodes[0], "states": int(len(y_fit)), "positive_fraction": float(y_fit.mean())},
            "test": {"episodes": episodes[1], "states": int(len(y_test)), "positive_fraction": float(y_test.mean()),
                     **calibration_scores(model(x_test), y_test, bins)},
            "lefts": lefts.tolist(), "values": values.tolist()}


def _scored_states(agent: Agent, score: str, horizon: int, episodes: dict[str, int]
                   ) -> dict[int | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per purpose (its reset seeds) and number of episodes: the scores and labels of the visited states with a known
    label, for "any" violation (key None) and, with named costs, for each constraint k (key k, scored by its own
    λ_k or Q^c_k). LOCKSTEP environments play the episodes side by side, one batched policy call per step for all."""
    envs = [task_env(agent.config)
            for _ in range(min(LOCKSTEP, max(episodes.values())))]
    parts = [None, *range(len(agent.config.constraint.costs))]
    data: dict[int | None, dict[str, tuple[np.ndarray, np.ndarray]]] = {part: {} for part in parts}
    try:
        for purpose, n in episodes.items():
            seeds = episode_seeds(agent.config.seed, purpose, n)
            per_env = [seeds[k::len(envs)] for k in range(len(envs))]
            eps = [ep for run in rollout_members(envs, agent.act, per_env, record=True) for ep in run]
            for part in parts:
                obs, y = labelled_states(eps, horizon, part)
                data[part][purpose] = (np.asarray(_score(agent, score, part)(obs), dtype=np.float64), y)
    finally:
        for env in envs:
            env.close()
    return data


def _score(agent: Agent, score: str, part: int | None):
    """The score of the "any" monitor (part None) or of constraint ``part``'s: λ_k(s) or Q^c_k(s, π(s))."""
    if part is None:
        return score_fn(agent, score)
    name = agent.config.constraint.costs[part]
    if score == "lambda":
        return lambda obs: agent.multipliers(obs)[name]
    return lambda obs: agent.cost_values(obs)[name]


def _reliability_plot(run_dir: Path, result: dict[str, Any]) -> Path:
    """Left: the held-out reliability curve, each bin marked with its number of states (the mid-range bins, where
    the risk is uncertain, are often sparse), ECE over all states and over the states at risk, Brier skill. Right:
    the fitted step function."""
    test = result["test"]
    rel = test["reliability"]
    fig, (ax, fit_ax) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.plot(rel["mean_predicted"], rel["observed"], marker="o",
            label=f"held out: {test['states']} states, ECE {test['ece']:.3f}")
    ax.plot([], [], ls="none", label=f"ECE at risk (p ≥ {test.get('at_risk_threshold', 0.01):g}, "
                                     f"{test['at_risk_states']} states) {_fmt(test['ece_at_risk'])}")
    ax.plot([], [], ls="none", label=f"Brier {test['brier']:.4f}, Brier skill {_fmt(test['brier_skill'])}")
    for x, y, n in zip(rel["mean_predicted"], rel["observed"], rel["states"], strict=True):
        ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel(f"predicted P(violation within {result['horizon']} steps)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("reliability of the risk monitor (held-out rollouts)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    lefts, values = np.asarray(result["lefts"]), np.asarray(result["values"])
    fit_ax.step(lefts, values, where="post")
    fit_ax.set_xlabel("λ(s)" if result["score"] == "lambda" else "Q^c(s, π(s))")
    fit_ax.set_ylabel("P(violation)")
    fit_ax.set_title("isotonic fit")
    fit_ax.grid(alpha=0.3)
    (run_dir / "plots").mkdir(exist_ok=True)
    return save_figure(fig, run_dir / "plots" / "risk_reliability.png")


def _fmt(value: float | None) -> str:
    """A figure for the plot's legend; undefined (None in risk.json, NaN here) as 'n/a'."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"
