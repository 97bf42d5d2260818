"""A trained agent loaded from a run directory: ``statewise.load(run_dir)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from statewise.analysis.risk import RiskModel, score_fn
from statewise.config import Config
from statewise.errors import CheckpointError, StatewiseError
from statewise.method.sac import SAC
from statewise.run import runio


class Agent:
    """The policy, critics and multiplier of one run, for acting and inspection (CPU by default).

    ``act(obs)`` and ``multiplier(obs)`` accept one observation (obs_dim,) or a batch (N, obs_dim)
    and return numpy arrays of matching leading shape.
    """

    def __init__(self, sac: SAC, config: Config, run_dir: Path, step: int = 0):
        self.sac = sac
        self.config = config
        self.run_dir = run_dir
        self.step = step
        self.device = next(sac.parameters()).device
        self._risk: RiskModel | None = None  # read on the first risk() call

    def _obs(self, obs: np.ndarray) -> tuple[torch.Tensor, bool]:
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 1
        arr = arr[None] if single else arr
        obs_dim = self.sac.obs_dim
        if arr.ndim != 2 or arr.shape[1] != obs_dim:
            raise StatewiseError(f"observation must have shape ({obs_dim},) or (N, {obs_dim}), got {np.shape(obs)}")
        return torch.as_tensor(arr, device=self.device).unsqueeze(0), single  # a population of one

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        x, single = self._obs(obs)
        out = self.sac.act(x, deterministic)[0].cpu().numpy()
        return out[0] if single else out

    def multiplier(self, obs: np.ndarray) -> np.ndarray | float:
        """λ(s) ∈ [0, λ_max] (zeros for unconstrained SAC); with several constraints the largest λ_k(s)."""
        x, single = self._obs(obs)
        out = self.sac.lam(x)[0].cpu().numpy()
        return out[0] if single else out

    def multipliers(self, obs: np.ndarray) -> dict[str, np.ndarray | float]:
        """λ_k(s) of every constraint by name (``constraint.costs``; one unnamed constraint is ``"cost"``)."""
        return self._by_constraint(self.sac.lam_k, obs)

    def _by_constraint(self, fn, obs: np.ndarray) -> dict[str, np.ndarray | float]:
        """A per-constraint score of the agent, ``fn``: (1, N, obs) -> (1, M, N), as name -> value(s)."""
        x, single = self._obs(obs)
        out = fn(x)[0].cpu().numpy()  # (M, N)
        names = self.sac.signal.names if self.sac.signal is not None else ("cost",)
        return {name: (row[0] if single else row) for name, row in zip(names, out, strict=True)}

    def cost_value(self, obs: np.ndarray) -> np.ndarray | float:
        """Cost value Q^c(s, π(s)) at the deterministic action: the twin cost critics combined by
        ``constraint.twin_aggregate``, their mean by default (``max`` is the pessimistic choice)."""
        x, single = self._obs(obs)
        out = self.sac.cost_value(x)[0].cpu().numpy()
        return out[0] if single else out

    def cost_values(self, obs: np.ndarray) -> dict[str, np.ndarray | float]:
        """Q^c_k(s, π(s)) of every constraint by name (``constraint.costs``; one unnamed constraint is ``"cost"``)."""
        return self._by_constraint(self.sac.cost_value_k, obs)

    def risk(self, obs: np.ndarray) -> np.ndarray | float:
        """Calibrated probability of a violation within H steps under the final policy, from λ(s) or Q^c(s, π(s)) as
        fitted by ``statewise calibrate`` (:mod:`statewise.analysis.calibrate`; risk.json says which score and which
        H)."""
        if self._risk is None:
            self._risk = RiskModel.read(self.run_dir)
        scores = np.asarray(score_fn(self, self._risk.score)(obs), dtype=np.float64)
        return self._risk(scores)


def load(run_dir: str | Path, device: str = "cpu") -> Agent:
    """Load the final checkpoint of a run directory (torch ``weights_only=True``)."""
    run_dir = Path(run_dir)
    ckpt = runio.load_checkpoint(run_dir)
    cfg_path = run_dir / runio.CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing; cannot rebuild the agent")
    cfg = Config.from_yaml(cfg_path).validate()
    meta = ckpt["meta"]  # a mapping (runio.load_checkpoint checks)
    try:
        step = int(meta.get("step", 0))
        sac = SAC.from_config(int(meta["obs_dim"]), int(meta["act_dim"]), cfg)
        sac.load_state_dict(ckpt["agent"])
        sac.load_optimizer_states(ckpt["optimizers"])
    except StatewiseError:  # e.g. networks too large for this machine's memory
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint in {run_dir} does not match its config.yaml: {first[:200]}") from None
    if not all(sac.finite_members()):
        raise CheckpointError(f"checkpoint in {run_dir} holds non-finite parameters (the run diverged); "
                              "there is no policy to use")
    return Agent(sac.to(device).eval(), cfg, run_dir, step)
