"""The risk monitor (statewise calibrate, agent.risk): isotonic regression, calibration error, censoring, files."""

import json

import numpy as np
import pytest

import statewise
from statewise.analysis.risk import (
    calibration_scores,
    expected_calibration_error,
    isotonic_fit,
    isotonic_predict,
    labelled_states,
)
from statewise.run.evaluate import Episode, monte_carlo_calibration_from


def minmax_isotonic(y: np.ndarray) -> np.ndarray:
    """The isotonic regression of y (x already sorted, distinct) by the min-max formula:
    f_i = max_{j ≤ i} min_{k ≥ i} mean(y[j..k])."""
    n = len(y)
    return np.array([max(min(y[j:k + 1].mean() for k in range(i, n)) for j in range(i + 1)) for i in range(n)])


def test_isotonic_fit_by_hand():
    lefts, values = isotonic_fit(np.array([4.0, 1.0, 3.0, 2.0]), np.array([1.0, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(lefts, [1.0, 2.0, 4.0])  # (2, 3) pooled: 1 then 0 violates monotonicity
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(isotonic_predict(lefts, values, [0.0, 1.0, 2.5, 3.9, 4.0, 9.0]),
                               [0.0, 0.0, 0.5, 0.5, 1.0, 1.0])


def test_isotonic_fit_matches_the_min_max_formula():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.permutation(30).astype(float)
        y = (rng.random(30) < x / 30).astype(float)
        lefts, values = isotonic_fit(x, y)
        np.testing.assert_allclose(isotonic_predict(lefts, values, np.sort(x)), minmax_isotonic(y[np.argsort(x)]))


def test_tied_scores_share_one_value():
    lefts, values = isotonic_fit(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(values, [0.5, 1.0])


def test_isotonic_fit_merges_equal_neighbouring_steps():
    """Long constant runs: 100 states at 0, 50 alternating 1, 0 (pooled in pairs to 0.5), 100 at 1. The minimal step
    function has 3 steps; before, every state and pair of a run kept a step of its own (225 steps, the same
    predictions)."""
    x = np.arange(250.0)
    y = np.r_[np.zeros(100), np.tile([1.0, 0.0], 25), np.ones(100)]
    rng = np.random.default_rng(1)
    perm = rng.permutation(250)
    lefts, values = isotonic_fit(x[perm], y[perm])
    np.testing.assert_array_equal(lefts, [0.0, 100.0, 150.0])
    np.testing.assert_array_equal(values, [0.0, 0.5, 1.0])
    probe = np.r_[x, x + 0.5, -3.0, 400.0]  # at and between the data, and beyond both ends
    expected = minmax_isotonic(y)[np.clip(np.floor(probe).astype(int), 0, 249)]
    np.testing.assert_array_equal(isotonic_predict(lefts, values, probe), expected)


def test_isotonic_fit_is_minimal_on_random_data_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(20):
        x = rng.integers(0, 40, 200).astype(float)  # many ties
        y = (rng.random(200) < (x > 20) * 0.5).astype(float)  # constant runs: 0 below 20, Bernoulli(0.5) above
        lefts, values = isotonic_fit(x, y)
        assert np.all(np.diff(values) > 0)  # no two neighbouring steps share a value
        xs = np.unique(x)
        means = np.array([y[x == v].mean() for v in xs])
        counts = np.array([np.sum(x == v) for v in xs])
        # the min-max formula, weighted by the ties' counts
        ref = np.array([max(min(np.dot(means[j:k + 1], counts[j:k + 1]) / counts[j:k + 1].sum()
                                for k in range(i, len(xs))) for j in range(i + 1)) for i in range(len(xs))])
        np.testing.assert_allclose(isotonic_predict(lefts, values, xs), ref, atol=1e-12)
        assert len(values) == len(np.unique(np.round(ref, 12)))


def test_expected_calibration_error_by_hand():
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 0, 0, 1, 1, 1])
    ece, mean_p, freq, count = expected_calibration_error(p, y)
    # bin [0, 0.1): 4 states, predicted 0.05, observed 0.25; bin [0.9, 1]: 2 states, 0.95 vs 1
    assert ece == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.05)
    np.testing.assert_allclose(count, [4, 2])


def test_censored_states_are_left_out():
    states = [np.array([float(t)]) for t in range(6)]
    violated = Episode(states=states, costs=[0, 0, 0, 1, 0, 0], truncated=True)
    clean = Episode(states=states, costs=[0] * 6, truncated=True)
    ended = Episode(states=states, costs=[0] * 6, truncated=False)  # terminated: the future is known
    obs, y = labelled_states([violated, clean, ended], horizon=3)
    # violated: t=0..3 see the violation within 3 steps; t=4, 5 have < 3 steps left and saw none -> unknown
    # clean: t=0..3 have 3 steps left, no violation; t=4, 5 unknown; ended: every state known
    np.testing.assert_array_equal(obs[:, 0], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y, [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def test_calibration_scores_at_risk_and_brier_skill_by_hand():
    p = np.array([0, 0, 0, 0, 0, 0, 0.005, 0.3, 0.3, 0.8])
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    got = calibration_scores(p, y)
    # ECE: [0, 0.1) 7 states, mean 0.005/7 vs 0; [0.3, 0.4) 2 states, 0.3 vs 0.5; [0.8, 0.9) 1 state, 0.8 vs 1
    assert got["ece"] == pytest.approx(0.005 / 10 + 2 / 10 * 0.2 + 1 / 10 * 0.2)
    # at risk (p >= 0.01): the 3 states 0.3, 0.3, 0.8 only
    assert got["at_risk_states"] == 3
    assert got["ece_at_risk"] == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.2)
    brier = (0.005 ** 2 + 0.3 ** 2 + 0.7 ** 2 + 0.2 ** 2) / 10
    assert got["brier"] == pytest.approx(brier)
    assert got["brier_skill"] == pytest.approx(1 - brier / (0.2 * 0.8))  # base rate 0.2: Brier 0.16
    np.testing.assert_array_equal(got["reliability"]["states"], [7, 2, 1])


def test_calibration_scores_undefined_without_risk_or_positives():
    got = calibration_scores(np.array([0.0, 0.005, 0.0]), np.array([0, 0, 0]))
    assert got["at_risk_states"] == 0 and np.isnan(got["ece_at_risk"])
    assert np.isnan(got["brier_skill"])  # base rate 0: predicting it is perfect, no skill can be measured
    assert got["ece"] == pytest.approx(0.005 / 3)


def test_risk_plot_shows_the_count_per_bin(tmp_path, monkeypatch):
    from statewise.analysis import calibrate as calibrate_module

    saved = {}
    monkeypatch.setattr(calibrate_module, "save_figure", lambda fig, path: saved.setdefault("fig", fig) and path)
    result = {"score": "lambda", "horizon": 50, "lefts": [0.0, 1.0], "values": [0.0, 0.5],
              "test": {"states": 1010, "ece": 0.002, "ece_at_risk": 0.15, "at_risk_states": 10, "brier": 0.01,
                       "brier_skill": 0.3,
                       "reliability": {"mean_predicted": [0.0, 0.35, 0.62], "observed": [0.001, 0.1, 0.9],
                                       "states": [1000, 7, 3]}}}
    calibrate_module._reliability_plot(tmp_path, result)
    ax = saved["fig"].axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["n=1000", "n=3", "n=7"]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "ECE 0.002" in legend and "ECE at risk (p ≥ 0.01, 10 states) 0.150" in legend
    assert "Brier skill 0.300" in legend


def test_training_time_calibration_is_censored_like_calibrate():
    """summary.json's mc_calibration (monte_carlo_calibration_from, the training-time path) labels states as
    statewise calibrate does: the last steps before a time limit without a violation in sight are left out."""
    states = [np.array([float(t)]) for t in range(6)]
    violated = Episode(states=states, costs=[0, 0, 0, 1, 0, 0], truncated=True)
    clean = Episode(states=states, costs=[0] * 6, truncated=True)
    ended = Episode(states=states, costs=[0] * 6, truncated=False)
    score = lambda obs: np.asarray(obs)[:, 0]  # noqa: E731
    mc = monte_carlo_calibration_from([violated, clean, ended], {"lambda": score}, horizon=3, bins=2)
    # labels as in test_censored_states_are_left_out: 14 known states, 3 positive; 4 censored
    assert mc["states"] == 14 and mc["censored_states"] == 4
    assert mc["positive_fraction"] == pytest.approx(3 / 14)
    obs, y = labelled_states([violated, clean, ended], horizon=3)
    from statewise.metrics import auroc
    assert mc["lambda_auroc"] == pytest.approx(auroc(obs[:, 0], y))
    assert sum(mc["lambda_reliability"]["states"]) == 14


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from conftest import tiny_config
    from statewise.analysis.calibrate import calibrate

    result = statewise.train(tiny_config(tmp_path_factory.mktemp("risk") / "run", steps=400), plots=False)
    return result.run_dir, calibrate(result.run_dir, episodes=6, test_episodes=6, horizon=20)


def test_calibrate_writes_a_monotone_monitor(calibrated):
    run, out = calibrated
    data = json.loads((run / "risk.json").read_text())
    assert data["score"] == "lambda" and data["horizon"] == 20
    assert np.all(np.diff(data["values"]) >= 0) and 0 <= min(data["values"]) <= max(data["values"]) <= 1
    assert data["test"]["states"] > 0 and 0 <= data["test"]["ece"] <= 1
    pos = data["test"]["positive_fraction"]
    if 0 < pos < 1:
        assert data["test"]["brier_skill"] == pytest.approx(1 - data["test"]["brier"] / (pos * (1 - pos)))
    assert sum(data["test"]["reliability"]["states"]) == data["test"]["states"]
    # the training-time check in summary.json counts every final-evaluation state as labelled or censored
    summary = json.loads((run / "summary.json").read_text())
    mc, final = summary["mc_calibration"], summary["final_eval"]
    assert mc["states"] + mc["censored_states"] == round(final["length"] * 3)  # tiny_config: 3 final episodes
    assert sum(mc["lambda_reliability"]["states"]) == mc["states"]
    assert (run / "plots" / "risk_reliability.png").stat().st_size > 1000
    agent = statewise.load(run)
    obs = np.random.default_rng(0).uniform(-4, 4, (64, 2)).astype(np.float32)
    risk, lam = agent.risk(obs), agent.multiplier(obs)
    assert risk.shape == (64,) and np.all((0 <= risk) & (risk <= 1))
    order = np.argsort(lam)
    assert np.all(np.diff(risk[order]) >= 0)  # a non-decreasing function of λ
    assert float(agent.risk(obs[0])) == pytest.approx(risk[0])


def test_risk_without_calibration_says_what_to_run(tmp_path, tiny):
    run = statewise.train(tiny(tmp_path / "run"), plots=False).run_dir
    with pytest.raises(statewise.StatewiseError, match="statewise calibrate"):
        statewise.load(run).risk(np.zeros(2, dtype=np.float32))


def test_calibrate_summary_counts_undefined_figures(tmp_path, capsys, monkeypatch):
    """Several runs of one variant: mean ± Student-t CI per figure; an AUROC that is undefined for a run (no state
    with a violation ahead) is counted as non-finite, never printed as 'nan ± nan'."""
    from statewise import Config
    from statewise.analysis import calibrate as calibrate_module
    from statewise.cli import main

    runs = []
    for seed in (0, 1, 2):
        run = tmp_path / f"sac-alam-s{seed}"
        run.mkdir()
        (run / "config.yaml").write_text(Config(seed=seed).to_yaml())
        runs.append(run)
    tests = {0: (0.01, 0.02, 0.9, 0.1, 0.1, 0.5), 1: (0.03, 0.04, float("nan"), 0.0, 0.2, 0.6),
             2: (0.02, 0.03, 0.7, 0.2, 0.3, 0.7)}

    def fake(run_dir, *args):
        ece, brier, auroc, pos, ece_at_risk, skill = tests[int(run_dir.name[-1])]
        return {"score": "lambda", "plot": "p.png", "fit": {"states": 10},
                "test": {"ece": ece, "brier": brier, "auroc": auroc, "positive_fraction": pos, "states": 10,
                         "ece_at_risk": ece_at_risk, "brier_skill": skill, "at_risk_threshold": 0.01,
                         "at_risk_states": 4}}

    monkeypatch.setattr(calibrate_module, "calibrate", fake)
    main(["calibrate", *map(str, runs)])
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    half = 4.303 * 0.01 / 3 ** 0.5  # t_{0.975, 2} · std / √3
    wide = 4.303 * 0.1 / 3 ** 0.5
    assert summary == (f"sac-alam (lambda), n=3: ECE 0.02 ± {half:.2g}, ECE at risk 0.2 ± {wide:.2g}, "
                       f"Brier 0.03 ± {half:.2g}, Brier skill 0.6 ± {wide:.2g}, "
                       f"AUROC 0.8 ± {12.71 * 0.1414 / 2 ** 0.5:.2g} [1 of 3 non-finite], "
                       f"positives 0.1 ± {4.303 * 0.1 / 3 ** 0.5:.2g}")
