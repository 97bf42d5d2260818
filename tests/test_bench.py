"""The benchmark grid: planning, skipping finished runs, moving interrupted ones aside, the report."""

import pytest

from statewise.bench import LocalExecutor, bench, load_grid, plan, report
from statewise.errors import StatewiseError


TINY = ("sac.hidden=[8,8]", "multiplier.hidden=[8,8]", "sac.batch_size=32", "sac.start_steps=64",
        "eval_every=50", "eval_episodes=1", "final_eval_episodes=2", "log_every=25", "probe_size=16")


def test_grid_runs_skips_and_reports(tmp_path):
    out = tmp_path / "grid"
    specs = plan(["fac", "sac-alam"], ["statewise/DoubleIntegrator-v0"], [0, 1], 150, out, overrides=TINY)
    assert len(specs) == 4 and len({s.run_dir for s in specs}) == 4
    summaries = bench(specs, LocalExecutor(1), progress=False)
    assert sorted((s["algo"], s["seed"]) for s in summaries) == [("fac", 0), ("fac", 1), ("sac-alam", 0),
                                                                  ("sac-alam", 1)]
    # an interrupted run: its directory exists without summary.json -> moved aside and rerun
    victim = out / "DoubleIntegrator-v0" / "fac-s1"
    (victim / "summary.json").unlink()
    calls = []

    class Recording(LocalExecutor):
        def run(self, fn, groups):
            calls.extend(spec for group in groups for spec in group)
            return super().run(fn, groups)

    again = bench(specs, Recording(1), progress=False)
    assert [s.run_dir for s in calls] == [str(victim)] and len(again) == 4
    assert list(victim.parent.glob("fac-s1.interrupted-*"))
    path = report(out)
    text = path.read_text()
    assert "| metric | fac | sac-alam |" in text and "lambda auroc" in text and "λ total variation" in text
    assert (out / "DoubleIntegrator-v0" / "learning_curves.png").is_file()
    assert (out / "DoubleIntegrator-v0" / "lambda_over_training.png").stat().st_size > 1000
    assert "lambda_over_training.png" in text and "reliability.png" in text
    assert (out / "DoubleIntegrator-v0" / "reliability.png").is_file()
    # the per-seed numbers behind the means: one row per run with its final evaluation
    import json
    fe = json.loads((out / "DoubleIntegrator-v0" / "fac-s0" / "summary.json").read_text())["final_eval"]
    assert f"| fac-s0 | 150 | {fe['return']:.3g} | {fe['cost']:.3g} |" in text


def test_plan_rejects_bad_input_before_running(tmp_path):
    with pytest.raises(StatewiseError, match="unknown algorithm"):
        plan(["nope"], ["statewise/DoubleIntegrator-v0"], [0], 100, tmp_path)
    with pytest.raises(StatewiseError, match="no benchmark runs"):
        report(tmp_path / "empty")


def test_labelled_variants_get_their_own_dirs_overrides_and_report_columns(tmp_path):
    out = tmp_path / "grid"
    variants = ["fac", {"label": "fac-fast", "algo": "fac", "set": ["multiplier.lr=1e-3"]},
                {"label": "sac-alam", "algo": "sac-alam"}, "alam-no-qp", "alam-no-dt"]
    specs = plan(variants, ["statewise/DoubleIntegrator-v0"], [3], 150, out, overrides=TINY)
    by_dir = {s.run_dir.split("/")[-1]: s for s in specs}
    assert sorted(by_dir) == ["alam-no-dt-s3", "alam-no-qp-s3", "fac-fast-s3", "fac-s3", "sac-alam-s3"]
    fast, plain = by_dir["fac-fast-s3"].build(), by_dir["fac-s3"].build()
    assert (fast.label, fast.algo, fast.multiplier.lr) == ("fac-fast", "fac", 1e-3)
    assert (plain.label, plain.multiplier.lr) == ("fac", 3e-5)
    bench(specs, LocalExecutor(1), progress=False)
    text = report(out).read_text()
    header = "| metric | fac | fac-fast | sac-alam | alam-no-qp | alam-no-dt |"
    assert text.count(header) == 2  # headline and all-metrics tables
    assert "### Ablation" in text and "| training violation ratio | dual ascent |" in text
    assert "| fac-fast-s3 | 150 |" in text  # speed table: one row per run


def test_grid_file_and_bad_grids(tmp_path):
    cfg = tmp_path / "base.yaml"
    cfg.write_text("sac:\n  hidden: [8, 8]\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text("config: base.yaml\nseeds: [7, 8]\nsteps: 100\n"
                    "algos: [fac, {label: fac-k5, algo: fac, set: [multiplier.steps=5]}]\n")
    data = load_grid(grid)
    assert data["config"] == str(cfg.resolve()) and data["seeds"] == [7, 8]
    specs = plan(data["algos"], ["statewise/DoubleIntegrator-v0"], data["seeds"], data["steps"], tmp_path / "o",
                 data["config"])
    assert [s.build().multiplier.steps for s in specs] == [1, 1, 5, 5]
    assert specs[0].build().sac.hidden == [8, 8]
    for text, match in (("seeds: 3\n", "seeds must be a list"), ("algo: [fac]\n", "unknown key"),
                        ("algos: [{label: x}]\n", "mapping with 'algo'"), ("algos: fac\n", "algos must be a list")):
        grid.write_text(text)
        with pytest.raises(StatewiseError, match=match):
            load_grid(grid)
    with pytest.raises(StatewiseError, match="grid file not found"):
        load_grid(tmp_path / "missing.yaml")
    with pytest.raises(StatewiseError, match="labels must be unique"):
        plan(["fac", {"label": "fac", "algo": "sac-alam"}], ["statewise/DoubleIntegrator-v0"], [0], 10, tmp_path)
    with pytest.raises(StatewiseError, match="label must be"):
        plan([{"label": "a/b", "algo": "fac"}], ["statewise/DoubleIntegrator-v0"], [0], 10, tmp_path)


def test_report_cells_count_non_finite_runs_and_use_student_t():
    from statewise.bench import _cell

    # three seeds, one diverged: its NaN is counted and shown, the mean is over the finite two (t with 1 dof)
    cell = _cell([1.0, float("nan"), 3.0])
    assert cell == f"2 ± {12.706 * 2 ** 0.5 / 2 ** 0.5:.2g} [1 of 3 non-finite]"
    assert _cell([float("inf"), float("nan")]) == "– [2 of 2 non-finite]"
    assert _cell([1.0, 2.0, 3.0]) == f"2 ± {4.303 / 3 ** 0.5:.2g}"
    # not measured (None) is not the same as measured and non-finite
    assert _cell([None, None]) == "–"
    assert _cell([2.0, None, float("nan")]) == "2 [1 of 3 non-finite, 1 of 3 not measured]"


def test_ablation_table_leaves_out_metrics_no_run_measured():
    from statewise.bench import ABLATION, _ablation_table

    rows = {label: [{"return (last 10% of evals)": 1.0}, {"return (last 10% of evals)": 2.0}]
            for label in ABLATION.values()}
    table = "\n".join(_ablation_table(rows))
    assert "return (last 10% of evals)" in table and "lambda auroc" not in table
