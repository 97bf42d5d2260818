"""statewise bench on Ray (a local Ray with 2 CPUs): the same run directories and report as the local executor; a work
item that raises is reported with its runs while the rest finish; nothing is left behind."""

import os
import re
import time
from pathlib import Path

import pytest

from statewise.analysis.report import report
from statewise.grid.execution import GridIncomplete, LocalExecutor, bench
from statewise.grid.plan import plan

pytestmark = pytest.mark.ray

TESTS = Path(__file__).resolve().parent
TINY = ("sac.hidden=[8,8]", "multiplier.hidden=[8,8]", "sac.batch_size=32", "sac.start_steps=64", "eval_every=100",
        "eval_episodes=1", "final_eval_episodes=2", "log_every=50", "probe_size=16", "compile=false")


def _comparable(text: str) -> list[str]:
    """A report's lines less those with timings, the grid's own path and the per-run rows (which hold timings)."""
    skip = ("wall time", "env steps/s", "# statewise benchmark report", "![")
    return [line for line in text.splitlines()
            if not any(s in line for s in skip) and not re.match(r"\| \S+-s\d+ \|", line)]


def _eval_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/eval.csv"))}


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return home


def test_ray_grid_equals_local_grid_and_leaves_nothing_behind(tmp_path, isolated_home):
    from statewise.grid.ray_executor import RayExecutor

    timings = {}
    for name, make in (("local", lambda out: LocalExecutor(2)), ("ray", lambda out: RayExecutor(out, workers=2))):
        out = tmp_path / name
        specs = plan(["sac-lag", "sac-alam"], ["statewise/DoubleIntegrator-v0"], [0, 1], 200, out, overrides=TINY)
        start = time.perf_counter()
        bench(specs, make(out), progress=False)
        timings[name] = time.perf_counter() - start
        report(out)
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert _eval_files(local) == _eval_files(ray_out) and len(_eval_files(local)) == 4
    for run in ("sac-lag-s0", "sac-alam-s1"):
        name = f"DoubleIntegrator-v0/{run}/probe.npz"
        assert (local / name).read_bytes() == (ray_out / name).read_bytes()
    assert _comparable((local / "report.md").read_text()) == _comparable((ray_out / "report.md").read_text())
    # no auth token in the home directory, no session files, no marker files in the grid
    assert not (isolated_home / ".ray").exists() and not list(isolated_home.rglob("*auth_token*"))
    assert not list(ray_out.glob(".statewise-shared-*"))
    import ray

    assert not ray.is_initialized()
    print(f"tiny grid (4 runs, 200 steps): local pool {timings['local']:.1f} s, ray {timings['ray']:.1f} s")


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_work_item_that_raises_is_reported_and_the_rest_finish(tmp_path, isolated_home, engine):
    import _failing_env  # noqa: F401 - registers CrashingAtStart-v0 here (workers import it from the env id)
    from statewise.grid.ray_executor import RayExecutor

    out = tmp_path / "grid"
    specs = plan(["sac-lag"], ["statewise/DoubleIntegrator-v0", "_failing_env:CrashingAtStart-v0"], [0], 200, out,
                 overrides=TINY)
    executor = RayExecutor(out, workers=2) if engine == "ray" else LocalExecutor(2)
    with pytest.raises(GridIncomplete) as info:
        bench(specs, executor, progress=False)
    assert len(info.value.failures) == 1
    group, error = info.value.failures[0]
    assert group.specs[0].env == "_failing_env:CrashingAtStart-v0"
    assert "the simulator crashed" in str(info.value)
    assert "sac-lag on _failing_env:CrashingAtStart-v0, seed(s) 0" in str(info.value)
    assert [s["env"] for s in info.value.summaries] == ["statewise/DoubleIntegrator-v0"]
    assert (out / "DoubleIntegrator-v0" / "sac-lag-s0" / "summary.json").is_file()


def test_cli_without_ray_or_with_a_bad_address_says_so_in_one_line(tmp_path, isolated_home, capsys, monkeypatch):
    from statewise.cli import main

    argv = ["bench", "--executor", "ray", "--steps", "100", "--algos", "sac-lag", "--seeds", "1", "--out",
            str(tmp_path / "g")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--address", "127.0.0.1:1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot join the Ray cluster at 127.0.0.1:1" in err[0]
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    from statewise.grid.ray_executor import RAY_INSTALL

    assert f"needs Ray, which is not installed: {RAY_INSTALL}" in capsys.readouterr().err


class _DiesOnce:
    """A work function whose first attempt kills its worker process (a lost node, as far as the task can tell)."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __call__(self, item):
        if not self.flag.exists():
            self.flag.write_text("died once")
            os._exit(1)
        return item * 10


def test_a_task_whose_worker_dies_is_retried_and_one_asking_too_much_fails_at_once(tmp_path, isolated_home):
    from statewise.errors import StatewiseError
    from statewise.grid.ray_executor import RayExecutor

    class NeedsGPU:
        def resources(self):
            return {"num_cpus": 1, "num_gpus": 1}

    gpu_item = NeedsGPU()
    results = dict(RayExecutor(tmp_path, workers=2).run(_DiesOnce(tmp_path / "flag"), [1, 2]))
    assert results == {1: 10, 2: 20}  # the worker that died was replaced and its task ran again
    results = list(RayExecutor(tmp_path, workers=2).run(lambda item: "ran", [gpu_item]))
    assert len(results) == 1 and isinstance(results[0][1], StatewiseError)
    assert "needs 1 GPU, more than the Ray cluster has (CPU 2, GPU 0)" in str(results[0][1])
