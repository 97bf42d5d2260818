"""The trainer's shape: observers see the run at their four moments, and a resume file holds the trainer's state
objects whole (LoopState, MemberStats, each observer's state)."""

import dataclasses

import torch

from statewise.api import train
from statewise.run import diagnostics, trainer
from statewise.run.diagnostics import Observer


class Counter(Observer):
    name = "counter"
    log_fields = ("seen_logs",)
    quantity = "the counter"

    def __init__(self):
        self.steps, self.logs, self.evals, self.finished = [], [], [], []

    def on_step(self, tr, prev, t, steps):
        self.steps.append((prev, t))

    def on_log(self, tr, t):
        self.logs.append(t)
        return [{"seen_logs": float(len(self.logs))} for _ in tr.members]

    def on_eval(self, tr, t):
        self.evals.append(t)

    def finish(self, tr, k):
        self.finished.append(k)
        return {}, {"counter_logs": len(self.logs)}

    def state(self, k):
        return {"logs": list(self.logs)}


def test_an_observer_sees_every_moment_and_owns_its_columns_and_resume_state(tmp_path, tiny, monkeypatch):
    counter = Counter()
    make = diagnostics.make_observers
    monkeypatch.setattr(trainer, "make_observers", lambda tr: [*make(tr), counter])
    cfg = tiny(tmp_path / "run", steps=300)
    cfg.checkpoint_every = 150
    result = train(cfg, plots=False)
    assert counter.steps == [(t - 1, t) for t in range(1, 301)]
    assert counter.logs == [50, 100, 150, 200, 250, 300]
    assert counter.evals == [150, 300]
    assert counter.finished == [0]
    assert result.summary["counter_logs"] == 6  # summary entries come from the observer
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-5:] == ["lam_probe_mean", "lam_probe_max", "lam_probe_q50", "lam_probe_q90", "seen_logs"]


def test_resume_file_holds_the_trainer_state_objects(tmp_path, tiny, monkeypatch):
    saved = []
    monkeypatch.setattr(trainer.resume_io, "save", lambda run_dir, state: saved.append(state))
    cfg = tiny(tmp_path / "run", steps=300)
    cfg.checkpoint_every = 150
    train(cfg, plots=False)
    state = saved[0]  # written at step 150
    assert state["step"] == 150
    loop = trainer.LoopState(**state["loop"])  # the loop's state, whole
    assert loop.t == 150 and loop.updates_done == 50 and loop.warmup_steps == 100
    member = state["member"]
    stats = trainer.MemberStats(**member["stats"])
    assert {f.name for f in dataclasses.fields(trainer.MemberStats)} == set(member["stats"])
    assert stats.checkpoint_step == 150  # the checkpoint of this step is written before its resume file
    assert set(member["observers"]) == {"violation_runs", "lambda_probe", "lambda_plane"}
    probe = member["observers"]["lambda_probe"]
    assert probe["steps"] == [100, 150] and len(probe["history"]) == 2 and torch.is_tensor(probe["obs"])
    assert member["agent"]["n_updates"] == 50


def test_violation_runs_observer_counts_runs_per_environment_after_the_warm_up():
    """The observer's totals equal statewise.metrics.violation_runs applied to each environment's flags after the
    warm-up: the longest over environments, bursts and their steps summed, a run still going at the end counted."""
    from types import SimpleNamespace

    import numpy as np

    from statewise.metrics import violation_runs
    from statewise.run.diagnostics import ViolationRuns

    rng = np.random.default_rng(0)
    flags = rng.random((300, 2)) < 0.7  # (steps, envs) of one member, long runs likely
    flags[-15:, 1] = True  # a burst still going at the end
    obs = ViolationRuns(members=1, num_envs=2, start_steps=20)
    trainer_view = SimpleNamespace(members=[SimpleNamespace(alive=True)])
    for t, row in enumerate(flags, start=1):
        obs.on_step(trainer_view, t - 1, t, [SimpleNamespace(cost=row.astype(float))])
    got = obs.finish(trainer_view, 0)[1]["violation_runs"]
    per_env = [violation_runs(flags[20:, i], burst=ViolationRuns.BURST) for i in range(2)]
    assert got["longest"] == max(r["longest"] for r in per_env) >= 15
    assert got["bursts"] == sum(r["bursts"] for r in per_env) > 0
    assert got["burst_steps"] == sum(r["burst_steps"] for r in per_env)
