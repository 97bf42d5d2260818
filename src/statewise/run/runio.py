"""Run directories and files: atomic writes, version records, checkpoint loading."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statewise.errors import CheckpointError, RunDirError

CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
TRAIN_CSV = "metrics.csv"
EVAL_CSV = "eval.csv"
VALUE_BIAS_CSV = "value_bias.csv"
PROBE_FILE = "probe.npz"
RISK_FILE = "risk.json"  # statewise calibrate: the risk monitor (statewise.analysis.calibrate, .risk)
# statewise bench moves a run aside to <name><mark><time>: trained with other settings (--redo), or interrupted before
# its first checkpoint. Such copies are kept for the record and never read as runs of the grid.
STALE_MARK, INTERRUPTED_MARK = ".stale-", ".interrupted-"
RESUME_FILE = "resume.pt"  # statewise.run.resume: everything a killed run needs to continue exactly
RESUME_PREV_FILE = "resume.prev.pt"
# 2: member-leading parameter shapes and statewise.method.optim.Adam states (populations);
# 1 (no field): single runs before
CHECKPOINT_FORMAT = 2


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write bytes or text to a temporary file in the same directory, then rename over ``path``."""
    raw = data.encode() if isinstance(data, str) else data
    atomic_save(raw, path, saver=lambda obj, fh: fh.write(obj))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj: Any, path: str | Path, saver: Any = None) -> None:
    """``saver(obj, fileobj)`` (default ``torch.save``) into a temp file, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as fh:
            (saver or torch.save)(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> dict[str, Any]:
    """A run file written by :func:`write_json` (summary.json, versions.json); a missing or corrupt one is a
    one-line CheckpointError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object")
    return _restore_nan(data)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's config.yaml as a mapping (one-line CheckpointError if missing or corrupt)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sac"), dict) or "env" not in data:
        raise CheckpointError(f"{path} is corrupt: not a statewise config")
    return data


def read_npz(path: str | Path) -> Any:
    """probe.npz and friends: numpy arrays only (no pickles); one-line CheckpointError if corrupt."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {str(exc).splitlines()[0][:120]}") from None


NULL_REASON = "_null_reason"  # "<key>_null_reason" beside a value written as null because it was not finite


def _null_reason(key: str, value: float) -> str:
    if math.isinf(value):
        return f"{'+' if value > 0 else '-'}infinite"
    if key.endswith(("auroc", "auprc")):
        return "undefined: the scored states hold one class only (e.g. no violation within the horizon)"
    if key == "feasible_start_violation_prob":
        return "undefined: no evaluation episode started in a feasible state"
    if key in ("episode_return", "episode_cost"):
        return "undefined: no training episode finished in this window"
    return "not a number (undefined for this run)"


def strict(data: Any) -> Any:
    """``data`` with every non-finite float replaced by None (JSON null) and a ``<key>_null_reason`` string beside
    it, so that the file is strict JSON (no bare NaN) and says why the number is missing."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            value = float(value) if isinstance(value, (np.floating, np.integer)) else value
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
                out[f"{key}{NULL_REASON}"] = _null_reason(str(key), value)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v)
                                                          for v in value):
                out[key] = strict(value)
                out[f"{key}{NULL_REASON}"] = "entries that are null were not finite (undefined, e.g. an empty bin)"
            else:
                out[key] = strict(value)
        return out
    if isinstance(data, (list, tuple)):
        return [None if isinstance(v, float) and not math.isfinite(v) else strict(v) for v in data]
    if isinstance(data, (np.floating, np.integer)):
        return float(data) if math.isfinite(float(data)) else None
    return data


def _restore_nan(data: Any) -> Any:
    """The inverse of :func:`strict` for readers: a null with a ``_null_reason`` beside it is NaN again."""
    if isinstance(data, dict):
        return {k: (float("nan") if v is None and f"{k}{NULL_REASON}" in data else _restore_nan(v))
                for k, v in data.items()}
    if isinstance(data, list):  # lists in run files are numeric series
        return [float("nan") if v is None else _restore_nan(v) for v in data]
    return data


def write_json(path: str | Path, data: Any) -> None:
    """Strict JSON (``allow_nan=False``): non-finite numbers become null with their reason (:func:`strict`)."""
    atomic_write(path, json.dumps(strict(data), indent=2, sort_keys=False, default=float, allow_nan=False) + "\n")


def versions() -> dict[str, str]:
    import gymnasium
    import numpy

    import statewise

    return {"python": sys.version.split()[0], "platform": platform.platform(), "statewise": statewise.__version__,
            "torch": torch.__version__, "numpy": numpy.__version__, "gymnasium": gymnasium.__version__}


def exists(path: Path) -> bool:
    """``path.exists()``, but a path the OS refuses (a name too long, ...) is a RunDirError, not a traceback."""
    try:
        return path.exists()
    except OSError as exc:
        name = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        raise RunDirError(f"cannot use run directory {name}: {exc.strerror or exc}") from None


def create_run_dir(path: str | Path) -> Path:
    """Create a new run directory; an existing one is never reused or overwritten."""
    path = Path(path)
    if exists(path):
        raise RunDirError(f"run directory {path} already exists; choose another --run-dir (nothing was overwritten)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise RunDirError(f"run directory {path} already exists or its parent is a file; "
                          "choose another --run-dir") from None
    except OSError as exc:
        raise RunDirError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {CHECKPOINT_FILE}; did the run finish?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {first[:200]}") from None
    if not isinstance(ckpt, dict) or "agent" not in ckpt or "meta" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a statewise checkpoint")
    if not isinstance(ckpt["meta"], dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: its metadata is not a mapping "
                              f"(a {type(ckpt['meta']).__name__})")
    if ckpt["meta"].get("format", 1) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt['meta'].get('format', 1)}, this statewise reads "
                              f"format {CHECKPOINT_FORMAT} (written since populations); retrain the run")
    return ckpt


def move_aside(run_dir: Path, mark: str) -> None:
    """Rename ``run_dir`` to <name><mark><time> (STALE_MARK or INTERRUPTED_MARK): kept for the record, never read."""
    run_dir.rename(run_dir.with_name(f"{run_dir.name}{mark}{time.strftime('%Y%m%d-%H%M%S')}"))


def moved_aside(path: Path) -> bool:
    """Whether bench moved this run directory aside (STALE_MARK, INTERRUPTED_MARK)."""
    return STALE_MARK in path.name or INTERRUPTED_MARK in path.name


def finished_runs(folder: str | Path) -> list[Path]:
    """The finished runs directly inside ``folder`` (those with a summary), in name order, without the copies bench
    moved aside."""
    return sorted(d for d in Path(folder).iterdir() if not moved_aside(d) and (d / SUMMARY_FILE).is_file())
