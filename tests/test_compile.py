"""The compiled update (``compile: true``) against the eager one, Adam against torch's, the compile decision."""

import copy

import pytest
import torch

from statewise.config import Config
from statewise.method.optim import Adam
from statewise.method.sac import SAC, compile_decision, has_cpp_compiler, planned_updates
from test_population import _filled


def test_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(3, 5, 4, generator=gen), torch.randn(3, 1, generator=gen)]
    theirs = [torch.nn.Parameter(p.clone()) for p in ours]
    adam, reference = Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2)
    for _ in range(25):
        grads = [torch.randn(p.shape, generator=gen) * 3 for p in ours]
        adam.step(grads)
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g.clone()
        reference.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)
    state = adam.state_dict()
    assert float(state["step"]) == 25 and state["exp_avg"][0].shape == (3, 5, 4)


def test_compile_decision(monkeypatch):
    short = planned_updates(Config(steps=1_000).validate())
    cpu = torch.device("cpu")
    assert compile_decision(False, cpu, short) == (False, "")
    if has_cpp_compiler():
        assert compile_decision("auto", cpu, short) == (False, "")  # too short to repay the compile time
        assert compile_decision("auto", cpu, planned_updates(Config(steps=100_000).validate())) == (True, "")
        assert compile_decision(True, cpu, short) == (True, "")
    monkeypatch.setattr("statewise.method.sac.has_cpp_compiler", lambda: False)
    want, note = compile_decision(True, cpu, short)
    assert not want and "no C++ compiler" in note


@pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_update_matches_eager():
    """Same seeds, same draws: after updates that include two multiplier rounds, every parameter and optimiser
    moment of the compiled population equals the eager one to float rounding."""
    cfg = Config(algo="sac-alam")
    cfg.sac.hidden = cfg.multiplier.hidden = [16, 16]
    cfg.sac.batch_size = 32
    cfg.multiplier.period, cfg.multiplier.steps = 2, 2
    cfg.validate()
    eager, compiled = SAC.from_config(3, 2, cfg, seeds=[0, 1]), SAC.from_config(3, 2, cfg, seeds=[0, 1])
    assert compiled.compile(True, torch.device("cpu")) == "" and compiled.compiled
    buf_e, buf_c = _filled([0, 1]), _filled([0, 1])
    for _ in range(4):
        stats_e = eager.update(buf_e, log=True)
        stats_c = compiled.update(buf_c, log=True)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(eager.opt_critic.exp_avg_sq, compiled.opt_critic.exp_avg_sq, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(stats_c["actor_loss"], stats_e["actor_loss"], rtol=1e-4, atol=1e-5)
    assert compiled.compile_seconds > 0 and eager.compile_seconds == 0
    # the member slice of a compiled population is an ordinary checkpoint
    module, optimizers = compiled.member_state(1)
    one = SAC.from_config(3, 2, copy.deepcopy(cfg), seeds=[1])
    one.load_state_dict(module)
    one.load_optimizer_states(optimizers)


@pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_member_does_not_depend_on_its_neighbours():
    """Compiled, seed 7's parameters and optimiser moments are bit-identical in a population of two and of three
    (the double integrator's shapes, two multiplier rounds). A compiled population of one is another graph whose
    vectorised kernels may round differently, so it is not part of this promise (docs/concepts.md, "Populations")."""
    cfg = Config(algo="sac-alam")
    cfg.sac.hidden = cfg.multiplier.hidden = [32, 32]
    cfg.sac.batch_size = 64
    cfg.multiplier.period = 2
    cfg.validate()
    agents = {}
    for seeds in ([4, 7], [2, 4, 7]):
        agent, buf = SAC.from_config(2, 1, cfg, seeds=seeds), _filled(seeds, obs_dim=2, act_dim=1)
        assert agent.compile(True, torch.device("cpu")) == ""
        for _ in range(5):
            agent.update(buf)
        agents[len(seeds)] = agent
    two, three = agents[2].state_dict(), agents[3].state_dict()
    for key, value in two.items():
        assert torch.equal(value[-1], three[key][-1]), key
    for name, opt in agents[2].optimizers().items():
        for a, b in zip(opt.exp_avg_sq, agents[3].optimizers()[name].exp_avg_sq, strict=True):
            assert torch.equal(a[-1], b[-1]), name
    assert not torch.equal(two["actor.net.layers.0.weight"][0], two["actor.net.layers.0.weight"][1])
