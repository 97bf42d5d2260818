"""The risk monitor: a trained run's λ(s) (or Q^c(s, π(s))) turned into a calibrated probability of a violation
within the next H steps under its final policy (``statewise calibrate RUN_DIR``, ``agent.risk(obs)``).

Data: the final deterministic policy is rolled out from the task's own initial distribution; every visited state is
labelled y = 1[a cost > 0 within the next H transitions]. States fewer than H steps before a time-limit truncation
without a violation in between have an unknown label and are left out (a violation after the time limit cannot be
seen). Fit: isotonic regression of y on the score (pool-adjacent-violators; the non-decreasing step function with
the least squared error), on one set of episodes. Check: the expected calibration error and a reliability curve on
a second, held-out set. Both sets use reset seeds of their own (``evaluate.episode_seeds``), disjoint from every
evaluation's. Written to RUN_DIR/risk.json and RUN_DIR/plots/risk_reliability.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from statewise.run import runio
from statewise.errors import StatewiseError
from statewise.metrics import auroc, violation_within

SCORES = ("lambda", "cost_value")
LOCKSTEP = 16  # environments stepped together by calibrate


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step function f minimising Σ (f(x_i) − y_i)². Returns its steps
    as (left ends, values): f(x) = values[k] for lefts[k] ≤ x < lefts[k+1]. Tied x always share a value."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"isotonic_fit needs equally long, non-empty x and y, got {len(x)} and {len(y)}")
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order]
    lefts, first = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, first)
    counts = np.diff(np.r_[first, len(xs)]).astype(np.float64)
    blocks: list[list[float]] = []  # [sum, count, left end]
    for s, c, left in zip(sums, counts, lefts):
        blocks.append([s, c, left])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            s2, c2, _ = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
    return np.array([b[2] for b in blocks]), np.array([b[0] / b[1] for b in blocks])


def isotonic_predict(lefts: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The step function of :func:`isotonic_fit` at ``x`` (below the first left end: the first value)."""
    idx = np.searchsorted(np.asarray(lefts), np.asarray(x, dtype=np.float64), side="right") - 1
    return np.asarray(values)[np.clip(idx, 0, len(values) - 1)]


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10
                               ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """ECE = Σ_b (n_b / n) |mean p_b − mean y_b| over ``bins`` equal-width bins of the predicted probability in
    [0, 1] (the usual definition; empty bins are skipped). Returns (ECE, mean prediction, observed frequency, count)
    per non-empty bin."""
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    which = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(int), bins - 1)
    groups = [g for g in (np.flatnonzero(which == b) for b in range(bins)) if len(g)]
    mean_p = np.array([p[g].mean() for g in groups])
    freq = np.array([y[g].mean() for g in groups])
    count = np.array([len(g) for g in groups])
    return float(np.sum(count / len(p) * np.abs(mean_p - freq))), mean_p, freq, count


def labelled_states(episodes: list, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(states, y) from recorded episodes, y = violation within ``horizon`` steps, censored states left out."""
    obs, labels = [], []
    for ep in episodes:
        y = violation_within(ep.costs, horizon)
        known = np.ones(len(y), dtype=bool)
        if ep.truncated:  # the last steps before the time limit: a later violation would not have been seen
            left = len(y) - np.arange(len(y))
            known = y | (left >= horizon)
        obs.append(np.asarray(ep.states, dtype=np.float32)[known])
        labels.append(y[known])
    return np.concatenate(obs), np.concatenate(labels)


@dataclass
class RiskModel:
    """P(violation within ``horizon`` steps | score(s)) as a non-decreasing step function of the score."""

    score: str
    horizon: int
    lefts: np.ndarray
    values: np.ndarray

    def __call__(self, score_values: np.ndarray) -> np.ndarray:
        return isotonic_predict(self.lefts, self.values, score_values)

    @classmethod
    def read(cls, run_dir: Path) -> "RiskModel":
        path = Path(run_dir) / runio.RISK_FILE
        if not path.is_file():
            raise StatewiseError(f"{run_dir} has no risk calibration ({runio.RISK_FILE}); run: statewise calibrate "
                                 f"{run_dir}")
        data = runio.read_json(path)
        try:
            return cls(str(data["score"]), int(data["horizon"]), np.asarray(data["lefts"], dtype=np.float64),
                       np.asarray(data["values"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise StatewiseError(f"{path} is corrupt: {exc}") from None


def default_score(agent: Any) -> str:
    """λ(s) where it is a map (a network multiplier); otherwise Q^c(s, π(s)) (a scalar λ cannot rank states)."""
    return "lambda" if agent.config.multiplier.kind == "network" else "cost_value"


def score_fn(agent: Any, score: str):
    return agent.multiplier if score == "lambda" else agent.cost_value


def calibrate(run_dir: str | Path, episodes: int = 100, test_episodes: int = 100, horizon: int = 50,
              score: str = "auto", bins: int = 10) -> dict[str, Any]:
    """Fit the risk monitor of a run (module docstring), write risk.json and plots/risk_reliability.png, and return
    what was written."""
    from statewise.analysis.agent import load
    from statewise.run.evaluate import build_env, episode_seeds, rollout_members

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
    # LOCKSTEP environments play the episodes side by side, one batched policy call per step for all of them
    envs = [build_env(agent.config.env, agent.config.max_episode_steps)
            for _ in range(min(LOCKSTEP, max(episodes, test_episodes)))]
    fn = score_fn(agent, score)
    data = {}
    try:
        for purpose, n in (("calibrate-fit", episodes), ("calibrate-test", test_episodes)):
            seeds = episode_seeds(agent.config.seed, purpose, n)
            per_env = [seeds[k::len(envs)] for k in range(len(envs))]
            eps = [ep for run in rollout_members(envs, agent.act, per_env, record=True) for ep in run]
            obs, y = labelled_states(eps, horizon)
            data[purpose] = (np.asarray(fn(obs), dtype=np.float64), y)
    finally:
        for env in envs:
            env.close()
    (x_fit, y_fit), (x_test, y_test) = data["calibrate-fit"], data["calibrate-test"]
    if len(y_fit) == 0 or len(y_test) == 0:
        raise StatewiseError("no state with a known label: episodes shorter than the horizon all ended by the time "
                             "limit; use a shorter --horizon")
    lefts, values = isotonic_fit(x_fit, y_fit)
    model = RiskModel(score, horizon, lefts, values)
    p_test = model(x_test)
    ece, mean_p, freq, count = expected_calibration_error(p_test, y_test, bins)
    out = {"score": score, "horizon": horizon, "policy": "deterministic", "checkpoint_step": agent.step,
           "fit": {"episodes": episodes, "states": int(len(y_fit)), "positive_fraction": float(y_fit.mean())},
           "test": {"episodes": test_episodes, "states": int(len(y_test)), "positive_fraction": float(y_test.mean()),
                    "ece": ece, "brier": float(np.mean((p_test - y_test) ** 2)), "auroc": auroc(p_test, y_test),
                    "reliability": {"mean_predicted": mean_p.tolist(), "observed": freq.tolist(),
                                    "states": count.tolist()}},
           "lefts": lefts.tolist(), "values": values.tolist()}
    runio.write_json(run_dir / runio.RISK_FILE, out)
    out["plot"] = str(_reliability_plot(run_dir, out))
    return out


def _reliability_plot(run_dir: Path, result: dict[str, Any]) -> Path:
    from statewise.analysis.plots import _save, plt

    test = result["test"]
    fig, (ax, fit_ax) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.plot(test["reliability"]["mean_predicted"], test["reliability"]["observed"], marker="o",
            label=f"held out: {test['states']} states, ECE {test['ece']:.3f}")
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
    return _save(fig, run_dir / "plots" / "risk_reliability.png")
