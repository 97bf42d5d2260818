import pytest

from statewise import Config

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
