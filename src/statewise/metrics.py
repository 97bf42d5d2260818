"""Metrics that are defined once and used by training, evaluation and reports (docs/algorithm.md §7)."""

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
    for s, e in zip(starts, ends, strict=True):
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
    """Mean of the last ``fraction`` of a series (at least one point): the 'final performance'
    (docs/algorithm.md §7)."""
    values = np.asarray(values, dtype=np.float64)
    k = max(1, int(np.ceil(fraction * len(values))))
    return float(values[-k:].mean())


# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (table to 30, then the Cornish-Fisher
    expansion around the normal quantile, accurate to 1e-4 there)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width t_{0.975, n−1}·std/√n across seeds, Student's t because n is small
    (n = 5: 2.78·std/√n, not 1.96). Half-width 0 for one seed."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(t_quantile_975(len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


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


def oscillation_count(history: np.ndarray, deadband: float = 0.01, floor: float = 0.01) -> float:
    """Sign changes of Δλ_k(s) per 100 logs, averaged over states. Per state, changes smaller than ``deadband``
    times that state's own range over the run are ignored (treated as no movement), so a state that saturates
    at λ_max does not hide the flips of every other state; changes below ``floor`` (in λ units) are ignored too,
    so a state that sits at λ ≈ 0 does not count floating-point jitter as oscillation."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) < 3:
        return 0.0
    delta = np.diff(history, axis=0)
    span = history.max(axis=0) - history.min(axis=0)  # (P,) one band per state
    sign = np.where(np.abs(delta) > np.maximum(deadband * span, floor), np.sign(delta), 0.0)
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
    (c_t is the cost of the transition leaving s_t). The Monte-Carlo ground truth of calibration."""
    hit = np.asarray(costs, dtype=np.float64) > 0.0
    out = np.zeros(len(hit), dtype=bool)
    next_hit = np.inf  # index of the nearest violating step at or after t
    for t in range(len(hit) - 1, -1, -1):
        if hit[t]:
            next_hit = t
        out[t] = next_hit - t < horizon
    return out


def quantile_bins(position: np.ndarray, total: float, bins: int) -> np.ndarray:
    """The quantile bin (0 .. bins-1, about equal counts) of each state from its rank position among ``total`` states
    (0-based, at the middle of its rank: ties and weighted states sit at the middle of their run)."""
    return np.minimum((np.asarray(position) * bins / total).astype(int), bins - 1)


def reliability_bins(scores: np.ndarray, bins: int = 10) -> np.ndarray:
    """The bin of each score in :func:`reliability`: by the score's average rank, so tied scores share a bin."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return quantile_bins(average_ranks(scores) - 0.5, len(scores), bins)


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Empirical positive frequency per score-quantile bin (bins of about equal count, lowest scores first):
    returns (mean score per bin, positive frequency per bin). A calibrated risk score increases.

    Tied scores always share a bin (a bin is chosen by the ties' average rank), so a score that cannot rank
    two states cannot draw a curve between them: a constant score gives one bin."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if len(scores) == 0:
        return np.array([]), np.array([])
    which = reliability_bins(scores, bins)
    groups = [np.flatnonzero(which == b) for b in range(bins)]
    groups = [g for g in groups if len(g)]
    return (np.array([scores[g].mean() for g in groups]), np.array([labels[g].mean() for g in groups]))


# ------------------------------------------------------------------ stability of λ(s) and of the policy (§7b)
def excess_path_length(history: np.ndarray) -> np.ndarray:
    """Per state, the path length of λ_k(s) beyond its net change, Σ_k |Δλ_k(s)| − |λ_K(s) − λ_0(s)|: zero for any
    monotone trend, 2 × (the amplitude) per back-and-forth swing. ``history`` (K logs, P states) -> (P,)."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) < 2:
        return np.zeros(history.shape[1:])
    return np.abs(np.diff(history, axis=0)).sum(0) - np.abs(history[-1] - history[0])


def oscillation_amplitude(history: np.ndarray, lam_max: float, last: float = 1.0) -> dict[str, float]:
    """The λ oscillation amplitude over states: median and 90th percentile of :func:`excess_path_length`, in λ units
    and relative to λ_max, over the last ``last`` fraction of the logs (1 = the whole run, early overshoots
    included; 0.5 = the late half, the swings that remain once training has settled)."""
    history = np.asarray(history, dtype=np.float64)
    excess = excess_path_length(history[-max(2, int(np.ceil(last * len(history)))):])
    median, q90 = float(np.median(excess)), float(np.quantile(excess, 0.9))
    return {"median": median, "q90": q90, "median_rel": median / lam_max, "q90_rel": q90 / lam_max}


def high_frequency_share(history: np.ndarray, cutoff: float = 0.1, last: float = 0.5) -> float:
    """The share of λ's variance above ``cutoff`` (in cycles per log; Nyquist is 0.5) after removing each state's
    least-squares line, over the last ``last`` fraction of the logs (so the first rise from λ_init, a step, does not
    count as high-frequency power), median over states: near 0 for a slow drift, near 1 for log-to-log jitter.
    States that do not move at all are left out; NaN if none moves."""
    history = np.asarray(history, dtype=np.float64)
    history = history[-max(4, int(np.ceil(last * len(history)))):]
    k = len(history)
    if k < 4:
        return float("nan")
    x = np.arange(k, dtype=np.float64)
    design = np.stack([np.ones(k), x], 1)
    coef, *_ = np.linalg.lstsq(design, history, rcond=None)
    resid = history - design @ coef
    power = np.abs(np.fft.rfft(resid, axis=0)) ** 2
    power[0] = 0.0
    freq = np.fft.rfftfreq(k)
    total = power.sum(0)
    moving = total > 1e-12 * max(1.0, float(np.abs(history).max()) ** 2 * k)
    if not moving.any():
        return float("nan")
    return float(np.median(power[freq > cutoff][:, moving].sum(0) / total[moving]))


def delta_correlation_by_distance(history: np.ndarray, states: np.ndarray, bins: int = 6, last: float = 0.5,
                                  max_pairs: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """How far λ's changes reach: the correlation of Δλ_k(s) with Δλ_k(s') over state pairs, per bin of their
    distance (states standardised per dimension, bins of equal pair count), over the last ``last`` fraction of the
    logs (the first rise from λ_init moves every state together and would swamp the swings). Returns (mean distance
    per bin, correlation per bin); NaN where no pair moves. Independent states give about 0 in every bin; a network
    whose updates move neighbouring states together gives a curve that starts near 1 and falls with distance (the
    cascade's reach)."""
    history = np.asarray(history, dtype=np.float64)
    history = history[-max(3, int(np.ceil(last * len(history)))):]
    delta = np.diff(history, axis=0)  # (K-1, P)
    states = np.asarray(states, dtype=np.float64)
    scale = states.std(0)
    z = (states - states.mean(0)) / np.where(scale > 0, scale, 1.0)
    p = len(z)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(p, 1)
    if len(i) > max_pairs:
        pick = rng.choice(len(i), max_pairs, replace=False)
        i, j = i[pick], j[pick]
    dist = np.sqrt(((z[i] - z[j]) ** 2).sum(1))
    centred = delta - delta.mean(0)
    norm = np.sqrt((centred**2).sum(0))
    moving = norm > 0
    keep = moving[i] & moving[j]
    i, j, dist = i[keep], j[keep], dist[keep]
    if len(i) == 0:
        return np.full(bins, np.nan), np.full(bins, np.nan)
    corr = (centred[:, i] * centred[:, j]).sum(0) / (norm[i] * norm[j])
    order = np.argsort(dist, kind="mergesort")
    groups = np.array_split(order, bins)
    return (np.array([dist[g].mean() if len(g) else np.nan for g in groups]),
            np.array([corr[g].mean() if len(g) else np.nan for g in groups]))


def violation_runs(violating: np.ndarray, burst: int = 10) -> dict[str, int]:
    """Runs of consecutive violating steps in one environment's sequence of 0/1 flags: the longest run, the number
    of bursts (runs of at least ``burst`` steps) and the steps spent in them."""
    flags = np.asarray(violating, dtype=bool)
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    long = lengths[lengths >= burst]
    return {"longest": int(lengths.max(initial=0)), "bursts": int(len(long)), "burst_steps": int(long.sum())}


def lagged_correlation(cause: np.ndarray, effect: np.ndarray, max_lag: int) -> np.ndarray:
    """corr(cause_k, effect_{k+L}) for L = 0..max_lag (NaN where undefined): whether swings of one series are
    followed by spikes of another (e.g. |Δλ| per log, then the training violation ratio)."""
    cause, effect = np.asarray(cause, dtype=np.float64), np.asarray(effect, dtype=np.float64)
    out = np.full(max_lag + 1, np.nan)
    n = min(len(cause), len(effect))
    for lag in range(min(max_lag, n - 1) + 1):
        a, b = cause[: n - lag], effect[lag:n]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() > 2 and a[ok].std() > 0 and b[ok].std() > 0:
            out[lag] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return out


def perturbation_response(history: np.ndarray, steps: np.ndarray, distance: np.ndarray, start: int, end: int,
                          bins: tuple[float, ...] = (0.5, 1.0, 2.0), tolerance: float = 0.1,
                          reference: np.ndarray | None = None) -> dict[str, float]:
    """λ's response to cost added near one state during the training window [start, end) (the perturbation test).

    ``history`` (K, P) is λ on fixed states at log ``steps`` (K,), ``distance`` (P,) each state's distance from the
    perturbed region (in the region's radii). Per distance band (< bins[0], then between consecutive bins, then
    beyond): the largest rise of the band's median λ above its value at the last log before ``start``
    (``rise_<band>``). ``return_steps``: steps after ``end`` until the median |λ − baseline| of the states within
    bins[1] radii is back below ``tolerance`` × its peak (NaN if it never is; 0 if it never moved).

    With ``reference`` (K, P), λ of the same states in an unperturbed twin run (same seed and settings), the
    baseline at every log is the twin's λ instead of the value before the window: the difference is then the
    perturbation's own effect, free of the drift that training causes anyway."""
    history, steps, distance = (np.asarray(a, dtype=np.float64) for a in (history, steps, distance))
    before = np.flatnonzero(steps < start)
    if len(before) == 0:
        raise ValueError("the λ history starts after the perturbation window: no baseline")
    base = history[before[-1]] if reference is None else np.asarray(reference, dtype=np.float64)
    after_start = steps >= start
    out: dict[str, float] = {}
    edges = (0.0, *bins, np.inf)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = (distance >= lo) & (distance < hi)
        name = f"rise_{lo:g}-{hi:g}" if np.isfinite(hi) else f"rise_{lo:g}+"
        out[name] = (float(np.max(np.median((history - base)[after_start][:, band], axis=1)))
                     if band.any() and after_start.any() else float("nan"))
    near = distance < bins[1]
    dev = np.median(np.abs(history - base)[:, near], axis=1) if near.any() else np.zeros(len(steps))
    peak = float(dev[after_start].max()) if after_start.any() else 0.0
    out["peak_near"] = peak
    if peak == 0.0:
        out["return_steps"] = 0.0
        return out
    back = np.flatnonzero((steps >= end) & (dev <= tolerance * peak))
    out["return_steps"] = float(steps[back[0]] - end) if len(back) else float("nan")
    return out
