"""statewise export: the exported model gives torch's outputs (ONNX through onnxruntime, TorchScript)."""

import numpy as np
import pytest

import statewise
from statewise.analysis.export import DeployedAgent, run_exported
from statewise.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import tiny_config
    from statewise.analysis.calibrate import calibrate

    root = tmp_path_factory.mktemp("export")
    alam = statewise.train(tiny_config(root / "alam"), plots=False).run_dir
    calibrate(alam, episodes=4, test_episodes=4, horizon=20)
    sac = statewise.train(tiny_config(root / "sac", algo="sac"), plots=False).run_dir
    lag = statewise.train(tiny_config(root / "lag", algo="sac-lag"), plots=False).run_dir
    return {"alam": alam, "sac": sac, "lag": lag}


def expected(run, obs):
    agent = statewise.load(run)
    out = [agent.act(obs)]
    if agent.config.constrained:
        out += [agent.multiplier(obs), agent.cost_value(obs)]
        if (run / "risk.json").is_file():
            out.append(agent.risk(obs))
    return out


@pytest.mark.export
@pytest.mark.parametrize("name,names", [("alam", ["action", "lambda", "cost_value", "risk"]),
                                        ("sac", ["action"]), ("lag", ["action", "lambda", "cost_value"])])
def test_onnx_matches_torch(runs, name, names, tmp_path, capsys):
    path = tmp_path / f"{name}.onnx"
    main(["export", str(runs[name]), "--out", str(path)])
    assert capsys.readouterr().out.strip() == f"{path}: input obs (N, obs_dim) float32 -> {', '.join(names)}"
    obs = np.random.default_rng(1).uniform(-5, 5, (100, 2)).astype(np.float32)
    got = run_exported(path, obs)
    for g, want in zip(got, expected(runs[name], obs), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-5, rtol=1e-5)


def test_torchscript_matches_torch(runs, tmp_path):
    from statewise.analysis.export import export

    path, names = export(runs["alam"], "torchscript", tmp_path / "agent.pt")
    obs = np.random.default_rng(2).uniform(-5, 5, (33, 2)).astype(np.float32)
    for g, want in zip(run_exported(path, obs), expected(runs["alam"], obs), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-5, rtol=1e-5)


def test_risk_output_is_the_isotonic_step_function(runs):
    """The in-graph risk (comparisons and a gather) equals agent.risk at and between the fit's step edges."""
    import torch

    agent = statewise.load(runs["alam"])
    from statewise.analysis.risk import RiskModel

    model = DeployedAgent(agent, RiskModel.read(runs["alam"]))
    obs = np.random.default_rng(3).uniform(-6, 6, (500, 2)).astype(np.float32)
    with torch.no_grad():
        risk = model(torch.as_tensor(obs))[3].numpy()
    np.testing.assert_allclose(risk, agent.risk(obs), atol=1e-7)


def test_export_never_overwrites(runs, tmp_path, capsys):
    path = tmp_path / "agent.pt"
    path.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(runs["sac"]), "--format", "torchscript", "--out", str(path)])
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
    assert path.read_text() == "keep me"


@pytest.mark.export
@pytest.mark.parametrize("fmt,suffix", [("onnx", "onnx"), ("torchscript", "pt")])
def test_several_constraints_export_one_column_each_with_their_names(tmp_path, fmt, suffix):
    """constraint.costs: lambda and cost_value are (N, M), the columns named in the model's metadata; the risk
    monitor (from the largest λ_k) stays one number per state."""
    from conftest import tiny_config
    from statewise.analysis.calibrate import calibrate
    from statewise.analysis.export import constraint_names

    cfg = tiny_config(tmp_path / "run", env="statewise/DoubleIntegratorSpeedLimit-v0")
    cfg.constraint.costs = ["wall", "speed"]
    run = statewise.train(cfg, plots=False).run_dir
    calibrate(run, episodes=4, test_episodes=4, horizon=20)
    path = tmp_path / f"agent.{suffix}"
    main(["export", str(run), "--format", fmt, "--out", str(path)])
    assert constraint_names(path) == ["wall", "speed"]
    agent = statewise.load(run)
    obs = np.random.default_rng(2).uniform(-5, 5, (50, 2)).astype(np.float32)
    action, lam, cost_value, risk = run_exported(path, obs)
    lam_k = agent.multipliers(obs)
    qc_k = agent.sac.cost_value_k(agent._obs(obs)[0])[0].numpy()
    assert lam.shape == cost_value.shape == (50, 2) and risk.shape == (50,)
    for k, name in enumerate(["wall", "speed"]):
        np.testing.assert_allclose(lam[:, k], lam_k[name], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(cost_value[:, k], qc_k[k], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(action, agent.act(obs), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(risk, agent.risk(obs), atol=1e-5, rtol=1e-5)
