"""Quiet by default: known third-party notices are dropped where they are raised, shown with --verbose."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from statewise import quiet

NOTICE = quiet.NOTICES[0] + ", ... environment's reward functions were updated in v1.2.1 ...\n"


def test_known_notice_dropped_other_stderr_kept(capsys, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.third_party_notices():
        print(NOTICE, end="", file=sys.stderr)
        print("something the user must see", file=sys.stderr)
    err = capsys.readouterr().err
    assert err == "something the user must see\n"


def test_verbose_shows_the_notice(capsys, monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    with quiet.third_party_notices():
        print(NOTICE, end="", file=sys.stderr)
    assert quiet.NOTICES[0] in capsys.readouterr().err


def test_subnormal_warning_filtered_unless_verbose():
    code = ("import warnings, statewise; warnings.warn('The value of the smallest subnormal for <class "
            "\\'numpy.float32\\'> type is zero.', UserWarning); warnings.warn('other', UserWarning)")
    quiet_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "subnormal" not in quiet_run.stderr and "other" in quiet_run.stderr
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, quiet.VERBOSE_ENV: "1"})
    assert "subnormal" in loud.stderr


def test_cli_verbose_flag_reaches_workers(monkeypatch):
    from statewise.cli import main

    monkeypatch.setenv(quiet.VERBOSE_ENV, "")  # not verbose; removed again after the test
    assert not quiet.verbose()
    with warnings.catch_warnings():
        main(["--verbose", "plot", "--help"])
        assert quiet.verbose()  # set in os.environ: worker processes inherit it


@pytest.mark.safety_gymnasium
def test_safety_gymnasium_import_is_quiet():
    code = "from statewise.envs import safety_gymnasium; safety_gymnasium.load()"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Adroit" not in run.stderr, run.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    """statewise in a process of its own, as a user runs it (the warnings of gymnasium are not pytest's to catch),
    with the test environments of tests/ importable."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    env.pop(quiet.VERBOSE_ENV, None)
    return subprocess.run([sys.executable, "-m", "statewise.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_an_environment_refused_for_its_shape_is_one_line_without_the_env_checker(tmp_path):
    """gymnasium's env checker warns about the observation before statewise refuses it: only statewise's line shows."""
    run = _cli("train", "--steps", "50", "--env", "_toy_envs:ToyWrongShape-v0", "--set", "max_episode_steps=9",
               "--run-dir", str(tmp_path / "r"))
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["statewise: error: environment 'ToyWrongShape-v0': reset returned an "
                                       "observation of shape (2,), but its observation space says (1,)"], run.stderr
    assert not (tmp_path / "r").exists()


def test_async_environments_that_fail_are_said_by_statewise_only(tmp_path):
    """--vector-mode async: gymnasium's workers echo an error (several lines, a traceback) before statewise's own
    line; only statewise's lines show: the failure when it happens, and the final count."""
    run_dir = tmp_path / "r"
    run = _cli("train", "--steps", "300", "--env", "_toy_envs:ToyNaNCostLater-v0", "--num-envs", "2", "--vector-mode",
               "async", "--run-dir", str(run_dir), "--set", "sac.hidden=[8,8]", "--set", "multiplier.hidden=[8,8]",
               "--set", "sac.batch_size=32", "--set", "sac.start_steps=32", "--set", "eval_every=1000",
               "--set", "final_eval_episodes=1", "--no-progress")
    assert run.returncode == 1, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 2, run.stderr
    assert lines[0].startswith(f"statewise: run {run_dir} failed at step 120: ") and "non-finite cost" in lines[0]
    assert lines[1] == f"statewise: error: 1 of 1 run(s) failed: {run_dir} at step 120"
