"""Exact resume: a run killed with SIGKILL at random points (one of them inside a checkpoint write) and continued with
``statewise train --resume`` writes the same eval.csv, probe.npz, checkpoint and metrics (less wall-clock columns)
as a run that was never interrupted; with several environments and with populations too."""

import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from statewise.cli import main

TIMING = {"wall_time_s", "env_steps_per_s", "compile_s"}
CLOCK_COLUMNS = {"time_s", "env_steps_per_s", "updates_per_s"}
ARGS = ["--steps", "1500", "--set", "sac.start_steps=200", "--set", "checkpoint_every=150", "--set", "log_every=50",
        "--set", "eval_every=300", "--set", "eval_episodes=2", "--set", "final_eval_episodes=3", "--set",
        "probe_size=32", "--set", "sac.hidden=[16,16]", "--set", "multiplier.hidden=[16,16]", "--set",
        "sac.batch_size=32", "--set", "threads=1", "--set", "compile=false", "--no-progress"]
CLI = [sys.executable, "-m", "statewise.cli", "train"]


def _resume_step(run: Path) -> int:
    path = run / "resume.pt"
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["step"])
    except Exception:  # noqa: BLE001 - absent or being replaced
        return -1


def _runs(root: Path) -> list[Path]:
    return [root] if (root / "config.yaml").is_file() else sorted(d for d in root.iterdir() if d.is_dir()
                                                                   and d.name != "plots")


def _kill_after_progress(cmd: list[str], watch: list[Path], rng: random.Random, env=None) -> bool:
    """Start cmd, wait until it has written a newer resume state than it started from, then SIGKILL it after a random
    delay. Returns False if the process finished first."""
    before = max(_resume_step(r) for r in watch)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if max(_resume_step(r) for r in watch) > before:
            time.sleep(rng.uniform(0.0, 0.6))
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        return False
    proc.kill()
    proc.wait()
    return True


def _same(reference: Path, resumed: Path) -> None:
    for name in ("eval.csv", "probe.npz"):
        assert (reference / name).read_bytes() == (resumed / name).read_bytes(), name
    rows = [[{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in csv.DictReader(open(d / "metrics.csv"))]
            for d in (reference, resumed)]
    assert rows[0] == rows[1]
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (reference, resumed))
    assert ca["meta"] == cb["meta"]
    for key in ca["agent"]:
        assert torch.equal(ca["agent"][key], cb["agent"][key]), key
    for name, state in ca["optimizers"].items():
        for field in ("exp_avg", "exp_avg_sq"):
            for a, b in zip(state[field], cb["optimizers"][name][field], strict=True):
                assert torch.equal(a, b), (name, field)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (reference, resumed))
    assert {k: v for k, v in sa.items() if k not in TIMING} == {k: v for k, v in sb.items() if k not in TIMING}
    assert not list(resumed.glob(".*.tmp")) and not (resumed / "resume.pt").exists()  # finished: nothing left over


@pytest.mark.parametrize("extra,kills,kill_save", [([], 5, 2), (["--num-envs", "2"], 2, 2), (["--seeds", "0,1"], 2, 3),
                                                   (["--set", "constraint.signal=cbf"], 1, 2),
                                                   (["--env", "statewise/DoubleIntegratorSpeedLimit-v0", "--set",
                                                     "constraint.costs=[wall,speed]"], 1, 2)],
                         # cbf: h(s) is resumed too; two constraints: their costs in the buffer and their counts
                         ids=["single", "num-envs-2", "population", "cbf-signal", "two-constraints"])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, extra, kills, kill_save):
    rng = random.Random(len(extra) * 7 + kills)
    subprocess.run(CLI + ARGS + extra + ["--run-dir", str(tmp_path / "reference")], check=True, capture_output=True)
    target = tmp_path / "killed"
    # the first process dies inside a checkpoint write (resume.pt renamed away, the new one half written; in the
    # population, member 0's second write, so member 0 is left with step 150 as resume.prev.pt only)
    proc = subprocess.run(CLI + ARGS + extra + ["--run-dir", str(target)], capture_output=True,
                          env={**os.environ, "STATEWISE_TEST_KILL_IN_SAVE": str(kill_save)})
    assert proc.returncode == -9
    runs = _runs(target)
    assert not (runs[0] / "resume.pt").exists() and (runs[0] / "resume.prev.pt").exists()
    assert list(runs[0].glob(".*.tmp"))  # the torn write's temporary file, removed by the resume
    done = 0
    for _ in range(kills):
        if _kill_after_progress(CLI + ["--resume", str(target), "--no-progress"], runs, rng):
            done += 1
    assert done == kills  # every kill landed mid-run
    final = subprocess.run(CLI + ["--resume", str(target), "--no-progress"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    for ref, got in zip(_runs(tmp_path / "reference"), runs, strict=True):
        _same(ref, got)


def test_resume_errors_are_one_line(tmp_path, capsys):
    for argv, fragment in (
        (["train", "--resume", str(tmp_path / "nowhere")], "not a directory"),
        (["train", "--resume", str(tmp_path)], "no run directory"),
        (["train", "--resume", str(tmp_path), "--steps", "5"], "drop --steps"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
    # a finished run has nothing to resume; a run without any resume state says so
    subprocess.run(CLI + ARGS[:2] + ["--set", "sac.start_steps=100", "--set", "sac.batch_size=32", "--set",
                                     "checkpoint_every=0", "--set", "checkpoint_minutes=0", "--set", "eval_every=100",
                                     "--run-dir", str(tmp_path / "done"), "--steps", "150", "--no-progress"],
                   check=True, capture_output=True)
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path / "done")])
    assert "every run has finished" in capsys.readouterr().err
    # in a grid folder, the unfinished copies bench moved aside are not runs to resume
    grid = tmp_path / "grid"
    grid.mkdir()
    shutil.copytree(tmp_path / "done", grid / "sac-alam-s0")
    for mark in (".stale-", ".interrupted-"):
        shutil.copytree(tmp_path / "done", grid / f"sac-alam-s0{mark}20261203-120000")
        (grid / f"sac-alam-s0{mark}20261203-120000" / "summary.json").unlink()
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(grid)])
    assert "every run has finished" in capsys.readouterr().err
    (tmp_path / "done" / "summary.json").unlink()
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path / "done")])
    assert "has no resume state" in capsys.readouterr().err


def test_environments_that_cannot_be_saved_restart_their_episodes(tmp_path):
    """--vector-mode async keeps its environments in worker processes: a resume starts them on new episodes, says so
    in one line, and finishes the run (correct, not bit-identical)."""
    target = tmp_path / "async"
    args = ARGS + ["--num-envs", "2", "--vector-mode", "async", "--run-dir", str(target)]
    proc = subprocess.run(CLI + args, capture_output=True, env={**os.environ, "STATEWISE_TEST_KILL_IN_SAVE": "3"})
    assert proc.returncode == -9
    final = subprocess.run(CLI + ["--resume", str(target), "--no-progress"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert "could not be saved; they start new episodes" in final.stderr
    summary = json.loads((target / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"] == 1500
    steps = [int(r["step"]) for r in csv.DictReader(open(target / "metrics.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 1500  # no duplicated rows after the resume


# ---------------------------------------------------------------- a resume file is untrusted input
SHORT = ["--steps", "400", *ARGS[2:]]


class _Marker:
    """Unpickling this creates a file: the proof that code from the file ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def killed_run(tmp_path) -> Path:
    """A small run killed inside its second checkpoint write (resume.prev.pt holds step 150)."""
    run = tmp_path / "run"
    proc = subprocess.run(CLI + SHORT + ["--run-dir", str(run)], capture_output=True,
                          env={**os.environ, "STATEWISE_TEST_KILL_IN_SAVE": "2"})
    assert proc.returncode == -9 and (run / "resume.prev.pt").is_file()
    return run


def _rewrite(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def test_a_resume_file_with_code_in_it_is_refused_before_anything_runs(killed_run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    for name in ("resume.pt", "resume.prev.pt"):
        torch.save({"format": 3, "step": 150, "payload": _Marker(marker)}, killed_run / name)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(killed_run), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "could run code" in err[0], err
    assert not marker.exists()


def test_environments_pickled_by_someone_else_are_not_unpickled(killed_run, tmp_path):
    """The environments are the one pickled part: a forged pickle (no valid signature) never runs; the run resumes
    with new episodes and says why."""
    marker = tmp_path / "pwned"
    import pickle

    def forge(state):
        state["member"]["envs"] = {"pickle": pickle.dumps(_Marker(marker)), "hmac": "0" * 64}
    _rewrite(killed_run / "resume.prev.pt", forge)
    final = subprocess.run(CLI + ["--resume", str(killed_run), "--no-progress"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert not marker.exists()
    assert "no matching signature" in final.stderr and "--trust" in final.stderr
    assert json.loads((killed_run / "summary.json").read_text())["steps"] == 400


def test_another_users_file_resumes_exactly_only_with_trust(killed_run, tmp_path):
    """Signed with another key: the environments restart (one line) unless --trust vouches for the file, in which
    case the resume is the usual exact one."""
    other = {**os.environ, "STATEWISE_KEY_FILE": str(tmp_path / "someone-else.key")}
    copy = tmp_path / "copy"
    shutil.copytree(killed_run, copy)
    plain = subprocess.run(CLI + ["--resume", str(killed_run), "--no-progress"], capture_output=True, text=True,
                           env=other)
    assert plain.returncode == 0 and "no matching signature" in plain.stderr, plain.stderr
    trusted = subprocess.run(CLI + ["--resume", str(copy), "--no-progress", "--trust"], capture_output=True,
                             text=True, env=other)
    assert trusted.returncode == 0 and "signature" not in trusted.stderr, trusted.stderr
    reference = tmp_path / "reference"
    subprocess.run(CLI + SHORT + ["--run-dir", str(reference)], check=True, capture_output=True)
    assert (reference / "eval.csv").read_bytes() == (copy / "eval.csv").read_bytes()


def test_a_resume_state_that_does_not_fit_the_config_is_one_line(killed_run, capsys):
    config = killed_run / "config.yaml"
    config.write_text(config.read_text().replace("- 16\n  - 16", "- 32\n  - 16", 1))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(killed_run), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "does not fit its config.yaml" in err[0], err
    assert "network actor.net.layers.0.bias: [1, 1, 16] in the file, [1, 1, 32] for the config" in err[0], err
    assert (killed_run / "resume.prev.pt").is_file()  # refused, nothing removed: the run can still be resumed
    # the resume state of another task (the double integrator's, for a PointHazard config)
    config.write_text(config.read_text().replace("- 32\n  - 16", "- 16\n  - 16", 1)
                      .replace("statewise/DoubleIntegrator-v0", "statewise/PointHazard-v0"))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(killed_run), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "does not fit its config.yaml" in err[0], err
