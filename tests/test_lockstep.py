"""Built-in tasks stepped as one array operation (statewise.envs.lockstep) give exactly what each copy's own step
gives, and the training and evaluation paths use it."""

import numpy as np
import pytest

from conftest import TASKS, tiny_config
from statewise.api import population_configs, train_population
from statewise.envs import make_env
from statewise.envs.lockstep import Lockstep
from statewise.envs.perturb import perturbed
from statewise.run.collect import LockstepCollectors, SingleCollector, make_collector
from statewise.run.evaluate import build_env, rollout_members


def _random_states(task, rng, n):
    if task.spec.id.endswith("DoubleIntegrator-v0"):
        return np.stack([rng.uniform(-12, 12, n), rng.uniform(-5, 5, n)], axis=-1)
    # positions over and beyond the arena (wall hits), velocities up to the clip, some on the goal
    s = np.stack([rng.uniform(-6.5, 6.5, n), rng.uniform(-6.5, 6.5, n), rng.uniform(-4, 4, n),
                  rng.uniform(-4, 4, n)], axis=-1)
    s[: n // 10, 0:2] = np.array(task.goal) + rng.uniform(-0.5, 0.5, (n // 10, 2))
    return s


@pytest.mark.parametrize("env_id", TASKS)
def test_transition_is_step_bit_for_bit(env_id):
    """The batched dynamics and the scalar step agree exactly: next state, observation, reward, cost, termination
    and h of the new state, for states all over (and beyond) the task's domain and actions beyond [-1, 1]."""
    env = make_env(env_id)
    task = env.unwrapped
    rng = np.random.default_rng(0)
    states = _random_states(task, rng, 500)
    actions = rng.uniform(-1.5, 1.5, (500, task.action_space.shape[0]))
    nxt, reward, cost, terminated = task.transition(states, actions)
    obs = task.observe(nxt)
    h = task.constraint(nxt)
    for i in range(len(states)):
        task.set_state(states[i])
        o, r, term, _, info = task.step(actions[i])
        assert np.array_equal(task.get_state(), nxt[i]) and np.array_equal(o, obs[i]), i
        assert (r, info["cost"], term, info["constraint"]) == (reward[i], cost[i], terminated[i], h[i]), i
    assert cost.any() and (~cost.astype(bool)).any() and (terminated.any() or env_id.endswith("Integrator-v0"))


@pytest.mark.parametrize("env_id", TASKS)
def test_lockstep_equals_stepping_each_copy(env_id):
    """Three copies stepped together through episode ends (time limit, termination, resets) give the same
    observations, rewards, costs, flags and h as three copies stepped one by one, and the same wrapper counters."""
    apart = [make_env(env_id, max_episode_steps=60) for _ in range(3)]
    together = [make_env(env_id, max_episode_steps=60) for _ in range(3)]
    lockstep = Lockstep.of(together)
    assert lockstep is not None
    for k in range(3):
        assert np.array_equal(apart[k].reset(seed=k)[0], together[k].reset(seed=k)[0])
    rng = np.random.default_rng(1)
    used = 0
    for _ in range(250):
        act = rng.uniform(-1, 1, (3, apart[0].action_space.shape[0])).astype(np.float32)
        if lockstep.ready():
            used += 1
            st = lockstep.step(act)
            got = [(st.obs[k], st.reward[k], st.terminated[k], st.truncated[k], st.cost[k], st.constraint[k])
                   for k in range(3)]
        else:
            got = [(o, r, te, tr, i["cost"], i["constraint"]) for o, r, te, tr, i in
                   (together[k].step(act[k]) for k in range(3))]
        for k in range(3):
            o, r, te, tr, info = apart[k].step(act[k])
            assert np.array_equal(o, got[k][0]) and (r, te, tr, info["cost"], info["constraint"]) == got[k][1:]
            if te or tr:
                assert np.array_equal(apart[k].reset()[0], together[k].reset()[0])
    assert used >= 245  # ready after the env checker's first calls


def test_only_plain_built_in_stacks_qualify():
    assert Lockstep.of([make_env(TASKS[0]), make_env(TASKS[1])]) is None  # two tasks
    wrapped = perturbed(lambda: build_env(TASKS[0]), [0.0, 0.0], 1.0, 10, 10, 1.0, 1)
    assert Lockstep.of([wrapped]) is None
    assert LockstepCollectors.of([make_collector(lambda: make_env(TASKS[0]), 2, "sync")]) is None
    assert isinstance(LockstepCollectors.of([SingleCollector(make_env(TASKS[0]))]), LockstepCollectors)


@pytest.mark.parametrize("env_id", TASKS)
def test_evaluation_episodes_are_the_same_stepped_together(env_id, monkeypatch):
    """rollout_members over three environments: the same episodes with and without the lockstep."""
    import statewise.run.evaluate as evaluate

    seeds = [[1, 2], [3], [4, 5, 6]]
    act_dim = build_env(env_id).action_space.shape[0]

    def policy(batch):
        return np.tanh(np.sin(batch[:, :2] * 3.0))[:, :act_dim]

    together = rollout_members([build_env(env_id) for _ in seeds], policy, seeds, record=True)
    monkeypatch.setattr(evaluate.Lockstep, "of", classmethod(lambda cls, envs: None))
    apart = rollout_members([build_env(env_id) for _ in seeds], policy, seeds, record=True)
    for a, b in zip(apart, together, strict=True):
        assert [(e.ret, e.cost, e.length, e.truncated, e.costs) for e in a] == \
            [(e.ret, e.cost, e.length, e.truncated, e.costs) for e in b]
        assert all(np.array_equal(x, y) for e, f in zip(a, b, strict=True) for x, y in zip(e.states, f.states,
                                                                                             strict=True))


@pytest.mark.parametrize("env_id", TASKS)
def test_a_population_trains_the_same_with_and_without_the_lockstep(env_id, tmp_path, monkeypatch):
    """Two members trained with their environments in lockstep (training and evaluation) write the same eval.csv,
    probe.npz and metrics as when every environment steps on its own."""
    import statewise.run.evaluate as evaluate
    import statewise.run.trainer as trainer

    cfg = tiny_config(tmp_path, "sac-alam", env_id)
    together = train_population(population_configs(cfg, [0, 1], tmp_path / "lockstep"), plots=False)
    monkeypatch.setattr(trainer.LockstepCollectors, "of", classmethod(lambda cls, collectors: None))
    monkeypatch.setattr(evaluate.Lockstep, "of", classmethod(lambda cls, envs: None))
    apart = train_population(population_configs(cfg, [0, 1], tmp_path / "apart"), plots=False)
    for a, b in zip(together, apart, strict=True):
        for name in ("eval.csv", "probe.npz"):
            assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes(), name
        assert a.summary["final_eval"] == b.summary["final_eval"]
        assert a.summary["train_violation_ratio"] == b.summary["train_violation_ratio"]
