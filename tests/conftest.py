import importlib.util
import os
import tempfile
from pathlib import Path

import gymnasium
import pytest

from statewise import Config

# resume files are signed with the user's key (statewise.run.resume.user_key); the tests (and the processes they
# start) use a key of their own instead of creating one in the home directory
os.environ.setdefault("STATEWISE_KEY_FILE", str(Path(tempfile.mkdtemp(prefix="statewise-key-")) / "resume.key"))

_GYMNASIUM_1 = int(gymnasium.__version__.split(".")[0]) >= 1
# marker -> (usable here?, what is missing)
EXTRAS = {
    "mujoco": (_GYMNASIUM_1 and importlib.util.find_spec("mujoco") is not None, "mujoco with gymnasium >= 1.0"),
    "video": (importlib.util.find_spec("imageio_ffmpeg") is not None, "imageio-ffmpeg"),
    "ray": (importlib.util.find_spec("ray") is not None, "ray"),
    "export": (all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime")),
               "onnx, onnxscript and onnxruntime"),
    "safety_gymnasium": (not _GYMNASIUM_1 and importlib.util.find_spec("safety_gymnasium") is not None,
                         "safety-gymnasium with gymnasium 0.29"),
}


def pytest_runtest_setup(item):
    """Tests marked with an extra are skipped where it is not installed, except in CI (CI=true), which must
    exercise every extra it selects: there a missing extra fails the test instead of skipping it silently."""
    for marker, (usable, missing) in EXTRAS.items():
        if item.get_closest_marker(marker) and not usable:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI selected a '{marker}' test but {missing} is not installed")
            pytest.skip(f"needs {missing}")

TASKS = ["statewise/DoubleIntegrator-v0", "statewise/PointHazard-v0"]


def tiny_config(run_dir, algo="sac-alam", env=TASKS[0], steps=300, seed=0) -> Config:
    """A run small enough for a unit test: tiny networks, a few hundred steps."""
    cfg = Config(algo=algo, env=env, steps=steps, seed=seed, run_dir=str(run_dir), progress=False, eval_every=150,
                 eval_episodes=2, final_eval_episodes=3, log_every=50, probe_size=32, threads=1)
    cfg.sac.hidden = [16, 16]
    cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = 32
    cfg.sac.start_steps = 100
    cfg.multiplier.period = 5
    return cfg


@pytest.fixture
def tiny():
    return tiny_config
