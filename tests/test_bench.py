"""The benchmark grid: planning, skipping finished runs, moving interrupted ones aside, the report."""

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statewise.errors import StatewiseError
from statewise.grid import LocalExecutor, bench, load_grid, plan, report

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
            calls.extend(spec for group in groups for spec in group.specs)
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
    from statewise.analysis.report import ci_cell

    # three seeds, one diverged: its NaN is counted and shown, the mean is over the finite two (t with 1 dof)
    cell = ci_cell([1.0, float("nan"), 3.0])
    assert cell == f"2 ± {12.706 * 2 ** 0.5 / 2 ** 0.5:.2g} [1 of 3 non-finite]"
    assert ci_cell([float("inf"), float("nan")]) == "– [2 of 2 non-finite]"
    assert ci_cell([1.0, 2.0, 3.0]) == f"2 ± {4.303 / 3 ** 0.5:.2g}"
    # not measured (None) is not the same as measured and non-finite
    assert ci_cell([None, None]) == "–"
    assert ci_cell([2.0, None, float("nan")]) == "2 [1 of 3 non-finite, 1 of 3 not measured]"


def test_ablation_table_leaves_out_metrics_no_run_measured():
    from statewise.grid import ABLATION, ablation_table

    rows = {label: [{"return (last 10% of evals)": 1.0}, {"return (last 10% of evals)": 2.0}]
            for label in ABLATION.values()}
    table = "\n".join(ablation_table(rows))
    assert "return (last 10% of evals)" in table and "lambda auroc" not in table


def test_a_run_trained_with_other_settings_is_never_reused(tmp_path):
    out = tmp_path / "grid"
    bench(plan(["sac-lag"], ["statewise/DoubleIntegrator-v0"], [0], 150, out, overrides=TINY), LocalExecutor(1),
          progress=False)
    longer = plan(["sac-lag"], ["statewise/DoubleIntegrator-v0"], [0], 200, out, overrides=TINY)
    with pytest.raises(StatewiseError, match=r"other settings \(steps: 150 there, 200 asked\).*--redo"):
        bench(longer, LocalExecutor(1), progress=False)
    other_lr = plan(["sac-lag"], ["statewise/DoubleIntegrator-v0"], [0], 150, out,
                    overrides=TINY + ("sac.lr_actor=1e-3",))
    with pytest.raises(StatewiseError, match="sac.lr_actor"):
        bench(other_lr, LocalExecutor(1), progress=False)
    summaries = bench(longer, LocalExecutor(1), progress=False, redo=True)
    assert summaries[0]["steps"] == 200
    assert list((out / "DoubleIntegrator-v0").glob("sac-lag-s0.stale-*"))
    assert "n per variant: sac-lag 1)" in report(out).read_text()  # the stale copy is not counted
    # threads say how a run is computed (bench sets them from the spare cores), not what: they do not make it stale
    threads = [dataclasses.replace(spec, threads=2) for spec in longer]
    assert bench(threads, LocalExecutor(1), progress=False)[0]["steps"] == 200


def test_bench_resumes_an_interrupted_population(tmp_path):
    """A grid cell killed inside a checkpoint write is resumed (not restarted) and ends with the files of a grid that
    was never interrupted."""
    overrides = TINY + ("checkpoint_every=50", "compile=false", "threads=1")
    specs = plan(["sac-alam"], ["statewise/DoubleIntegrator-v0"], [0, 1], 300, tmp_path / "a", overrides=overrides)
    bench(specs, LocalExecutor(1), progress=False)
    victim = plan(["sac-alam"], ["statewise/DoubleIntegrator-v0"], [0, 1], 300, tmp_path / "b", overrides=overrides)
    code = ("from pathlib import Path; from statewise.grid import bench, plan, LocalExecutor; "
            f"bench(plan(['sac-alam'], ['statewise/DoubleIntegrator-v0'], [0, 1], 300, Path({str(tmp_path / 'b')!r}), "
            f"overrides={overrides!r}), LocalExecutor(1), progress=False)")
    died = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          env={**os.environ, "STATEWISE_TEST_KILL_IN_SAVE": "5"})
    assert died.returncode == -9
    calls = []

    class Recording(LocalExecutor):
        def run(self, fn, groups):
            calls.extend(groups)
            return super().run(fn, groups)

    bench(victim, Recording(1), progress=False)
    assert len(calls) == 1 and calls[0].resume and len(calls[0].specs) == 2
    for name in ("sac-alam-s0", "sac-alam-s1"):
        for f in ("eval.csv", "probe.npz"):
            a = tmp_path / "a" / "DoubleIntegrator-v0" / name / f
            assert a.read_bytes() == (tmp_path / "b" / "DoubleIntegrator-v0" / name / f).read_bytes(), (name, f)
    assert not list((tmp_path / "b" / "DoubleIntegrator-v0").glob("*.interrupted-*"))


def test_a_second_bench_on_the_same_grid_is_refused(tmp_path, capsys):
    from statewise.cli import main
    from statewise.grid import GridLock

    with GridLock(tmp_path / "grid"):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "--steps", "100", "--out", str(tmp_path / "grid"), "--algos", "sac-lag", "--seeds", "1"])
    assert exit_info.value.code == 2
    assert "another statewise bench is running" in capsys.readouterr().err
    assert not (tmp_path / "grid" / "statewise" ).exists() and not list((tmp_path / "grid").glob("*/*-s0"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how, wait_for", [("SIGKILL", 2), ("SIGTERM", 2), ("SIGTERM", 1), ("SIGINT", 1)],
                         ids=["SIGKILL", "SIGTERM", "SIGTERM-while-spawning", "SIGINT-while-spawning"])
def test_workers_stop_when_bench_is_killed(tmp_path, how, wait_for):
    """kill -9, SIGTERM or Ctrl-C of the bench parent: every worker is gone within seconds, the parent exits (also when
    the signal lands while the pool is still spawning its workers), and a restart is not refused."""
    import signal

    cmd = [sys.executable, "-m", "statewise.cli", "bench", "--steps", "100000", "--workers", "2", "--no-populations",
           "--algos", "sac-lag", "--seeds", "2", "--out", str(tmp_path / "grid")]
    # a shell that starts a job in the background makes it ignore SIGINT (CI does): undo that for the Ctrl-C case
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    children: list[int] = []
    deadline = time.time() + 60
    while time.time() < deadline and len(children) < wait_for:
        time.sleep(0.02 if wait_for == 1 else 0.2)
        children = _children(parent.pid)
    assert len(children) >= wait_for, "the workers did not start"
    parent.send_signal(getattr(signal, how))
    parent.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)
    from statewise.grid import GridLock

    with GridLock(tmp_path / "grid"):  # free again: no survivor holds it
        pass


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker kills itself with SIGKILL")
def test_a_worker_that_dies_fails_only_its_own_item(tmp_path):
    """A worker process killed outright (SIGKILL, as by the OS for memory) fails its own work item with one line that
    names the run; the item running beside it and the one still queued finish."""
    from statewise.grid.execution import GridIncomplete

    out = tmp_path / "grid"
    # the dying item first, so that the other two are running or queued when its worker dies
    specs = plan(["sac-lag"], ["_failing_env:Dying-v0", "statewise/DoubleIntegrator-v0"], [0, 1], 100, out,
                 overrides=TINY)
    specs = [s for s in specs if not (s.env.startswith("_failing_env") and s.seed == 1)]
    with pytest.raises(GridIncomplete) as info:
        bench(specs, LocalExecutor(2), progress=False, populations=False)
    assert [group.specs[0].env for group, _ in info.value.failures] == ["_failing_env:Dying-v0"]
    message = str(info.value)
    assert "sac-lag on _failing_env:Dying-v0, seed(s) 0" in message and "worker process" in message
    assert "SIGKILL" in message and len(message.splitlines()) == 1
    assert sorted((s["env"], s["seed"]) for s in info.value.summaries) == [("statewise/DoubleIntegrator-v0", 0),
                                                                           ("statewise/DoubleIntegrator-v0", 1)]


def test_bench_exits_1_when_a_run_diverged(tmp_path, capsys):
    """A grid in which a run diverged keeps its work (the report is written) but exits 1 with one line that counts
    the runs that failed."""
    from statewise.cli import main

    out = tmp_path / "grid"
    args = ["bench", "--algos", "sac-lag", "--envs", "statewise/DoubleIntegrator-v0,_failing_env:NaNReward-v0",
            "--seeds", "1", "--steps", "150", "--workers", "1", "--out", str(out)] + \
        [arg for override in TINY for arg in ("--set", override)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == 1, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("statewise: error:")]
    assert len(errors) == 1 and "1 of 2 runs failed" in errors[0] and "1 diverged" in errors[0], captured.err
    assert (out / "report.md").is_file() and str(out / "report.md") in captured.out
    assert (out / "DoubleIntegrator-v0" / "sac-lag-s0" / "summary.json").is_file()


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    """A finished grid of two runs (copy it before changing it)."""
    out = tmp_path_factory.mktemp("small") / "grid"
    bench(plan(["sac-lag"], ["statewise/DoubleIntegrator-v0"], [0, 1], 150, out, overrides=TINY), LocalExecutor(1),
          progress=False)
    return out


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_counts_a_run_without_eval_csv_as_unreadable(small_grid, tmp_path, capsys):
    """A finished run whose eval.csv is missing is counted (non-finite in every metric) and listed, with a warning,
    instead of a traceback."""
    from statewise.cli import main

    out = tmp_path / "grid"
    shutil.copytree(small_grid, out)
    (out / "DoubleIntegrator-v0" / "sac-lag-s1" / "eval.csv").unlink()
    main(["report", str(out)])
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("statewise: warning: ") and "sac-lag-s1" in warnings[0]
    assert "eval.csv" in warnings[0]
    text = (out / "report.md").read_text()
    assert "1 of 2 runs unreadable" in text and "sac-lag-s1: eval.csv" in text
    assert "[1 of 2 non-finite]" in text and "n per variant: sac-lag 2)" in text


def _refused(argv, capsys, fragment):
    from statewise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("statewise: error: "), captured.err
    assert fragment in lines[0], lines[0]


def test_report_refuses_a_folder_without_finished_runs_and_a_single_run(small_grid, tmp_path, capsys):
    """No finished run (e.g. a grid still training): refused, nothing written. A single run's directory: refused with
    a hint that report reads a directory of runs, nothing written into the run."""
    unfinished = tmp_path / "unfinished"
    shutil.copytree(small_grid, unfinished)
    for summary in unfinished.rglob("summary.json"):
        summary.unlink()
    before = _files(unfinished)
    _refused(["report", str(unfinished)], capsys, "no finished run")
    assert _files(unfinished) == before and not (unfinished / "report.md").exists()

    run = tmp_path / "grid" / "DoubleIntegrator-v0" / "sac-lag-s0"
    shutil.copytree(small_grid / "DoubleIntegrator-v0" / "sac-lag-s0", run)
    before = _files(run)
    _refused(["report", str(run)], capsys, "directory of runs")
    assert _files(run) == before and not (run / "report.md").exists()
