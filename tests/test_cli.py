"""The command line: help, a successful run, and every error path (one line, exit code 2, nothing overwritten)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from statewise.cli import main

SMALL = ["--steps", "200", "--no-progress", "--set", "sac.hidden=[8,8]", "--set", "multiplier.hidden=[8,8]",
         "--set", "sac.start_steps=64", "--set", "sac.batch_size=32", "--set", "eval_every=100",
         "--set", "eval_episodes=1", "--set", "final_eval_episodes=2", "--set", "log_every=50"]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def expect_error(argv, capsys, *fragments):
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("statewise: error:")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_help_of_every_command(capsys):
    for argv, word in ((["--help"], "train"), (["eval", "--help"], "RUN_DIR"), (["plot", "--help"], "RUN_DIRS")):
        main(argv)  # returns normally: exit code 0
        assert word in capsys.readouterr().out


def test_train_help_names_algorithms(capsys):
    main(["train", "--help"])
    out = capsys.readouterr().out
    for algo in ("sac", "sac-lag", "sac-pid-lag", "sac-al", "fac", "sac-alam", "alam-no-qp", "alam-no-dt"):
        assert algo in out
    assert "DoubleIntegrator-v0" in out


def _drawn_figures(monkeypatch):
    """path -> what each figure saved by statewise.analysis.plots drew: per panel its title, its lines' (x, y) data
    and its images' arrays and extents (read before the figure is written and closed)."""
    import statewise.analysis.plots as plots

    drawn, original = {}, plots.save_figure

    def save_figure(fig, path):
        drawn[Path(path)] = [dict(title=ax.get_title(), lines=[line.get_xydata().copy() for line in ax.get_lines()],
                                  labels=[line.get_label() for line in ax.get_lines()],
                                  images=[(np.asarray(im.get_array()).copy(), im.get_extent()) for im in ax.images])
                             for ax in fig.axes if ax.get_title()]
        return original(fig, path)

    monkeypatch.setattr(plots, "save_figure", save_figure)
    return drawn


def _csv_columns(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: np.array([float(r[key]) if r[key] != "" else np.nan for r in rows]) for key in rows[0]}


def test_train_eval_plot_roundtrip(tmp_path, capsys, monkeypatch):
    """The learning curves show exactly the numbers in eval.csv and metrics.csv, the heat map λ of the saved agent
    on the task's plane (a grid of cell centres built here), whether drawn by train or by plot."""
    import statewise
    from statewise.analysis.plots import HEATMAP_N

    drawn = _drawn_figures(monkeypatch)
    run = tmp_path / "run"
    main(["train", "--algo", "sac-alam", "--env", "statewise/DoubleIntegrator-v0", "--seed", "1",
          "--run-dir", str(run), *SMALL])
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "lambda AUROC" in out
    main(["eval", str(run), "--episodes", "2"])
    out = capsys.readouterr().out
    assert "violation prob from feasible starts" in out
    main(["plot", str(run), str(run), "--out", str(tmp_path / "p")])
    assert set(drawn) == {run / "plots" / "learning_curves.png", run / "plots" / "lambda_heatmap.png",
                          tmp_path / "p" / "learning_curves.png", tmp_path / "p" / "lambda_heatmap.png"}
    assert all(path.is_file() for path in drawn)
    evals, train = _csv_columns(run / "eval.csv"), _csv_columns(run / "metrics.csv")
    assert evals["step"].tolist() == [100, 200] and train["step"].tolist() == [50, 100, 150, 200]
    for folder, n in ((run / "plots", 1), (tmp_path / "p", 2)):  # `plot run run`: the same run twice, n = 2
        ret, cost, lam = drawn[folder / "learning_curves.png"]
        assert ret["labels"] == [f"sac-alam (n={n})"]
        np.testing.assert_array_equal(ret["lines"][0], np.c_[evals["step"], evals["return"]])
        np.testing.assert_array_equal(cost["lines"][0], np.c_[evals["step"], evals["cost"]])
        assert set(cost["lines"][1][:, 1]) == {0.0}  # the cost limit: state-wise, no violation
        np.testing.assert_array_equal(lam["lines"][0], np.c_[train["step"], train["lam_probe_mean"]])
        assert np.isnan(train["lam_probe_mean"][0]) and np.isfinite(train["lam_probe_mean"][1:]).all()
    agent = statewise.load(run)
    centres = lambda lo, hi: lo + (np.arange(HEATMAP_N) + 0.5) * (hi - lo) / HEATMAP_N  # noqa: E731
    x, v = np.meshgrid(centres(-6.0, 6.0), centres(-4.0, 4.0))  # rows: velocity, columns: position
    expected = agent.multiplier(np.c_[x.ravel(), v.ravel()].astype(np.float32)).reshape(HEATMAP_N, HEATMAP_N)
    assert expected.std() > 0  # a λ map with structure, so a transposed or flipped image would differ
    for folder, n in ((run / "plots", 1), (tmp_path / "p", 2)):  # one panel per run given
        panels = drawn[folder / "lambda_heatmap.png"]
        assert len(panels) == n
        for panel in panels:
            ((image, extent),) = panel["images"]
            assert panel["title"] == "sac-alam s1, step 200" and tuple(extent) == (-6.0, 6.0, -4.0, 4.0)
            np.testing.assert_allclose(image, expected, rtol=1e-6)


@pytest.mark.parametrize("argv,fragments", [
    (["train", "--algo", "ppo"], ["unknown algorithm 'ppo'", "sac-alam"]),
    (["train", "--env", "NoSuchEnv-v9"], ["NoSuchEnv-v9"]),
    (["train", "--set", "sac.bach_size=3"], ["unknown config key 'sac.bach_size'", "sac.batch_size"]),
    (["train", "--set", "sac.batch_size=abc"], ["sac.batch_size"]),
    (["train", "--set", "nokey"], ["key=value"]),
    (["train", "--steps", "0"], ["steps must be positive"]),
    (["train", "--steps", "-5"], ["steps must be positive"]),
    (["train", "--set", "constraint.threshold=-1"], ["constraint.threshold"]),
    (["train", "--set", "constraint.threshold=500"], ["constraint.threshold"]),
    (["train", "--set", "multiplier.rho=0"], ["multiplier.rho must be positive"]),
    (["train", "--set", "multiplier.rho=nan"], ["multiplier.rho"]),
    (["train", "--set", "multiplier.rho=.nan"], ["multiplier.rho", "NaN"]),
    (["train", "--config", "/nonexistent/c.yaml"], ["config file not found"]),
    (["train", "--seed", "4294967296"], ["seed must be in"]),
    (["train", "--set", "multiplier.normalize_actor=flase"], ["normalize_actor"]),
    (["train", "--set", "threads=100000000"], ["threads"]),
    (["eval", "/nonexistent/run"], ["does not exist"]),
    (["plot", "/nonexistent/run"], ["does not exist"]),
])
def test_bad_input_one_line_exit_2(argv, fragments, capsys, tmp_path):
    expect_error([*argv, *(["--run-dir", str(tmp_path / "r")] if argv[0] == "train" else [])], capsys, *fragments)
    assert not (tmp_path / "r").exists()


def test_env_without_cost_refused_before_writing(tmp_path, capsys):
    expect_error(["train", "--env", "_toy_envs:ToyNoCost-v0", "--run-dir", str(tmp_path / "r"), *SMALL,
                  "--set", "max_episode_steps=20"], capsys,
                 "info['cost']")
    assert not (tmp_path / "r").exists()


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    expect_error(["train", "--run-dir", str(run), *SMALL], capsys, "already exists")
    assert (run / "keep.txt").read_text() == "precious" and len(list(run.iterdir())) == 1


def test_missing_and_corrupt_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), *SMALL])
    capsys.readouterr()
    good = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    expect_error(["eval", str(run)], capsys, "corrupt")
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    expect_error(["eval", str(run)], capsys, "corrupt")
    (run / "checkpoint.pt").unlink()
    expect_error(["eval", str(run)], capsys, "no checkpoint")
    expect_error(["eval", str(run), "--episodes", "0"], capsys, "--episodes")
    expect_error(["eval", str(run), "--seed", "-1"], capsys, "--seed")


def test_unusable_run_dir_and_config(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    expect_error(["train", "--run-dir", str(tmp_path / "file" / "run"), *SMALL], capsys, "run directory")
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe\x00bad")
    expect_error(["train", "--config", str(tmp_path / "bad.yaml")], capsys, "config file")


def test_bench_grid_file_cli_overrides_and_errors(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("envs: [statewise/DoubleIntegrator-v0]\nseeds: [5]\nsteps: 120\n"
                    "algos: [{label: fac-k2, algo: fac, set: [multiplier.steps=2]}]\n"
                    "set: {sac.hidden: [8, 8], multiplier.hidden: [8, 8], sac.start_steps: 64, sac.batch_size: 32,\n"
                    "      eval_every: 60, eval_episodes: 1, final_eval_episodes: 2, log_every: 30, probe_size: 16}\n")
    out = tmp_path / "out"
    main(["bench", "--grid", str(grid), "--out", str(out), "--workers", "1"])
    assert "report.md" in capsys.readouterr().out
    # command-line options override the file: --seeds/--first-seed replace its seed list
    main(["bench", "--grid", str(grid), "--out", str(out), "--workers", "1", "--first-seed", "6", "--seeds", "1"])
    capsys.readouterr()
    import yaml

    from statewise.metrics import mean_ci95

    task = out / "DoubleIntegrator-v0"
    assert sorted(p.name for p in task.iterdir() if (p / "summary.json").is_file()) == ["fac-k2-s5", "fac-k2-s6"]
    summaries, last_returns = {}, []
    for seed in (5, 6):  # every run has the settings of the file, and the seed of its command line
        run = task / f"fac-k2-s{seed}"
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert (cfg["seed"], cfg["steps"], cfg["label"], cfg["algo"]) == (seed, 120, "fac-k2", "fac")
        assert cfg["multiplier"]["steps"] == 2 and cfg["sac"]["hidden"] == [8, 8] and cfg["probe_size"] == 16
        summaries[seed] = json.loads((run / "summary.json").read_text())
        assert summaries[seed]["status"] == "ok" and summaries[seed]["seed"] == seed
        evals = _csv_columns(run / "eval.csv")
        assert evals["step"].tolist() == [60, 120]
        last_returns.append(evals["return"][-1])  # the last 10% of two evaluations: the last one
    # report.md: the per-run table holds each run's own summary, the headline the mean ± t-CI of both runs
    text = (out / "report.md").read_text()
    table = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")][1:]
             for line in text.splitlines() if line.startswith("| fac-k2-s")}
    for seed, summary in summaries.items():
        steps, final_return, final_cost, ratio = table[f"fac-k2-s{seed}"][:4]
        assert steps == "120" and final_return == f"{summary['final_eval']['return']:.3g}"
        assert final_cost == f"{summary['final_eval']['cost']:.3g}"
        assert ratio == f"{summary['train_violation_ratio']:.3g}"
    headline = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.split("### All metrics")[0]
                .splitlines() if line.startswith("| ")}
    mean, half = mean_ci95(last_returns)
    assert headline["return (last 10% of evals)"] == f"{mean:.3g} ± {half:.2g}"
    mean, half = mean_ci95([s["train_violation_ratio"] for s in summaries.values()])
    assert headline["training violation ratio"] == f"{mean:.3g} ± {half:.2g}"
    expect_error(["bench", "--out", str(out)], capsys, "--steps is required")
    expect_error(["bench", "--grid", str(tmp_path / "nope.yaml"), "--out", str(out)], capsys, "grid file not found")
    expect_error(["bench", "--grid", str(grid), "--out", str(out), "--workers", "0"], capsys, "--workers")
    expect_error(["bench", "--algos", "fac,nope", "--steps", "10", "--out", str(out)], capsys, "unknown algorithm")
