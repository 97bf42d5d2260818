"""Populations: S seeds in one process, one batched update, and every member exactly as if it trained alone."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import statewise
from conftest import TASKS, tiny_config
from statewise.api import population_configs, train_population
from statewise.cli import parse_seeds
from statewise.config import Config
from statewise.errors import ConfigError, RunDirError, StatewiseError
from statewise.grid import LocalExecutor, bench, plan
from statewise.method.buffer import ReplayBuffer
from statewise.method.sac import SAC, pad_rows

TIMING = {"wall_time_s", "env_steps_per_s", "population", "compile_s"}


def _filled(seeds, obs_dim=3, act_dim=2, n=300):
    """A buffer whose member k holds the same transitions whatever its neighbours (generated from its seed)."""
    buf = ReplayBuffer(obs_dim, act_dim, n, "cpu", seeds=[1000 + s for s in seeds])
    rows = [np.random.default_rng(s).normal(size=(n, 2 * obs_dim + act_dim + 3)) for s in seeds]
    d = np.stack(rows)
    buf.add(d[..., :obs_dim], np.tanh(d[..., obs_dim:obs_dim + act_dim]), d[..., -3], (d[..., -2] > 1.0) * 1.0,
            d[..., obs_dim + act_dim:2 * obs_dim + act_dim], (d[..., -1] > 2.0) * 1.0)
    return buf


@pytest.mark.parametrize("algo", ["sac-alam", "fac", "sac-lag", "sac-pid-lag", "sac"])
def test_batched_update_equals_separate_runs_bit_for_bit(algo):
    cfg = Config(algo=algo)
    cfg.sac.hidden = cfg.multiplier.hidden = [32, 32]
    cfg.sac.batch_size = 64
    cfg.multiplier.period = 2
    cfg.validate()
    population, pop_buf = SAC.from_config(3, 2, cfg, seeds=[4, 7, 9]), _filled([4, 7, 9])
    alone, alone_buf = SAC.from_config(3, 2, cfg, seeds=[7]), _filled([7])
    for _ in range(6):
        population.update(pop_buf)
        alone.update(alone_buf)
    together, single = population.state_dict(), alone.state_dict()
    assert set(together) == set(single)
    for key, value in single.items():
        assert torch.equal(together[key][1], value[0]), key
    # and the members really differ from each other (no accidental sharing)
    assert not torch.equal(together["actor.net.layers.0.weight"][0], together["actor.net.layers.0.weight"][1])


def test_member_state_is_a_population_of_one():
    cfg = Config(algo="sac-alam")
    cfg.sac.hidden = cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = 32
    cfg.validate()
    population, buf = SAC.from_config(3, 2, cfg, seeds=[0, 5]), _filled([0, 5])
    population.update(buf)
    module, optimizers = population.member_state(1)
    one = SAC.from_config(3, 2, cfg, seeds=[5])
    one.load_state_dict(module)
    one.load_optimizer_states(optimizers)
    obs = torch.randn(2, 7, 3)
    assert torch.equal(one.lam(obs[1:]), population.lam(obs)[1:])
    exp_avg = optimizers["actor"]["exp_avg"][0]
    assert exp_avg.shape[0] == 1 and torch.equal(exp_avg[0], population.opt_actor.exp_avg[0][1])
    assert torch.equal(population.member(1).actor.net.layers[0].weight, one.actor.net.layers[0].weight)


def test_pad_rows_pads_to_the_vector_block():
    x = torch.ones(2, 5, 3)
    padded = pad_rows(x)
    assert padded.shape == (2, 32, 3) and torch.equal(padded[:, :5], x) and padded[:, 5:].abs().sum() == 0
    assert pad_rows(torch.ones(1, 64, 2)).shape == (1, 64, 2)


def _same_files(a: Path, b: Path) -> None:
    for name in ("eval.csv", "probe.npz", "value_bias.csv"):
        assert (a / name).is_file() == (b / name).is_file(), name
        if (a / name).is_file():
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    config_a, config_b = (Config.from_yaml(d / "config.yaml").to_dict() for d in (a, b))
    assert config_a.pop("run_dir") != config_b.pop("run_dir") and config_a == config_b
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    assert ca["meta"] == cb["meta"] and ca["agent"].keys() == cb["agent"].keys()
    for key in ca["agent"]:
        assert torch.equal(ca["agent"][key], cb["agent"][key]), key
    for name, state in ca["optimizers"].items():
        for field in ("exp_avg", "exp_avg_sq"):
            for i, value in enumerate(state[field]):
                assert torch.equal(value, cb["optimizers"][name][field][i]), (name, field, i)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMING} == {k: v for k, v in sb.items() if k not in TIMING}


@pytest.mark.parametrize("algo,env,threads", [("sac-alam", TASKS[0], 1), ("sac-alam", TASKS[0], 2),
                                               ("sac-pid-lag", TASKS[1], 1), ("fac", TASKS[0], 1)])
def test_a_member_writes_the_files_it_writes_alone(tmp_path, algo, env, threads):
    """Seed 1's eval.csv, probe.npz, value_bias.csv, checkpoint and summary are identical whether it trains alone or
    between seeds 0 and 2; a population trained twice writes identical files."""
    cfg = tiny_config(tmp_path, algo, env)
    cfg.threads = threads
    cfg.value_bias = env == "statewise/DoubleIntegrator-v0"  # the Monte-Carlo rollouts run batched over members
    alone = train_population(population_configs(cfg, [1], tmp_path / "alone"))
    together = train_population(population_configs(cfg, [0, 1, 2], tmp_path / "together"))
    again = train_population(population_configs(cfg, [0, 1, 2], tmp_path / "again"))
    assert [r.run_dir.name for r in together] == [f"{algo}-s0", f"{algo}-s1", f"{algo}-s2"]
    assert together[1].summary["population"] == 3 and alone[0].summary["population"] == 1
    _same_files(alone[0].run_dir, together[1].run_dir)
    for a, b in zip(together, again, strict=True):
        _same_files(a.run_dir, b.run_dir)
    # the members are different runs, and each loads like a single run
    assert (together[0].run_dir / "eval.csv").read_bytes() != (together[1].run_dir / "eval.csv").read_bytes()
    agent = statewise.load(together[2].run_dir)
    assert agent.config.seed == 2 and agent.act(np.zeros(agent.sac.obs_dim)).shape == (agent.sac.act_dim,)


def test_bench_populations_match_separate_processes(tmp_path):
    tiny = ("sac.hidden=[8,8]", "multiplier.hidden=[8,8]", "sac.batch_size=32", "sac.start_steps=64",
            "eval_every=50", "eval_episodes=1", "final_eval_episodes=2", "log_every=25", "probe_size=16")
    results = {}
    for populations in (True, False):
        out = tmp_path / str(populations)
        specs = plan(["sac-alam"], [TASKS[0]], [0, 1], 150, out, overrides=tiny)
        summaries = bench(specs, LocalExecutor(1), progress=False, populations=populations)
        results[populations] = out
        assert {s["population"] for s in summaries} == ({2} if populations else {1})
    for seed in (0, 1):
        _same_files(*(results[p] / "DoubleIntegrator-v0" / f"sac-alam-s{seed}" for p in (True, False)))


def test_population_input_is_checked_before_anything_is_written(tmp_path):
    cfg = tiny_config(tmp_path / "x")
    with pytest.raises(ConfigError, match="distinct"):
        population_configs(cfg, [1, 1], tmp_path / "p")
    other = tiny_config(tmp_path / "y", steps=400)
    other.seed = 1
    with pytest.raises(ConfigError, match="differ only in seed and run_dir, not in steps"):
        train_population([cfg, other])
    (tmp_path / "p" / "sac-alam-s1").mkdir(parents=True)
    with pytest.raises(RunDirError, match="sac-alam-s1 already exists"):
        train_population(population_configs(cfg, [0, 1], tmp_path / "p"))
    assert not (tmp_path / "p" / "sac-alam-s0").exists()  # nothing was written for the other member


def test_parse_seeds():
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    for bad, match in (("0-x", "not a seed"), ("3-1", "not a seed"), ("1,1", "at most once"), ("", "not a seed")):
        with pytest.raises(StatewiseError, match=match):
            parse_seeds(bad)
