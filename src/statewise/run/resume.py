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

**Nothing in a resume file runs code.** Run directories travel (copied from a cluster, attached to a bug report), so
a resume file is read as untrusted input:

* the file is loaded with ``torch.load(weights_only=True)``: tensors and plain data only (numpy arrays are stored as
  raw bytes with their dtype and shape, see :func:`encode`); a file holding any other object is refused in one line;
* the one part that needs pickle, the environments mid-episode, is signed: ``save`` stores an HMAC-SHA256 of the
  pickled bytes under a key private to the user (:func:`user_key`, created on first use, readable by the user only).
  On resume the environments are unpickled only when the signature matches this user's key, i.e. the file was
  written by a statewise run of this user (the same machine, or any machine sharing the home directory). A file
  from elsewhere still resumes exactly in every other part; its environments start new episodes instead, with a
  one-line note, unless the user vouches for it (``statewise train --resume DIR --trust``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statewise.errors import CheckpointError
from statewise.run import runio

RESUME_FORMAT = 3  # 3: weights-only data, signed environments; 2: the trainer's state objects (pickled whole);
# 1: the loop's keys one by one
KEY_ENV = "STATEWISE_KEY_FILE"  # where the user's signing key lives (default: ~/.config/statewise/resume.key)
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
    member = {**state["member"], "envs": seal(state["member"]["envs"])}
    runio.atomic_save(encode({"format": RESUME_FORMAT, **state, "member": member}), latest)


# ---------------------------------------------------------------- plain data only
_ARRAY, _SCALAR = "__ndarray__", "__numpy_scalar__"


def encode(obj: Any) -> Any:
    """``obj`` with every numpy array and numpy scalar replaced by plain data (raw bytes, dtype, shape), so that the
    whole state loads with ``weights_only=True``. Dicts, lists, tuples, tensors and Python scalars pass through."""
    if isinstance(obj, dict):
        return {key: encode(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(encode(v) for v in obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("resume state cannot hold numpy object arrays")
        return {_ARRAY: obj.tobytes(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {_SCALAR: obj.tobytes(), "dtype": obj.dtype.str}
    return obj


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if _ARRAY in obj:
            return np.frombuffer(obj[_ARRAY], dtype=_plain_dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        if _SCALAR in obj:
            return np.frombuffer(obj[_SCALAR], dtype=_plain_dtype(obj["dtype"]))[0]
        return {key: decode(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode(v) for v in obj)
    return obj


def _plain_dtype(spec: str) -> np.dtype:
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise CheckpointError(f"resume state holds a numpy object array ({spec}); statewise does not load it")
    return dtype


# ---------------------------------------------------------------- signed environments
def user_key(create: bool = True) -> bytes | None:
    """This user's signing key (32 random bytes in a file only the user can read; ``$STATEWISE_KEY_FILE`` overrides
    the path). None where it cannot be read or created (the environments are then saved unsigned)."""
    path = Path(os.environ.get(KEY_ENV) or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
                / "statewise" / "resume.key")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    except FileExistsError:  # another process created it first
        pass
    except OSError:
        return None
    return path.read_bytes()


def _signature(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def seal(envs: bytes | None) -> dict[str, Any] | None:
    """The pickled environments with this user's signature (None stays None: nothing could be pickled)."""
    if envs is None:
        return None
    key = user_key()
    return {"pickle": envs, "hmac": None if key is None else _signature(envs, key)}


def unseal(sealed: Any, trust: bool = False) -> tuple[bytes | None, str]:
    """(pickled environments, "") when they may be unpickled: signed with this user's key, or ``trust``; otherwise
    (None, why not). Nothing here unpickles."""
    if sealed is None:
        return None, "could not be saved"
    if not isinstance(sealed, dict) or not isinstance(sealed.get("pickle"), bytes):
        return None, "are not stored in a form statewise reads"
    if trust:
        return sealed["pickle"], ""
    key, signature = user_key(create=False), sealed.get("hmac")
    if key is not None and isinstance(signature, str) and hmac.compare_digest(signature,
                                                                              _signature(sealed["pickle"], key)):
        return sealed["pickle"], ""
    return None, ("were saved by another user or machine (no matching signature), so they are not unpickled; "
                  "pass --trust if you trust the file")


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a kill left behind (atomic writes that never reached their rename)."""
    for path in run_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _load(path: Path, mmap: bool = False) -> Any:
    """A resume file's content: tensors and plain data only (``weights_only``), never code."""
    return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)


def available(run_dir: Path) -> dict[int, Path]:
    """Step -> file, for the resume files of a run that can be read (CheckpointError for another format's, or for
    a file that holds more than tensors and plain data)."""
    out, other, unsafe = {}, set(), []
    for name in FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            meta = _load(path, mmap=True)
        except pickle.UnpicklingError as exc:  # weights_only refused an object: a foreign or hostile file
            if "weights_only" in str(exc) or "Unsupported" in str(exc):
                unsafe.append(path)
            continue
        except Exception:  # noqa: BLE001 - a torn file is simply not a candidate
            continue
        if isinstance(meta, dict) and meta.get("format") == RESUME_FORMAT and "step" in meta:
            out[int(meta["step"])] = path
        elif isinstance(meta, dict) and "format" in meta:
            other.add(meta["format"])
    if not out and unsafe:
        raise CheckpointError(f"{unsafe[0]} holds objects other than tensors and plain data; statewise does not load "
                              "it (loading it could run code): it was not written by this statewise version")
    if not out and other:
        raise CheckpointError(f"{run_dir} holds resume state of format {sorted(other)[0]}, written by another "
                              f"statewise version (this one reads format {RESUME_FORMAT}); it cannot be resumed")
    return out


def load_common(run_dirs: list[Path], trust: bool = False) -> list[dict[str, Any]]:
    """The newest resume state that every run has (each run's own slice). Each state's ``member.envs`` holds the
    pickled environments only where :func:`unseal` allows them (else None, with ``member.envs_note`` saying why)."""
    per_run = [available(d) for d in run_dirs]
    for d, steps in zip(run_dirs, per_run, strict=True):
        if not steps:
            raise CheckpointError(f"{d} has no resume state ({runio.RESUME_FILE}); it cannot be resumed")
    common = set.intersection(*(set(s) for s in per_run))
    if not common:
        raise CheckpointError("the runs of this population have no checkpoint step in common: "
                              + ", ".join(f"{d.name} {sorted(s)}" for d, s in zip(run_dirs, per_run, strict=True)))
    step = max(common)
    states = []
    for steps in per_run:
        state = decode(_load(steps[step]))
        state["member"]["envs"], state["member"]["envs_note"] = unseal(state["member"].get("envs"), trust)
        states.append(state)
    return states


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
