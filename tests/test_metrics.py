"""Every metric on a hand-built series with a hand-computed answer."""

import numpy as np
import pytest

from statewise.metrics import (
    auprc,
    auroc,
    last_fraction_mean,
    mean_ci95,
    neighbour_correlation,
    oscillation_count,
    temporal_std,
    threshold_crossings,
    total_variation,
)


def test_auroc_hand_cases():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # pairs (pos, neg): (0.5 vs 0.3) win, (0.5 vs 0.7) loss, (0.7 vs 0.3) win, (0.7 vs 0.7) tie -> 2.5 / 4
    assert auroc([0.5, 0.7, 0.3, 0.7], [1, 1, 0, 0]) == pytest.approx(0.625)
    assert auroc(np.ones(6), [0, 1, 0, 1, 0, 1]) == 0.5  # constant score: chance level
    assert np.isnan(auroc([1, 2], [1, 1]))


def test_auprc_hand_cases():
    assert auprc([0.9, 0.8, 0.1], [1, 1, 0]) == pytest.approx(1.0)
    # ranking pos, neg, pos: precision at recall 1/2 is 1, at recall 1 is 2/3 -> AP = 0.5 + 1/3
    assert auprc([0.9, 0.5, 0.1], [1, 0, 1]) == pytest.approx(0.5 + 1 / 3)
    # all scores tied: one threshold with precision = prevalence
    assert auprc([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_final_performance_and_ci():
    assert last_fraction_mean(np.arange(20), 0.1) == pytest.approx(18.5)  # last 2 of 20
    assert last_fraction_mean([3.0, 5.0], 0.1) == 5.0  # at least one point
    # Student's t, not the normal quantile: n = 3 -> t_{0.975, 2} = 4.303
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / np.sqrt(3))
    mean, half = mean_ci95([1.0, 3.0, 2.0, 6.0, 3.0])  # n = 5: std 1.871 -> 2.776 * 1.871 / sqrt(5)
    assert half == pytest.approx(2.776 * np.std([1, 3, 2, 6, 3], ddof=1) / np.sqrt(5))
    assert mean_ci95([4.0]) == (4.0, 0.0)


def test_t_quantile_beyond_the_table():
    from statewise.metrics import t_quantile_975

    # reference values of Student's t 0.975 quantile (statistical tables): df 40, 60, 120 -> 2.021, 2.000, 1.980
    for df, ref in ((30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980)):
        assert t_quantile_975(df) == pytest.approx(ref, abs=1.5e-3)


def test_stability_metrics():
    assert total_variation([0.0, 1.0, 0.0, 2.0]) == pytest.approx((1 + 1 + 2) / 3)
    hist = np.array([[0.0, 5.0], [1.0, 5.0], [0.0, 5.0], [1.0, 5.0], [0.0, 5.0]])
    # state 0 moves up, down, up, down: 3 sign changes over 4 steps -> 75 per 100 logs; state 1 never moves
    assert oscillation_count(hist) == pytest.approx((75.0 + 0.0) / 2)
    assert temporal_std(hist, last=1.0) == pytest.approx((np.std([0, 1, 0, 1, 0]) + 0.0) / 2)
    # a monotone ramp with tiny jitter below the dead band does not oscillate
    ramp = np.linspace(0, 10, 50)[:, None] + 1e-4 * (-1) ** np.arange(50)[:, None]
    assert oscillation_count(ramp) == 0.0
    # the dead band is per state: one state saturating at 100 must not hide another state's flips of size 0.5
    # (a global band of 1% of the whole range, 1.0, would count zero flips for state 0)
    flip = np.c_[0.5 * (np.arange(9) % 2), np.linspace(0.0, 100.0, 9)]
    assert oscillation_count(flip) == pytest.approx((7 * 100.0 / 8 + 0.0) / 2)
    # ... and a state resting at λ ≈ 0 with float jitter far below any meaningful change does not oscillate
    resting = 1e-5 * (-1.0) ** np.arange(9)[:, None]
    assert oscillation_count(resting) == 0.0


def test_neighbour_correlation_detects_propagation():
    rng = np.random.default_rng(1)
    states = np.repeat(np.arange(50.0), 2)[:, None] + np.tile([0.0, 0.01], 50)[:, None]  # pairs of neighbours
    shared = rng.normal(size=(30, 50))
    history = np.cumsum(np.repeat(shared, 2, axis=1), axis=0)  # neighbours move together
    near, far = neighbour_correlation(history, states)
    assert near == pytest.approx(1.0) and abs(far) < 0.3


def test_threshold_crossings():
    assert threshold_crossings([0, 30, 10, 40, 50, 5], limit=25) == 4
    assert threshold_crossings([1, 2, 3], limit=25) == 0


def test_violation_within_horizon():
    from statewise.metrics import violation_within

    costs = [0, 0, 0, 1, 0, 0, 0, 0]
    assert violation_within(costs, horizon=2).tolist() == [False, False, True, True, False, False, False, False]
    assert violation_within(costs, horizon=4).tolist() == [True, True, True, True, False, False, False, False]
    assert not violation_within([0, 0, 0], 10).any()


def test_reliability_bins():
    from statewise.metrics import reliability

    scores = np.arange(10.0)
    labels = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1])
    mean_score, freq = reliability(scores, labels, bins=2)
    assert mean_score.tolist() == [2.0, 7.0] and freq.tolist() == [0.0, 0.8]


def test_reliability_keeps_ties_in_one_bin():
    from statewise.metrics import reliability

    # a constant score (a scalar λ) cannot rank states: one bin, not a curve drawn by visit order
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    mean_score, freq = reliability(np.full(10, 3.0), labels, bins=5)
    assert mean_score.tolist() == [3.0] and freq.tolist() == [0.5]
    # two tie groups of sizes 3 and 7 never share or split a bin
    scores = np.r_[np.zeros(3), np.ones(7)]
    mean_score, freq = reliability(scores, np.r_[0, 0, 1, np.ones(7)], bins=4)
    assert mean_score.tolist() == [0.0, 1.0] and freq.tolist() == pytest.approx([1 / 3, 1.0])
