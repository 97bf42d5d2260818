"""The risk monitor: a trained run's λ(s) (or Q^c(s, π(s))) turned into a calibrated probability of a violation
within the next H steps under its final policy (``agent.risk(obs)``, fitted by ``statewise calibrate RUN_DIR``,
:mod:`statewise.analysis.calibrate`).

The model and its pure parts: states labelled y = 1[a cost > 0 within the next H transitions] (:func:`labelled_states`,
from :mod:`statewise.run.evaluate`, the labelling the training-time check in summary.json uses too; states fewer than
H steps before a time-limit truncation without a violation in between have an unknown label and are left out: a
violation after the time limit cannot be seen), isotonic regression of y on the score (:func:`isotonic_fit`,
pool-adjacent-violators: the non-decreasing step function with the least squared error, as few steps as it takes),
the calibration figures (:func:`calibration_scores`: the expected calibration error over all states and over the
states at risk, the Brier score and its skill against the base rate), and :class:`RiskModel`, the fitted step
function as written to RUN_DIR/risk.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from statewise.errors import StatewiseError
from statewise.method.multipliers import per_state
from statewise.metrics import auroc
from statewise.run import runio
from statewise.run.evaluate import labelled_states  # noqa: F401  (the labelling shared with training)

SCORES = ("lambda", "cost_value")


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
    for s, c, left in zip(sums, counts, lefts, strict=True):
        blocks.append([s, c, left])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            s2, c2, _ = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
    lefts, values = np.array([b[2] for b in blocks]), np.array([b[0] / b[1] for b in blocks])
    # PAV pools only blocks out of order: neighbours with equal means (e.g. long runs of y = 0) stay apart. A step
    # that repeats the value before it changes no prediction; dropping it leaves the minimal step function.
    keep = np.r_[True, values[1:] != values[:-1]]
    return lefts[keep], values[keep]


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


AT_RISK = 0.01  # ece_at_risk: the calibration error over the states predicted at least this risky


def calibration_scores(p: np.ndarray, y: np.ndarray, bins: int = 10, at_risk: float = AT_RISK) -> dict[str, Any]:
    """How well predicted probabilities ``p`` match outcomes ``y``, in figures that the many states of risk 0 cannot
    flatter:

    * ``ece``: :func:`expected_calibration_error` over all states (dominated by the usual ~98% at risk 0);
    * ``ece_at_risk``: the same over the ``at_risk_states`` states with p ≥ ``at_risk`` only (NaN if there are none);
    * ``brier`` = mean (p − y)², and ``brier_skill`` = 1 − Brier / Brier of always predicting the base rate
      ȳ (= ȳ (1 − ȳ)): 1 for perfect predictions, 0 for no better than the base rate, negative for worse (NaN if
      ȳ is 0 or 1: there is nothing to predict);
    * ``reliability``: per non-empty bin the mean prediction, observed frequency and number of states."""
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    ece, mean_p, freq, count = expected_calibration_error(p, y, bins)
    risky = p >= at_risk
    ece_at_risk = expected_calibration_error(p[risky], y[risky], bins)[0] if risky.any() else float("nan")
    brier = float(np.mean((p - y) ** 2))
    base = float(y.mean())
    reference = base * (1.0 - base)
    return {"ece": ece, "ece_at_risk": ece_at_risk, "at_risk_states": int(risky.sum()), "at_risk_threshold": at_risk,
            "brier": brier, "brier_skill": 1.0 - brier / reference if reference > 0 else float("nan"),
            "auroc": auroc(p, y),
            "reliability": {"mean_predicted": mean_p.tolist(), "observed": freq.tolist(), "states": count.tolist()}}


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
    def read(cls, run_dir: Path) -> RiskModel:
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
    """λ(s) where it is a map (a per-state multiplier: a network); otherwise Q^c(s, π(s)) (a scalar λ cannot rank
    states)."""
    return "lambda" if per_state(agent.config.multiplier.kind) else "cost_value"


def score_fn(agent: Any, score: str):
    """The agent's method that gives ``score`` for one observation or a batch."""
    return agent.multiplier if score == "lambda" else agent.cost_value
