"""Running a grid: work items (a cell's seeds as one population, or one run), executors that run them (worker processes
on this machine; :mod:`statewise.grid.ray_executor` for a Ray cluster), and :func:`bench`, which reuses finished runs,
resumes interrupted ones and refuses runs trained with other settings.

An executor only has to turn work items into results: ``run(fn, items)`` yields ``(item, fn(item))`` as items
finish, or ``(item, exception)`` for an item that failed; adding an engine touches one file.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from statewise.errors import StatewiseError
from statewise.grid.plan import RunSpec, group_specs, stale
from statewise.run import runio


@dataclass(frozen=True)
class Group:
    """A work item: the seeds of one grid cell trained as one population (``resume``: continued from their resume
    states, statewise.run.resume)."""

    specs: tuple[RunSpec, ...]
    resume: bool = False

    def resources(self) -> dict[str, float]:
        """What the item needs of a machine (for cluster executors): its runs' torch threads as CPUs, a GPU for cuda."""
        cfg = self.specs[0].build()
        return {"num_cpus": max(1, cfg.threads), "num_gpus": 1 if cfg.device.startswith("cuda") else 0}

    def describe(self) -> str:
        first = self.specs[0]
        seeds = ",".join(str(spec.seed) for spec in self.specs)
        return f"{first.label or first.algo} on {first.env.split('/')[-1]}, seed(s) {seeds}"


def run_group(group: Group | tuple[RunSpec, ...]) -> list[dict[str, Any]]:
    """Train the seeds of one grid cell (same env, same variant) as one population, in a worker process, and return
    their summaries in order. A group of one is an ordinary single run.

    Safe to run again after a crash (a cluster retries a task whose node died): runs that an earlier attempt left with
    a common resume state are resumed; other leftovers are moved aside and trained again."""
    from statewise.api import resume_runs, train_population
    from statewise.run import resume

    if not isinstance(group, Group):
        group = Group(tuple(group))
    dirs = [Path(spec.run_dir) for spec in group.specs]
    existing = [d for d in dirs if d.exists()]
    resumable = (len(existing) == len(dirs)
                 and bool(set.intersection(*(set(resume.available(d)) for d in dirs))))
    if group.resume or resumable:
        results = resume_runs(dirs, progress=False, threads=group.specs[0].threads)
    else:
        for d in existing:
            runio.move_aside(d, runio.INTERRUPTED_MARK)
        results = train_population([spec.build() for spec in group.specs])
    return [result.summary for result in results]


class GridIncomplete(Exception):
    """Some work items of a grid failed (they raised, or their worker died); the others finished."""

    def __init__(self, failures: list[tuple[Group, BaseException]], summaries: list[dict[str, Any]]):
        self.failures, self.summaries = failures, summaries
        super().__init__("; ".join(f"{g.describe()}: {type(e).__name__}: {_first_line(e)}" for g, e in failures))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def run_spec(spec: RunSpec) -> dict[str, Any]:
    """Train one grid cell (in a worker process) and return its summary."""
    return run_group((spec,))[0]


class Executor(Protocol):
    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (item, fn(item)) as the items finish, in any order; (item, exception) for an item that failed."""


class WorkerDied(RuntimeError):
    """A work item's worker process died before it returned (killed, e.g. by the OS when memory ran out, or
    crashed in native code); the other work items are not affected."""


class LocalExecutor:
    """Worker processes on this machine (one per core by default), one fresh process per work item, started with
    ``spawn`` (forking a process whose torch thread pools are running can deadlock the child). A worker that dies
    (killed by the OS for memory, a crash in native code) fails its own item with :class:`WorkerDied`; the items
    beside it and those still queued go on. The workers die with the parent: on Ctrl-C or SIGTERM the parent
    terminates them before it exits, and on Linux the kernel kills them if the parent is killed outright
    (PR_SET_PDEATHSIG), so no orphan keeps training. With ``lock`` (a :class:`GridLock`'s workers file) each worker
    holds a shared lock on it while it lives."""

    def __init__(self, workers: int, lock: Path | None = None):
        self.workers = workers
        self.lock = lock

    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[tuple[Any, Any]]:
        if self.workers <= 1:
            call = _Indexed(fn, items)
            for i in range(len(items)):
                yield call(i)
            return
        import multiprocessing
        from multiprocessing.connection import wait

        ctx = multiprocessing.get_context("spawn")
        lock = str(self.lock) if self.lock else None
        queued = list(range(len(items)))
        running: dict[int, tuple[Any, Any]] = {}  # item index -> (process, the end of its pipe we read)
        try:  # from the first start on: an interrupt while a worker spawns is cleaned up too
            while queued or running:
                while queued and len(running) < self.workers:
                    i = queued.pop(0)
                    reader, writer = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=_work, args=(fn, items[i], writer, lock), name=f"statewise-{i}")
                    running[i] = (process, reader)
                    process.start()
                    writer.close()  # the worker holds the only writer: its death ends the pipe
                ready = set(wait([end for process, reader in running.values() for end in (reader, process.sentinel)]))
                for i, (process, reader) in list(running.items()):
                    if reader in ready or process.sentinel in ready:
                        result = _receive(process, reader)
                        del running[i]
                        yield items[i], result
        finally:  # after an interrupt (or a consumer that stopped early): the running workers stop now
            _stop(process for process, _ in running.values())
            for _, reader in running.values():
                reader.close()


def _work(fn: Callable[[Any], Any], item: Any, writer: Any, lock: str | None) -> None:
    """In a worker process: fn(item), or the exception it raised, sent back through ``writer``."""
    _die_with_parent(lock)
    try:
        result = fn(item)
    except Exception as exc:  # noqa: BLE001 - reported with its item; the grid goes on
        result = exc
    if isinstance(result, BaseException):  # one that does not survive pickling is sent as text
        try:
            pickle.loads(pickle.dumps(result))
        except Exception:  # noqa: BLE001 - e.g. an __init__ with more arguments than its args
            result = RuntimeError(f"{type(result).__name__}: {_first_line(result)}")
    try:
        writer.send(result)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled (nothing was sent yet)
        writer.send(RuntimeError(f"the result could not be sent back: {type(exc).__name__}: {_first_line(exc)}"))
    writer.close()


def _receive(process: Any, reader: Any) -> Any:
    """What a finished (or dead) worker sent back: its item's result or exception, or :class:`WorkerDied`."""
    try:
        result = reader.recv()
    except (EOFError, OSError):  # the worker died before it sent anything
        process.join()
        return WorkerDied(f"its worker process (pid {process.pid}) died before the run finished: "
                          f"{_how(process.exitcode)}; run bench again to resume or retrain it")
    except Exception as exc:  # noqa: BLE001 - sent, but it cannot be unpickled here
        result = RuntimeError(f"the result of the work item could not be read: {type(exc).__name__}: "
                              f"{_first_line(exc)}")
    finally:
        reader.close()
    process.join()
    return result


def _how(exitcode: int | None) -> str:
    """How a process ended, for a message: 'killed by SIGKILL (...)' or 'exited with code 3'."""
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        oom = " (as the OS does when memory runs out)" if name == "SIGKILL" else ""
        return f"killed by {name}{oom}"
    return f"exited with code {exitcode}"


def _stop(processes: Iterable[Any]) -> None:
    """Terminate the workers still running (after an interrupt) and wait for them, killing any that lingers."""
    processes = [p for p in processes if p.pid is not None]  # one whose start was interrupted never ran
    for process in processes:
        if process.exitcode is None:
            process.terminate()  # the worker's SIGTERM is the default action: it ends at once
    for process in processes:
        process.join(timeout=5.0)
        if process.exitcode is None:
            process.kill()
            process.join(timeout=5.0)


class _Indexed:
    """fn applied to items[i], returning (item, result), or (item, exception) if it raised (one worker: in this
    process)."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any]):
        self.fn, self.items = fn, items

    def __call__(self, i: int) -> tuple[Any, Any]:
        try:
            return self.items[i], self.fn(self.items[i])
        except Exception as exc:  # noqa: BLE001 - reported with its item; the grid goes on
            return self.items[i], exc


_WORKER_LOCK = None  # a worker's open, shared-locked GridLock workers file (held for the life of the process)


def _die_with_parent(lock: str | None = None) -> None:
    """In a worker: be killed when the parent dies (Linux prctl; elsewhere the parent's handlers must do it), leave
    Ctrl-C to the parent, which terminates the workers itself, and hold the grid's workers lock (shared)."""
    import fcntl
    import signal
    import sys

    global _WORKER_LOCK
    if lock is not None:
        _WORKER_LOCK = open(lock, "a")
        fcntl.flock(_WORKER_LOCK, fcntl.LOCK_SH)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's terminate() ends a worker at once
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL("libc.so.6").prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:
            pass
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


class GridLock:
    """An exclusive lock on ``OUT/.bench.lock`` for the life of a bench, and a check that no worker of an earlier bench
    still holds its shared lock on ``OUT/.bench.workers.lock``: a second bench on the same grid, or a restart while old
    workers are still stopping, is refused with one line instead of colliding with them."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".bench.lock"
        self.workers = Path(out) / ".bench.workers.lock"
        self.fh = None

    def __enter__(self) -> GridLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        busy = f"another statewise bench is running in {self.path.parent} (or its workers are still stopping); " \
               "nothing was started"
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise StatewiseError(busy) from None
        with open(self.workers, "a") as probe:  # free unless a worker of an earlier bench is alive
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.fh.close()
                raise StatewiseError(busy) from None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()


def bench(specs: list[RunSpec], executor: Executor, progress: bool = True, populations: bool = True,
          redo: bool = False) -> list[dict[str, Any]]:
    """Run the specs not yet finished; return the summaries of the whole grid. With ``populations`` (the default) the
    unfinished seeds of each (env, variant) cell train together in one process (:func:`run_group`).

    A finished run (summary.json) is reused and an interrupted one with a resume state is resumed, but only if its
    config.yaml resolves to the settings the spec asks for (:func:`fingerprint`); otherwise one line says what differs,
    before anything runs, or with ``redo`` the old run is moved aside (``.stale-<time>``) and trained again. An
    interrupted run without a resume state is moved aside (``.interrupted-<time>``) and trained again."""
    done, todo, resumable = _triage(specs, redo)
    groups = _work_items(todo, resumable, populations, getattr(executor, "workers", 1))
    bar = tqdm(total=len(specs), initial=len(done), disable=not progress, unit="run", desc="grid")
    failures: list[tuple[Group, BaseException]] = []
    results = executor.run(run_group, groups)
    try:
        for group, summaries in results:
            if isinstance(summaries, BaseException):
                failures.append((group, summaries))
                tqdm.write(f"statewise: {group.describe()} failed: {type(summaries).__name__}: "
                           f"{_first_line(summaries)}")
                bar.update(len(group.specs))
                continue
            for spec, summary in zip(group.specs, summaries, strict=True):  # one summary per run, in order
                done.append(summary)
                bar.set_postfix_str(_outcome(spec, summary))
                bar.update(1)
    except BaseException:
        bar.disable = True  # not drawn again: the error's one line stands alone
        raise
    finally:  # an interrupt here, between results, stops the executor's workers now (not when it is collected)
        close = getattr(results, "close", None)
        if close is not None:
            close()
        bar.close()
    if failures:
        raise GridIncomplete(failures, done)
    return done


def _triage(specs: list[RunSpec], redo: bool) -> tuple[list[dict[str, Any]], list[RunSpec], list[RunSpec]]:
    """(summaries of the finished runs, specs to train, specs to resume). Moves aside what cannot be reused: a run
    trained with other settings (only with ``redo``, else refused) and an interrupted run without a resume state."""
    from statewise.run import resume

    done, todo, resumable = [], [], []
    for spec in specs:
        run_dir = Path(spec.run_dir)
        summary = run_dir / runio.SUMMARY_FILE
        if run_dir.exists() and (run_dir / runio.CONFIG_FILE).is_file():
            why = stale(spec, run_dir)
            if why is not None:
                if not redo:
                    raise StatewiseError(f"{run_dir} was trained with other settings ({why}); rerun with --redo "
                                         "to move it aside and train it again")
                runio.move_aside(run_dir, runio.STALE_MARK)
        if summary.is_file():
            done.append(runio.read_json(summary))
            continue
        if run_dir.exists():
            if resume.available(run_dir):
                resumable.append(spec)
                continue
            runio.move_aside(run_dir, runio.INTERRUPTED_MARK)
        todo.append(spec)
    return done, todo, resumable


def _work_items(todo: list[RunSpec], resumable: list[RunSpec], populations: bool, workers: int) -> list[Group]:
    """The work items: populations (or single runs) to train, then to resume; with fewer items than workers, each
    item's runs get the spare cores as torch threads."""
    from statewise.run import resume

    groups = [Group(g) for g in group_specs(todo, populations)]
    for g in group_specs(resumable, populations):  # resumed together where the members share a checkpoint step
        steps = [set(resume.available(Path(spec.run_dir))) for spec in g]
        groups += [Group(g, resume=True)] if set.intersection(*steps) else [Group((spec,), resume=True) for spec in g]
    if groups and len(groups) < workers:  # fewer work items than cores: each gets the spare cores as threads
        groups = [dataclasses.replace(g, specs=tuple(dataclasses.replace(spec, threads=workers // len(groups))
                                                     for spec in g.specs)) for g in groups]
    return groups


def _outcome(spec: RunSpec, summary: dict[str, Any]) -> str:
    """A finished run in the progress bar: its name and final return and cost, or where it failed."""
    name = f"{spec.label or spec.algo} {spec.env.split('/')[-1]} s{spec.seed}"
    if summary.get("status") == "failed":
        return f"{name}: FAILED at step {summary['failure']['step']}"
    fe = summary["final_eval"]
    return f"{name}: return {fe['return']:.2f} cost {fe['cost']:.2f}"
