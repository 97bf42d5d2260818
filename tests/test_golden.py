"""The training loop writes, byte for byte, the files recorded in tests/golden/ (see tests/golden.py): one case per
algorithm family, a population of two, two constraint signals, both diagnostics, and one run killed inside a
checkpoint write and resumed. A change of shape must not change a run's behaviour."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden  # noqa: E402

RECORDED = json.loads((golden.HERE / "meta.json").read_text())["platform"]
pytestmark = pytest.mark.skipif(RECORDED != golden.platform(),
                                reason=f"golden files recorded with {RECORDED}, here {golden.platform()}")


def _compare(case: str, root: Path) -> None:
    got = golden.runs(root)
    expected = sorted(p.name for p in (golden.HERE / case).iterdir() if p.is_dir()) or [""]
    assert sorted(got) == expected
    for member, run in got.items():
        folder = golden.HERE / case / member
        files = golden.fingerprint(run)
        assert sorted(files) == sorted(p.name for p in folder.iterdir() if p.is_file())
        for name, data in files.items():
            assert data == (folder / name).read_bytes(), f"{case}/{member}/{name} differs from the recorded run"


@pytest.mark.parametrize("case", list(golden.CASES))
def test_run_matches_recorded_files(tmp_path, case):
    proc = golden.train(case, tmp_path / case)
    assert proc.returncode == 0, proc.stderr
    _compare(case, tmp_path / case)


def test_killed_and_resumed_run_matches_recorded_files(tmp_path):
    target = tmp_path / golden.KILLED
    proc = golden.train(golden.KILLED, target, kill_in_save=2)
    assert proc.returncode == -9
    resumed = golden.subprocess.run(golden.CLI + ["--resume", str(target), "--no-progress"], capture_output=True,
                                    text=True)
    assert resumed.returncode == 0, resumed.stderr
    _compare(golden.KILLED, target)
