"""Exact resume: what a run (or a population) needs to continue as if it had never stopped.

Every ``checkpoint_every`` environment steps, and at least every ``checkpoint_minutes`` of wall time, each member
writes ``resume.pt`` into its run directory (atomically; the previous one is kept as ``resume.prev.pt``). It holds
member k's slice of everything the loop owns:

* networks, targets, multiplier and temperature, optimiser moments and step counts, the update counter;
* the random streams: the member's policy-noise and replay generators, torch's and numpy's global generators, the
  environments' generators (inside the pickled environments) and the warm-up action space's;
* the replay buffer's filled rows and write position;
* the environments themselves, mid-episode (pickled, with their wrappers: time limits, self-reset), and the current
  observation; environments that cannot be pickled (``--vector-mode async``, some simulators) are reset on resume
  instead, with a one-line note: that resume continues correctly but not bit for bit;
* the trainer's state as whole objects: the loop's counters (``LoopState``), the member's running statistics
  (``MemberStats``), each observer's state (the λ probe and λ-map history, the last value-bias row) and the CSV
  headers (:meth:`statewise.run.trainer.Trainer.snapshot`).

Rows that the logs received after the checkpoint are dropped on resume (CSV files are cut back to the checkpoint's
step; TensorBoard is told to purge later events). A kill during a write leaves the previous file intact; a population
resumes from the newest step that every member has.
"""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statewise.errors import CheckpointError
from statewise.run import runio

RESUME_FORMAT = 2  # 2: the trainer's state objects (0.4.0); 1: the loop's keys one by one (0.3.0)
FILES = (runio.RESUME_FILE, runio.RESUME_PREV_FILE)


_saves = 0


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``resume.pt``; the one it replaces becomes ``resume.prev.pt`` (so a kill at any point leaves at least
    one complete file, and a population always has a step in common)."""
    global _saves
    _saves += 1
    latest, prev = run_dir / runio.RESUME_FILE, run_dir / runio.RESUME_PREV_FILE
    if latest.exists():
        os.replace(latest, prev)
    if os.environ.get("STATEWISE_TEST_KILL_IN_SAVE") == str(_saves):  # fault injection (tests/test_resume.py)
        (run_dir / f".{latest.name}.killed.tmp").write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGKILL)
    runio.atomic_save({"format": RESUME_FORMAT, **state}, latest)


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a kill left behind (atomic writes that never reached their rename)."""
    for path in run_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def available(run_dir: Path) -> dict[int, Path]:
    """Step -> file, for the resume files of a run that can be read (CheckpointError for another format's)."""
    out, other = {}, set()
    for name in FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            meta = torch.load(path, weights_only=False, map_location="cpu", mmap=True)
        except Exception:  # noqa: BLE001 - a torn or foreign file is simply not a candidate
            continue
        if isinstance(meta, dict) and meta.get("format") == RESUME_FORMAT and "step" in meta:
            out[int(meta["step"])] = path
        elif isinstance(meta, dict) and "format" in meta:
            other.add(meta["format"])
    if not out and other:
        raise CheckpointError(f"{run_dir} holds resume state of format {sorted(other)[0]}, written by another "
                              f"statewise version (this one reads format {RESUME_FORMAT}); it cannot be resumed")
    return out


def load_common(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """The newest resume state that every run has (each run's own slice)."""
    per_run = [available(d) for d in run_dirs]
    for d, steps in zip(run_dirs, per_run, strict=True):
        if not steps:
            raise CheckpointError(f"{d} has no resume state ({runio.RESUME_FILE}); it cannot be resumed")
    common = set.intersection(*(set(s) for s in per_run))
    if not common:
        raise CheckpointError("the runs of this population have no checkpoint step in common: "
                              + ", ".join(f"{d.name} {sorted(s)}" for d, s in zip(run_dirs, per_run, strict=True)))
    step = max(common)
    return [torch.load(s[step], weights_only=False, map_location="cpu") for s in per_run]


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])


def pickle_envs(obj: Any) -> bytes | None:
    """The environments, pickled mid-episode; None where they cannot be (async workers, some simulators)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - anything unpicklable falls back to a reset on resume
        return None
