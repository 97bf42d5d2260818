"""Running a grid's work items as Ray tasks (``statewise bench --executor ray [--address auto|HOST:PORT]``).

Each work item (a cell's seeds as one population, or one run) is one task that declares its resources: the torch
threads of its runs as CPUs, and one GPU for ``device: cuda``. Without an address a local Ray is started for the grid
(its session files in a temporary directory, an authentication token in the environment rather than in the home
directory) and shut down afterwards, leaving nothing behind; with one, the grid joins that cluster.

Results are written by the tasks themselves into the run directories under ``--out``, so every node must see
``--out`` at the same path (shared storage): each task checks it first and fails with one line if it cannot.
A task that raises is reported with its runs and the others go on; a task whose node dies is retried
(``max_retries``) and the retry resumes its runs from their last checkpoint. Ctrl-C on the driver cancels every
task still queued or running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from statewise.errors import StatewiseError

RAY_INSTALL = 'pip install -e ".[ray]" (from the statewise checkout)'
RETRIES = 2  # retries of a task whose worker or node died (not of a task that raised)
# the token of the local Rays this process starts: in the environment, never in a file; one per process, because Ray
# caches the token it first read
_LOCAL_TOKEN = secrets.token_hex(32)


_RESOURCE = {"num_cpus": "CPU", "num_gpus": "GPU"}  # task option -> Ray resource name


class SharedStorageError(StatewiseError):
    """A task's node cannot see the grid directory."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StatewiseError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _task(fn: Callable[[Any], Any], item: Any, marker: str) -> Any:
    """What runs on a Ray worker: check the shared grid directory, then the work item."""
    if not Path(marker).is_file():
        raise SharedStorageError(
            f"node {socket.gethostname()} cannot see {Path(marker).parent}: on a cluster, --out must be on storage "
            "that every node mounts at the same path")
    return fn(item)


class RayExecutor:
    """Work items as Ray tasks; see the module docstring."""

    def __init__(self, out: Path, address: str | None = None, workers: int | None = None):
        self.out = Path(out)
        self.address = address
        self.workers = workers or 1  # threads per task when the grid has fewer items than this (see bench)
        self.local_cpus = workers or os.cpu_count() or 1

    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[tuple[Any, Any]]:
        ray = _import_ray()
        session_dir = None
        started = not ray.is_initialized()
        if started:
            quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            if self.address is None:
                session_dir = tempfile.mkdtemp(prefix="statewise-ray-")
                os.environ.setdefault("RAY_AUTH_TOKEN", _LOCAL_TOKEN)  # no token file in the home directory
                ray.init(num_cpus=self.local_cpus, _temp_dir=session_dir, **quiet)
            else:
                _reachable(self.address)
                try:
                    ray.init(address=self.address, **quiet)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise StatewiseError(f"cannot join the Ray cluster at {self.address}: "
                                         f"{str(exc).strip().splitlines()[0][:200]}") from None
        marker = self.out / f".statewise-shared-{uuid.uuid4().hex}"
        self.out.mkdir(parents=True, exist_ok=True)
        marker.write_text("statewise bench: every node must see this file\n")
        remote = ray.remote(max_retries=RETRIES)(_task)
        refs = {}
        cluster = ray.cluster_resources()
        try:
            for item in items:
                resources = item.resources() if hasattr(item, "resources") else {"num_cpus": 1}
                short = [f"{need:g} {_RESOURCE[name]}" for name, need in resources.items()
                         if need > cluster.get(_RESOURCE[name], 0)]
                if short:  # Ray would wait for them forever
                    have = ", ".join(f"{kind} {cluster.get(kind, 0):g}" for kind in ("CPU", "GPU"))
                    yield item, StatewiseError(f"needs {' and '.join(short)}, more than the Ray cluster has ({have})")
                    continue
                refs[remote.options(**resources).remote(fn, item, str(marker))] = item
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ref = ready[0]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a failed task is reported, the grid goes on
                    result = _unwrap(exc)
                yield refs[ref], result
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            marker.unlink(missing_ok=True)
            if started:
                ray.shutdown()
            if session_dir is not None:
                shutil.rmtree(session_dir, ignore_errors=True)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT that does not answer fails in one line now (Ray itself would keep retrying for minutes)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise StatewiseError(f"cannot join the Ray cluster at {address}: {exc}") from None


def _unwrap(exc: Exception) -> Exception:
    """The task's own exception where Ray kept it (RayTaskError wraps it), else Ray's."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc
