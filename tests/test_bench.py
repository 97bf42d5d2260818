"""The benchmark grid: planning, skipping finished runs, moving interrupted ones aside, the report."""

import pytest

from statewise.bench import LocalExecutor, bench, plan, report
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
        def run(self, fn, specs):
            calls.extend(specs)
            return super().run(fn, specs)

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


def test_plan_rejects_bad_input_before_running(tmp_path):
    with pytest.raises(StatewiseError, match="unknown algorithm"):
        plan(["nope"], ["statewise/DoubleIntegrator-v0"], [0], 100, tmp_path)
    with pytest.raises(StatewiseError, match="no benchmark runs"):
        report(tmp_path / "empty")
