"""The risk monitor (statewise calibrate, agent.risk): isotonic regression, calibration error, censoring, files."""

import json

import numpy as np
import pytest

import statewise
from statewise.analysis.risk import expected_calibration_error, isotonic_fit, isotonic_predict, labelled_states
from statewise.run.evaluate import Episode


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
    tests = {0: (0.01, 0.02, 0.9, 0.1), 1: (0.03, 0.04, float("nan"), 0.0), 2: (0.02, 0.03, 0.7, 0.2)}

    def fake(run_dir, *args):
        ece, brier, auroc, pos = tests[int(run_dir.name[-1])]
        return {"score": "lambda", "plot": "p.png", "fit": {"states": 10},
                "test": {"ece": ece, "brier": brier, "auroc": auroc, "positive_fraction": pos, "states": 10}}

    monkeypatch.setattr(calibrate_module, "calibrate", fake)
    main(["calibrate", *map(str, runs)])
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    half = 4.303 * 0.01 / 3 ** 0.5  # t_{0.975, 2} · std / √3
    assert summary == (f"sac-alam (lambda), n=3: ECE 0.02 ± {half:.2g}, Brier 0.03 ± {half:.2g}, "
                       f"AUROC 0.8 ± {12.71 * 0.1414 / 2 ** 0.5:.2g} [1 of 3 non-finite], "
                       f"positives 0.1 ± {4.303 * 0.1 / 3 ** 0.5:.2g}")
