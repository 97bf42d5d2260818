"""Export a trained run for use outside Python (``statewise export RUN_DIR``): one model, input ``obs`` (N, obs_dim)
float32, outputs ``action`` (the deterministic policy tanh(μ(s))), and for a constrained run ``lambda`` (λ(s), clipped
to [0, λ_max]), ``cost_value`` (Q^c(s, π(s))) and, once ``statewise calibrate`` has run, ``risk`` (P(violation within
H steps), the isotonic step function of risk.json). With several constraints (``constraint.costs``) ``lambda`` and
``cost_value`` are (N, M), one column per constraint in the order of the names that the model's metadata holds
(``constraints``: ONNX metadata_props, a ``constraints.json`` extra file in TorchScript); ``risk`` stays one number
per state, from the largest λ_k. ONNX (torch's exporter, the batch dimension dynamic), or TorchScript (a traced
module for libtorch in C++; deprecated by torch 2.13 but still loadable)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from statewise.errors import StatewiseError
from statewise.quiet import verbose
from statewise.run import runio

FORMATS = ("onnx", "torchscript")
ONNX_INSTALL = 'pip install -e ".[export]" (from the statewise checkout)'


class DeployedAgent(nn.Module):
    """The outputs listed in the module docstring as one torch module of a single agent (member 0 of its SAC)."""

    def __init__(self, agent, risk=None):
        super().__init__()
        self.sac = agent.sac
        self.constrained = agent.config.constrained
        self.constraints = list(agent.config.constraint.costs) if self.constrained else []  # named: (N, M) outputs
        self.names = ["action"] + (["lambda", "cost_value"] if self.constrained else [])
        self.risk_score = None
        if risk is not None:
            self.names.append("risk")
            self.risk_score = risk.score
            self.register_buffer("risk_lefts", torch.as_tensor(risk.lefts, dtype=torch.float32))
            self.register_buffer("risk_values", torch.as_tensor(risk.values, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = obs.unsqueeze(0)  # a population of one
        act = self.sac.actor.mode(x)
        if not self.constrained:
            return (act[0],)
        if self.constraints:  # one column per named constraint
            lam, qc = self.sac.lam_k(x)[0].T, self.sac.signal.combine(self.sac.critic(x, act)[:, 2:])[0].T
        else:
            lam, qc = self.sac.lam(x)[0], self.sac.signal.aggregate(self.sac.critic(x, act)[:, 2:])[0]
        if self.risk_score is None:
            return act[0], lam, qc
        score = self.sac.lam(x)[0] if self.risk_score == "lambda" else self.sac.cost_value(x)[0]
        step = (score.unsqueeze(1) >= self.risk_lefts.unsqueeze(0)).sum(1) - 1  # which step of the isotonic fit
        return act[0], lam, qc, self.risk_values[step.clamp(min=0)]


def export(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write the run's deployable model; returns (path, output names). Checks parity with torch on random inputs
    before returning (a model that disagrees is removed and raises)."""
    from statewise.analysis.agent import load
    from statewise.analysis.risk import RiskModel

    if fmt not in FORMATS:
        raise StatewiseError(f"unknown export format '{fmt}'; choose from {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    agent = load(run_dir)
    risk = RiskModel.read(run_dir) if (run_dir / runio.RISK_FILE).is_file() else None
    model = DeployedAgent(agent, risk).eval()
    path = Path(out) if out is not None else run_dir / "export" / ("agent.onnx" if fmt == "onnx" else "agent.pt")
    if runio.exists(path):
        raise StatewiseError(f"{path} already exists (nothing was overwritten); remove it or choose --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(4, agent.sac.obs_dim)
    if fmt == "onnx":
        _onnx(model, example, path)
    else:
        extra = {"constraints.json": json.dumps(model.constraints)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch, not yet removed
            # shape tests in the networks (pad_rows) are traced as constants: harmless, every row is computed
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, (example,), check_trace=False)
            runio.atomic_save(traced, path, saver=lambda m, fh: torch.jit.save(m, fh, _extra_files=extra))
    worst = parity(path, model, agent.sac.obs_dim)
    if worst > 1e-4:
        path.unlink()
        raise StatewiseError(f"the exported model disagrees with torch by {worst:.2e}; nothing was written")
    return path, model.names


def _onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise StatewiseError(f"ONNX export needs onnx and onnxscript: {ONNX_INSTALL}") from None
    batch = torch.export.Dim("batch")
    tmp = path.with_name(f".{path.name}.tmp")
    # the exporter's progress lines (stdout) and notes such as "torchvision is not installed" (logging): not the
    # user's business unless they ask (--verbose)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    if not verbose():
        onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), input_names=["obs"], output_names=model.names,
                              dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
        _name_constraints(tmp, model.constraints)
    finally:
        onnx_log.setLevel(level)
    tmp.replace(path)


def _name_constraints(path: Path, names: list[str]) -> None:
    """The constraint names of the (N, M) outputs, as the ONNX model's metadata ``constraints`` (comma-separated)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"constraints": ",".join(names)})
    onnx.save(model, str(path))


def constraint_names(path: str | Path) -> list[str]:
    """The names of the constraints behind an exported model's (N, M) outputs (empty for one unnamed constraint)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return [n for n in props.get("constraints", "").split(",") if n]
    extra = {"constraints.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["constraints.json"] or "[]")


def run_exported(path: str | Path, obs: np.ndarray) -> list[np.ndarray]:
    """The exported model's outputs for observations ``obs`` (N, obs_dim): ONNX through onnxruntime, TorchScript
    through torch.jit.load."""
    path = Path(path)
    obs = np.asarray(obs, dtype=np.float32)
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            raise StatewiseError(f"running an ONNX model needs onnxruntime: {ONNX_INSTALL}") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"obs": obs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path))
    with torch.no_grad():
        return [t.numpy() for t in module(torch.as_tensor(obs))]


def parity(path: Path, model: nn.Module, obs_dim: int, n: int = 257) -> float:
    """Largest absolute difference between the exported model and torch on ``n`` random observations (a batch size
    other than the one traced with, so the dynamic batch dimension is exercised)."""
    obs = np.random.default_rng(0).normal(0.0, 3.0, (n, obs_dim)).astype(np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.as_tensor(obs))]
    got = run_exported(path, obs)
    if len(got) != len(ref):
        return float("inf")
    return max(float(np.max(np.abs(g - r))) if r.size else 0.0 for g, r in zip(got, ref, strict=True))
