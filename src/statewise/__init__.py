"""statewise: state-wise safe reinforcement learning.

Python API::

    import statewise
    result = statewise.train({"algo": "sac-alam", "env": "statewise/DoubleIntegrator-v0", "steps": 20000})
    agent = statewise.load(result.run_dir)
    agent.act(obs), agent.multiplier(obs)
    # a population: five seeds in one process, one batched update, one run directory each
    cfg = statewise.Config(algo="sac-alam", steps=20000)
    results = statewise.train_population(statewise.population_configs(cfg, [0, 1, 2, 3, 4], "runs/pop"))
"""

__version__ = "0.3.0"

from statewise.config import ALGORITHMS, Config  # noqa: E402
from statewise.errors import StatewiseError  # noqa: E402
from statewise.quiet import install_filters  # noqa: E402

install_filters()

# train / load pull in torch and gymnasium, and gymnasium 0.29 imports MuJoCo through its plugins; they are loaded
# on first use so that the command line can choose MuJoCo's headless OpenGL backend first (statewise.analysis.video).
# (The functions live in statewise.api, not in a module named statewise.train: a submodule import would bind its
# name on the package and hide the function.)
_LAZY = {"Agent": "statewise.analysis.agent", "load": "statewise.analysis.agent", "TrainResult": "statewise.api",
         "train": "statewise.api", "train_population": "statewise.api", "population_configs": "statewise.api",
         "resume": "statewise.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'statewise' has no attribute '{name}'")


__all__ = ["ALGORITHMS", "Agent", "Config", "StatewiseError", "TrainResult", "load", "population_configs", "resume",
           "train", "train_population", "__version__"]
