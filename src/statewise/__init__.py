"""statewise: state-wise safe reinforcement learning.

Python API::

    import statewise
    result = statewise.train({"algo": "sac-alam", "env": "statewise/DoubleIntegrator-v0", "steps": 20000})
    agent = statewise.load(result.run_dir)
    agent.act(obs), agent.multiplier(obs)
"""

__version__ = "0.1.0"

from statewise.agent import Agent, load  # noqa: E402
from statewise.config import ALGORITHMS, Config  # noqa: E402
from statewise.errors import StatewiseError  # noqa: E402
from statewise.train import TrainResult, train  # noqa: E402

__all__ = ["ALGORITHMS", "Agent", "Config", "StatewiseError", "TrainResult", "load", "train", "__version__"]
