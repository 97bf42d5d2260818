"""The public training functions: ``statewise.train``, ``train_population``, ``population_configs`` and resume.

They check their input, hand the work to :class:`statewise.run.trainer.Trainer` and draw each run's plots
(:mod:`statewise.analysis.plots`); this module sits above both, so neither imports the other.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statewise.analysis.plots import plot_runs
from statewise.config import Config
from statewise.errors import ConfigError, RunDirError
from statewise.run import resume as resume_io
from statewise.run import runio
from statewise.run.trainer import Trainer, check_population, prepare_process


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)  # RUN_DIR/plots/*.png (none when trained with plots=False)

    @property
    def failed(self) -> bool:
        """The run stopped early because something became non-finite (``summary["failure"]`` says what)."""
        return self.summary.get("status") == "failed"


def default_run_dir(cfg: Config) -> Path:
    env_name = cfg.env.split("/")[-1].split(":")[-1]
    return Path("runs") / env_name / f"{cfg.label}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def population_configs(config: Config, seeds: list[int], run_dir: str | Path | None = None) -> list[Config]:
    """One config per seed, identical otherwise. With ``run_dir``, member k writes ``run_dir/<label>-s<seed>`` (the
    names ``statewise bench`` gives); without, each gets its own default directory."""
    if not seeds:
        raise ConfigError("a population needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"population seeds must be distinct, got {seeds}")
    out = []
    for seed in seeds:
        cfg = copy.deepcopy(config)
        cfg.seed = int(seed)
        cfg.validate()
        cfg.run_dir = str(Path(run_dir) / f"{cfg.label}-s{seed}") if run_dir else ""
        out.append(cfg)
    return out


def train(config: Config | dict | str | Path, plots: bool = True) -> TrainResult:
    """Train one agent as described by ``config`` (a Config, a dict of keys, or a YAML path).

    Writes a new run directory (``config.run_dir``, or ``runs/<env>/<algo>-s<seed>-<time>``) with
    config.yaml, versions.json, metrics.csv, eval.csv, tb/ events, checkpoint.pt, probe.npz, summary.json and
    (unless ``plots=False``) plots/: the run directory ``statewise train`` writes. Raises a
    :class:`statewise.errors.StatewiseError` on bad input, before writing. A single run is a population of one
    (:func:`train_population`).
    """
    if isinstance(config, (str, Path)):
        cfg = Config.from_yaml(config)
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    else:
        cfg = copy.deepcopy(config)  # the caller's object is left as it was (validate resolves 'auto')
    return train_population([cfg], plots=plots)[0]


def train_population(configs: list[Config], _resumed: list[dict[str, Any]] | None = None,
                     plots: bool = True) -> list[TrainResult]:
    """Train S independent agents in one process, one batched update for all (``statewise train --seeds``).

    ``configs`` differ only in ``seed`` and ``run_dir`` (see :func:`population_configs`). Member k writes exactly the
    run directory that ``train(configs[k])`` would write, with identical files on CPU apart from timings: every
    network, optimiser state, multiplier, replay buffer and random stream has its own member slice. (Compiled, that
    holds between populations of two or more; a compiled population of one rounds differently: docs/algorithm.md
    §6b.) With ``plots`` each run directory gets its plots/ (learning curves, λ map), as from ``statewise train``.
    """
    configs = [copy.deepcopy(c).validate() for c in configs]
    check_population(configs)
    run_dirs = [Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg) for cfg in configs]
    if len(set(run_dirs)) != len(run_dirs):
        raise RunDirError("members of a population need distinct run directories")
    for run_dir in run_dirs:
        if _resumed is None and runio.exists(run_dir):
            raise RunDirError(f"run directory {run_dir} already exists; choose another --run-dir "
                              "(nothing was overwritten)")
    prepare_process(configs[0])
    with Trainer(configs, run_dirs, _resumed) as trainer:
        summaries = trainer.open().run()
        run_dirs = [m.run_dir for m in trainer.members]
    results = [TrainResult(d, summary) for d, summary in zip(run_dirs, summaries, strict=True)]
    if plots:
        for result in results:
            result.plots = plot_runs([result.run_dir], result.run_dir / "plots")
    return results


def resume(path: str | Path, progress: bool | None = None, plots: bool = True,
           trust: bool = False) -> list[TrainResult]:
    """Continue a killed run (``statewise train --resume``) from its newest resume state: ``path`` is a run directory,
    or a directory of runs trained together as a population (``--seeds``; runs that finished or failed are left as
    they are). On CPU the continued run writes exactly the files an uninterrupted run writes (timings aside).

    A resume file is never unpickled as a whole; its environments are, when this user's statewise signed them or when
    ``trust`` vouches for the file (see :mod:`statewise.run.resume`)."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"nothing to resume: {path} is not a directory")
    if (path / runio.CONFIG_FILE).is_file():
        candidates = [path]
    else:
        candidates = sorted(d for d in path.iterdir()
                            if not runio.moved_aside(d) and (d / runio.CONFIG_FILE).is_file())
    todo = [d for d in candidates if not (d / runio.SUMMARY_FILE).is_file()]
    if not todo:
        raise RunDirError(f"nothing to resume in {path}: " + ("every run has finished (summary.json)" if candidates
                                                              else "no run directory (config.yaml) found"))
    return resume_runs(todo, progress=progress, plots=plots, trust=trust)


def resume_runs(run_dirs: list[Path], progress: bool | None = None, threads: int | None = None,
                plots: bool = True, trust: bool = False) -> list[TrainResult]:
    """Continue these runs as one population from the newest resume state they all have (see :func:`resume`)."""
    for d in run_dirs:
        resume_io.remove_temporaries(d)
    states = resume_io.load_common(run_dirs, trust=trust)
    configs = []
    for d in run_dirs:
        cfg = Config.from_yaml(d / runio.CONFIG_FILE)
        cfg.run_dir = str(d)
        if progress is not None:
            cfg.progress = progress
        if threads is not None:
            cfg.threads = threads
        configs.append(cfg)
    return train_population(configs, _resumed=states, plots=plots)
