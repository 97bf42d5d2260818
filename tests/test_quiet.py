"""Quiet by default: known third-party notices are dropped where they are raised, shown with --verbose."""

import subprocess
import sys
import warnings

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
