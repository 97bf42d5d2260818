"""Metrics that are defined once and used by training, evaluation and reports (ALGORITHM.md §10)."""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1.0
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive).

    Equals P(score of a random positive > score of a random negative) + 0.5 P(tie): the
    Mann-Whitney U statistic divided by n_pos * n_neg. NaN if either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of ``scores`` for binary ``labels``: Σ_k (R_k − R_{k−1}) P_k over the distinct
    score thresholds, from the highest score down (tied scores enter together). NaN without positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(y)[last_of_tie]
    seen = (np.arange(1, len(s) + 1))[last_of_tie]
    precision = tp / seen
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_gain * precision))


def last_fraction_mean(values: np.ndarray, fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of a series (at least one point): the 'final performance' of §10.1."""
    values = np.asarray(values, dtype=np.float64)
    k = max(1, int(np.ceil(fraction * len(values))))
    return float(values[-k:].mean())


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width 1.96·std/√n across seeds (half-width 0 for one seed)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


def total_variation(series: np.ndarray) -> float:
    """(1/K) Σ_k |x_{k+1} − x_k| of a 1-D series (e.g. the probe-set mean of λ over training)."""
    series = np.asarray(series, dtype=np.float64)
    return float(np.abs(np.diff(series)).mean()) if len(series) > 1 else 0.0


def temporal_std(history: np.ndarray, last: float = 0.2) -> float:
    """Per-state standard deviation over the last ``last`` fraction of logs, averaged over states.
    ``history`` has shape (K logs, P states)."""
    history = np.asarray(history, dtype=np.float64)
    k = max(2, int(np.ceil(last * len(history))))
    return float(history[-k:].std(axis=0).mean())


def oscillation_count(history: np.ndarray, deadband: float = 0.01) -> float:
    """Sign changes of Δλ_k(s) per 100 logs, averaged over states. Changes smaller than ``deadband``
    times the series' overall range are ignored (treated as no movement)."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) < 3:
        return 0.0
    delta = np.diff(history, axis=0)
    span = history.max() - history.min()
    sign = np.where(np.abs(delta) > deadband * span, np.sign(delta), 0.0)
    counts = []
    for column in sign.T:
        moves = column[column != 0]
        counts.append(np.count_nonzero(moves[1:] != moves[:-1]))
    return float(np.mean(counts) * 100.0 / (len(history) - 1))


def neighbour_correlation(history: np.ndarray, states: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Correlation of multiplier changes Δλ_k(s), Δλ_k(s') between each state and its nearest
    neighbour, and between random pairs (the reference): how far updates propagate to adjacent states.
    ``history`` (K, P), ``states`` (P, obs_dim)."""
    history = np.asarray(history, dtype=np.float64)
    states = np.asarray(states, dtype=np.float64)
    delta = np.diff(history, axis=0)  # (K-1, P)
    dist = ((states[:, None, :] - states[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(axis=1)
    rng = np.random.default_rng(seed)
    others = (np.arange(len(states)) + rng.integers(1, len(states), len(states))) % len(states)

    def pair_corr(j: np.ndarray) -> float:
        a, b = delta.ravel(), delta[:, j].ravel()
        if a.std() == 0 or b.std() == 0:
            return float("nan")
        return float(np.corrcoef(a, b)[0, 1])

    return pair_corr(nearest), pair_corr(others)


def threshold_crossings(values: np.ndarray, limit: float) -> int:
    """How many times a series (e.g. evaluation episode cost) crosses ``limit`` in either direction."""
    above = np.asarray(values, dtype=np.float64) > limit
    return int(np.count_nonzero(above[1:] != above[:-1]))


def violation_within(costs: np.ndarray, horizon: int) -> np.ndarray:
    """y_H(s_t) = 1[some c_t' > 0 for t' in [t, t + horizon)] along one episode's per-step costs
    (c_t is the cost of the transition leaving s_t). ALGORITHM.md §10.4 Monte-Carlo ground truth."""
    hit = np.asarray(costs, dtype=np.float64) > 0.0
    out = np.zeros(len(hit), dtype=bool)
    next_hit = np.inf  # index of the nearest violating step at or after t
    for t in range(len(hit) - 1, -1, -1):
        if hit[t]:
            next_hit = t
        out[t] = next_hit - t < horizon
    return out


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Empirical positive frequency per score-quantile bin (bins of equal count, lowest scores first):
    returns (mean score per bin, positive frequency per bin). A calibrated risk score increases."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    order = np.argsort(scores, kind="mergesort")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    return (np.array([scores[g].mean() for g in groups]), np.array([labels[g].mean() for g in groups]))
