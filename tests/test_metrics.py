"""Every metric on a hand-built series with a hand-computed answer."""

import numpy as np
import pytest

from statewise.metrics import (
    auprc,
    auroc,
    delta_correlation_by_distance,
    excess_path_length,
    high_frequency_share,
    lagged_correlation,
    last_fraction_mean,
    mean_ci95,
    neighbour_correlation,
    oscillation_amplitude,
    oscillation_count,
    perturbation_response,
    temporal_std,
    threshold_crossings,
    total_variation,
    violation_runs,
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


# ----------------------------------------------------------------- stability measures on synthetic λ histories
K = 200
STEPS = np.arange(K, dtype=np.float64)


def test_oscillation_amplitude_is_zero_for_a_trend_and_proportional_for_a_swing():
    trend = np.stack([0.05 * STEPS, 30 - 0.1 * STEPS, np.sqrt(STEPS)], 1)  # monotone, up or down
    assert np.allclose(excess_path_length(trend), 0.0)
    swing = np.sin(2 * np.pi * STEPS / 40)[:, None] * np.array([1.0, 3.0])  # 5 periods, amplitudes 1 and 3
    excess = excess_path_length(swing)
    # a sine's path length is 4 × amplitude per period; the net change is 0 after whole periods
    assert excess == pytest.approx([4 * 5 * 1.0, 4 * 5 * 3.0], rel=0.02)
    amp = oscillation_amplitude(swing, lam_max=100.0)
    assert amp["median"] == pytest.approx(40.0, rel=0.02) and amp["median_rel"] == pytest.approx(0.4, rel=0.02)
    assert amp["q90"] == pytest.approx(56.0, rel=0.02)  # 90th percentile between the two states
    overshoot = np.r_[np.linspace(0, 50, 10), np.linspace(50, 0, 10), np.zeros(K - 20)][:, None]  # early, once
    assert oscillation_amplitude(overshoot, 100.0)["median"] == pytest.approx(100.0)  # up 50, down 50
    assert oscillation_amplitude(overshoot, 100.0, last=0.5)["median"] == 0.0  # the late half is still
    rng = np.random.default_rng(0)
    noise = 0.01 * rng.standard_normal((K, 50))
    big = 5.0 * np.sin(2 * np.pi * STEPS / 40)[:, None] + noise
    assert oscillation_amplitude(noise, 100.0)["median"] < 0.05 * oscillation_amplitude(big, 100.0)["median"]


def test_high_frequency_share_separates_jitter_from_drift():
    rng = np.random.default_rng(1)
    drift = 0.2 * STEPS[:, None] + 3 * np.sin(2 * np.pi * STEPS / 400)[:, None] + np.zeros((1, 5))
    assert high_frequency_share(drift, cutoff=0.1) < 0.05  # a line and one slow wave (its edges leak a little)
    jitter = rng.standard_normal((K, 5))
    # white noise spreads its variance evenly over frequencies in (0, 0.5]: 80% lies above 0.1
    assert high_frequency_share(jitter, cutoff=0.1) == pytest.approx(0.8, abs=0.08)
    assert np.isnan(high_frequency_share(np.ones((K, 3))))  # nothing moves
    wound_up = np.full((K, 3), 100.0)
    wound_up[0] = 0.1  # a first jump to the cap, then nothing: not oscillation
    assert np.isnan(high_frequency_share(wound_up))
    assert high_frequency_share(wound_up, last=1.0) > 0.5  # over the whole run the step would dominate


def test_delta_correlation_by_distance_is_zero_for_independent_states_and_falls_for_a_smooth_field():
    rng = np.random.default_rng(2)
    states = rng.uniform(-1, 1, (60, 2))
    independent = np.cumsum(rng.standard_normal((400, 60)), axis=0)
    _, corr = delta_correlation_by_distance(independent, states, bins=5)
    assert np.all(np.abs(corr) < 0.05)
    # every update moves λ by a bump centred at a random state: near states move together, far ones do not
    centres = rng.uniform(-1, 1, (400, 2))
    bumps = np.exp(-((states[None] - centres[:, None]) ** 2).sum(-1) / (2 * 0.3**2))
    smooth = np.cumsum(bumps, axis=0)
    dist, corr = delta_correlation_by_distance(smooth, states, bins=5)
    assert np.all(np.diff(dist) > 0)
    assert corr[0] > 0.5 and corr[1:].max() < 0.2  # near pairs move together, the rest do not
    wound_up = np.full((100, 60), 100.0)
    wound_up[0] = 0.1  # every state jumps to the cap at the first log, then stays: no swing to correlate
    assert np.isnan(delta_correlation_by_distance(wound_up, states)[1]).all()


def test_violation_runs_by_hand():
    flags = [0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1]
    assert violation_runs(flags, burst=3) == {"longest": 4, "bursts": 1, "burst_steps": 4}
    assert violation_runs(flags, burst=1) == {"longest": 4, "bursts": 3, "burst_steps": 7}
    assert violation_runs([0, 0, 0]) == {"longest": 0, "bursts": 0, "burst_steps": 0}
    assert violation_runs([1, 1]) == {"longest": 2, "bursts": 0, "burst_steps": 0}


def test_lagged_correlation_finds_the_delay():
    rng = np.random.default_rng(3)
    cause = rng.standard_normal(300)
    effect = np.r_[np.zeros(2), cause[:-2]] + 0.1 * rng.standard_normal(300)  # follows two logs later
    corr = lagged_correlation(cause, effect, max_lag=4)
    assert int(np.nanargmax(corr)) == 2 and corr[2] > 0.95 and abs(corr[0]) < 0.2
    short = lagged_correlation([np.nan, 1.0, 2.0, 4.0], [1.0, 0.9, 0.7, 0.7], max_lag=5)  # lags beyond the series
    assert len(short) == 6 and np.isnan(short[1:]).all()  # 2 pairs or fewer: undefined


def test_perturbation_response_by_hand():
    steps = np.arange(0, 1000, 100)  # logs at 0, 100, ..., 900; window [300, 500)
    distance = np.array([0.2, 0.3, 1.5, 5.0])  # in region radii
    near_path = np.array([1, 1, 1, 4, 6, 3, 2, 1.2, 1, 1], dtype=float)  # rises by 5, back to 1 at step 800
    history = np.stack([near_path, near_path, 1 + 0.5 * (near_path - 1), np.ones(10)], 1)
    out = perturbation_response(history, steps, distance, start=300, end=500, tolerance=0.05)
    assert out["rise_0-0.5"] == pytest.approx(5.0) and out["rise_1-2"] == pytest.approx(2.5)
    assert out["rise_2+"] == 0.0 and np.isnan(out["rise_0.5-1"])  # no state at 0.5-1 radii
    assert out["peak_near"] == pytest.approx(5.0)
    assert out["return_steps"] == 200  # |λ − 1| ≤ 0.05 × 5 first at step 700 (0.2), 200 steps after the window
    with pytest.raises(ValueError):
        perturbation_response(history[3:], steps[3:], distance, start=300, end=500)
    # against an unperturbed twin that drifts upwards by itself, only the difference counts
    drift = np.linspace(0.0, 3.0, 10)[:, None] * np.ones((1, 4))
    paired = perturbation_response(history + drift, steps, distance, start=300, end=500, tolerance=0.05,
                                   reference=np.ones((10, 4)) + drift)
    assert paired["rise_0-0.5"] == pytest.approx(5.0) and paired["rise_2+"] == pytest.approx(0.0)
    assert paired["return_steps"] == 200
    unpaired = perturbation_response(history + drift, steps, distance, start=300, end=500)
    assert unpaired["rise_2+"] > 1.5  # without the twin, the drift reads as a far-reaching rise
