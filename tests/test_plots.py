"""What `statewise plot` draws: configurations compared (not averaged together), full x-ranges, one λ colour scale,
one figure per environment, and where the files go. Asserts on the figures' artists, not only on PNG files."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import statewise
from statewise.analysis import plots
from statewise.api import population_configs, train_population
from statewise.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """sac-alam with ρ = 1 (seeds 0, 1; 300 steps) and ρ = 10 (seed 0; 450 steps; ρ_λ = ρ follows), and one
    PointHazard run."""
    from conftest import TASKS, tiny_config

    root = tmp_path_factory.mktemp("runs")
    base = tiny_config(root / "unused")
    rho1 = train_population(population_configs(base, [0, 1], str(root / "rho1")), plots=False)
    cfg = tiny_config(root / "rho10", steps=450)
    cfg.multiplier.rho = 10.0
    rho10 = statewise.train(cfg, plots=False)
    hazard = statewise.train(tiny_config(root / "hazard", env=TASKS[1]), plots=False)
    return {"rho1": [r.run_dir for r in rho1], "rho10": rho10.run_dir, "hazard": hazard.run_dir, "root": root}


@pytest.fixture
def figures(monkeypatch):
    """The figures plots.py saves, kept open for inspection."""
    saved: dict[str, plt.Figure] = {}

    def keep(fig, path):
        saved[Path(path).name] = fig
        fig.canvas.draw()
        plots.runio.atomic_save(fig, path, saver=lambda f, fh: f.savefig(fh, format="png", dpi=40))
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    yield saved
    plt.close("all")


def test_configurations_are_named_by_what_differs(runs):
    configs = plots.configurations([*runs["rho1"], runs["rho10"]])
    assert [(c.label, len(c.runs)) for c in configs] == [("sac-alam ρ=1, ρ_λ=1", 2), ("sac-alam ρ=10, ρ_λ=10", 1)]
    # identical settings are one configuration, with no suffix
    assert [c.label for c in plots.configurations(runs["rho1"])] == ["sac-alam"]


def test_comparison_figure_lines_ranges_and_colour_scale(runs, figures, tmp_path):
    out = tmp_path / "cmp"
    paths = plots.plot_runs([*runs["rho1"], runs["rho10"]], out)
    assert [p.name for p in paths] == ["learning_curves.png", "lambda_heatmap.png"]
    assert all(p.stat().st_size > 1000 for p in paths)

    returns, cost, lam = figures["learning_curves.png"].axes[:3]
    lines = {line.get_label(): line for line in returns.get_lines()}
    assert set(lines) == {"sac-alam ρ=1, ρ_λ=1 (n=2)", "sac-alam ρ=10, ρ_λ=10 (n=1)"}
    # each configuration to its own end: the 450-step run is not cut to the 300-step ones
    assert lines["sac-alam ρ=10, ρ_λ=10 (n=1)"].get_xdata()[-1] == 450
    assert lines["sac-alam ρ=1, ρ_λ=1 (n=2)"].get_xdata()[-1] == 300
    # the band is drawn for the pooled seeds only
    assert len(returns.collections) == 1
    limit = [line for line in cost.get_lines() if line.get_label().startswith("cost limit")]
    assert len(limit) == 1 and limit[0].get_ydata()[0] == 0.0

    heat = figures["lambda_heatmap.png"]
    images = [im for ax in heat.axes for im in ax.get_images()]
    assert len(images) == 3
    assert len({im.get_clim() for im in images}) == 1  # one colour scale
    vmax = images[0].get_clim()[1]
    assert vmax == pytest.approx(max(float(np.max(im.get_array())) for im in images))
    titles = sorted(ax.get_title() for ax in heat.axes if ax.get_images())
    assert titles == ["sac-alam ρ=1, ρ_λ=1 s0, step 300", "sac-alam ρ=1, ρ_λ=1 s1, step 300",
                      "sac-alam ρ=10, ρ_λ=10 s0, step 450"]


def test_one_figure_per_environment(runs, figures, tmp_path):
    paths = plots.plot_runs([runs["rho1"][0], runs["hazard"]], tmp_path / "two")
    names = sorted(p.name for p in paths)
    assert "learning_curves-statewise-DoubleIntegrator-v0.png" in names
    assert "learning_curves-statewise-PointHazard-v0.png" in names
    titles = {figures[n]._suptitle.get_text() for n in names if n.startswith("learning_curves")}
    assert titles == {"statewise/DoubleIntegrator-v0", "statewise/PointHazard-v0"}


def test_few_evaluations_are_drawn_as_points(runs, figures, tmp_path):
    plots.learning_curves([runs["rho1"][0]], tmp_path)  # evaluations at 150 and 300 steps
    line = figures["learning_curves.png"].axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [150, 300] and line.get_marker() == "o"


def test_plot_cli_default_directory_is_named_and_reported(runs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    main(["plot", str(runs["rho1"][0]), str(runs["rho10"])])
    out = capsys.readouterr().out
    expected = runs["root"] / "plots"
    assert f"plots in {expected}:" in out
    assert (expected / "learning_curves.png").is_file()
    assert not (tmp_path / "plots").exists()  # never the working directory unasked


def test_api_writes_the_plots_the_cli_writes(tmp_path, tiny):
    with_plots = statewise.train(tiny(tmp_path / "a"))
    assert sorted(p.name for p in with_plots.plots) == ["lambda_heatmap.png", "learning_curves.png"]
    assert all((tmp_path / "a" / "plots" / p.name).is_file() for p in with_plots.plots)
    without = statewise.train(tiny(tmp_path / "b"), plots=False)
    assert without.plots == [] and not (tmp_path / "b" / "plots").exists()


def seed_curves():
    """Two seeds' reliability entries (as summary.json holds them, 4 quantile bins) from states whose scores are tied
    within each bin: seed A has 60 states at λ = 0, so its ties merge into one bin and it has 3 bins; seed B has 4."""
    from statewise.run.evaluate import reliability_entry

    a_scores = np.r_[np.zeros(60), np.full(20, 2.0), np.full(20, 4.0)]
    a_labels = np.r_[np.zeros(60), np.tile([0.0, 1.0], 10), np.ones(20)]
    b_scores = np.repeat([0.0, 1.0, 3.0, 5.0], 25)
    b_labels = np.r_[np.zeros(25), np.ones(5), np.zeros(20), np.ones(15), np.zeros(10), np.ones(25)]
    a, b = reliability_entry(a_scores, a_labels, 4), reliability_entry(b_scores, b_labels, 4)
    return a, b, np.r_[a_scores, b_scores], np.r_[a_labels, b_labels]


def test_seed_reliability_entries_count_their_bins():
    a, b, _, _ = seed_curves()
    assert a == {"mean_score": [0.0, 2.0, 4.0], "violation_freq": [0.0, 0.5, 1.0], "states": [60, 20, 20]}
    assert b["mean_score"] == [0.0, 1.0, 3.0, 5.0] and b["states"] == [25, 25, 25, 25]
    np.testing.assert_allclose(b["violation_freq"], [0.0, 0.2, 0.6, 1.0])


def test_pooled_reliability_aligns_seeds_by_value():
    """Pooling the seeds' bins by score gives the curve of the pooled states: (0, 0) for the 85 states at 0, (1, 0.2)
    for 25, then 2 and 3 together (45 states, 25 positive), then 4 and 5 (45, all positive). Lining the bins up by
    position would average A's λ = 2 bin with B's λ = 1 bin and drop B's highest bin."""
    from statewise.metrics import reliability

    a, b, scores, labels = seed_curves()
    quantile, mean_score, freq, count = plots.pooled_reliability([a, b], bins=4)
    np.testing.assert_array_equal(count, [85, 25, 45, 45])
    np.testing.assert_allclose(mean_score, [0.0, 1.0, 115 / 45, 205 / 45])
    np.testing.assert_allclose(freq, [0.0, 0.2, 25 / 45, 1.0])
    np.testing.assert_allclose(quantile, [42.5 / 200, 97.5 / 200, 132.5 / 200, 177.5 / 200])
    exact_score, exact_freq = reliability(scores, labels, bins=4)  # the seeds' raw states pooled
    np.testing.assert_allclose(mean_score, exact_score)
    np.testing.assert_allclose(freq, exact_freq)


def test_reliability_figure_draws_the_pooled_curve(tmp_path, figures):
    from statewise.run import runio

    a, b, _, _ = seed_curves()
    dirs = []
    for seed, curve in enumerate((a, b)):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        mc = {"horizon": 50, "states": sum(curve["states"]), "bins": 4, "lambda_reliability": curve,
              "cost_value_reliability": curve}
        runio.write_json(d / runio.SUMMARY_FILE, {"algo": "sac-alam", "label": "sac-alam", "mc_calibration": mc})
        dirs.append(d)
    plots.reliability_curves(dirs, tmp_path)
    ax = figures["reliability.png"].axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("sac-alam")]
    assert line.get_label() == "sac-alam (n=2)"
    np.testing.assert_allclose(line.get_xdata(), [42.5 / 200, 97.5 / 200, 132.5 / 200, 177.5 / 200])
    np.testing.assert_allclose(line.get_ydata(), [0.0, 0.2, 25 / 45, 1.0])
