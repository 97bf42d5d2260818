"""Multi-seed benchmark grids and their report (``statewise bench`` / ``statewise report``).

A grid is every (env, algo, seed) combination, one run directory each under ``OUT/<env>/<algo>-s<seed>``.
The seeds of one (env, variant) cell train as one population (one process, one batched update; see
:func:`statewise.training.train_population`) unless populations are turned off. Work items (groups of specs) are
executed by an :class:`Executor`; the local one uses worker processes. A cluster engine can replace it without
touching the rest: it only has to turn groups of specs into lists of summaries. Finished runs (with a
``summary.json``) are skipped, so an interrupted grid continues where it stopped; an unfinished run
directory with a resume state is resumed, one without is moved aside (``.interrupted-<time>``), never deleted; a run
whose config.yaml resolves to other settings is refused (``--redo`` moves it aside).
"""

from __future__ import annotations

import dataclasses
import json
import time
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
from tqdm import tqdm

from statewise import runio
from statewise.config import Config, variant_order
from statewise.errors import StatewiseError
from statewise.metrics import (
    last_fraction_mean, mean_ci95, neighbour_correlation, oscillation_count, temporal_std, threshold_crossings,
    total_variation)


def _as_overrides(mapping: dict[str, Any]) -> list[str]:
    """{key: value} -> ["key=value"] with the value written as YAML (so lists and numbers survive)."""
    import yaml

    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in mapping.items()]


@dataclass(frozen=True)
class Variant:
    """One column of a grid: an algorithm, optionally with its own overrides under its own label."""

    label: str
    algo: str
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entry: "str | dict[str, Any] | Variant") -> "Variant":
        """``"fac"``, or a mapping ``{label: fac-lr3e-4, algo: fac, set: [multiplier.lr=3e-4]}``."""
        if isinstance(entry, Variant):
            return entry
        if isinstance(entry, str):
            return cls(entry, entry)
        if not isinstance(entry, dict) or "algo" not in entry:
            raise StatewiseError(f"a grid variant is an algorithm name or a mapping with 'algo', got {entry!r}")
        unknown = set(entry) - {"label", "algo", "set"}
        if unknown:
            raise StatewiseError(f"unknown key(s) in grid variant {entry!r}: {', '.join(sorted(unknown))}")
        sets = entry.get("set") or []
        if isinstance(sets, dict):
            sets = _as_overrides(sets)
        return cls(str(entry.get("label") or entry["algo"]), str(entry["algo"]), tuple(str(x) for x in sets))


@dataclass(frozen=True)
class RunSpec:
    algo: str
    env: str
    seed: int
    steps: int
    run_dir: str
    config: str = ""  # YAML file with the shared settings ("" = defaults)
    overrides: tuple[str, ...] = field(default_factory=tuple)  # shared, then the variant's own
    label: str = ""
    threads: int = 1  # torch threads of the worker process (bench gives spare cores to the populations)

    def build(self) -> Config:
        cfg = Config.from_yaml(self.config) if self.config else Config()
        cfg.algo, cfg.env, cfg.seed, cfg.steps, cfg.run_dir = self.algo, self.env, self.seed, self.steps, self.run_dir
        cfg.label = self.label
        cfg.progress, cfg.threads = False, self.threads
        cfg.apply_overrides(list(self.overrides))
        return cfg.validate()


@dataclass(frozen=True)
class Group:
    """A work item: the seeds of one grid cell trained as one population (``resume``: continued from their resume
    states, statewise.resume)."""

    specs: tuple[RunSpec, ...]
    resume: bool = False


def run_group(group: "Group | tuple[RunSpec, ...]") -> list[dict[str, Any]]:
    """Train the seeds of one grid cell (same env, same variant) as one population, in a worker process, and return
    their summaries in order. A group of one is an ordinary single run."""
    from statewise.training import resume_runs, train_population

    if not isinstance(group, Group):
        group = Group(tuple(group))
    if group.resume:
        results = resume_runs([Path(spec.run_dir) for spec in group.specs], progress=False,
                              threads=group.specs[0].threads)
    else:
        results = train_population([spec.build() for spec in group.specs])
    return [result.summary for result in results]


# settings that do not change what a run computes (threads: bitwise equal results are tested for 1 and 2)
_NOT_FINGERPRINTED = {"run_dir", "threads", "progress"}


def fingerprint(cfg: Config) -> dict[str, Any]:
    """The resolved settings a run's results depend on (config.yaml minus run_dir, threads, progress)."""
    flat = _flat(cfg.to_dict())
    return {k: v for k, v in flat.items() if k.split(".")[0] not in _NOT_FINGERPRINTED}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _stale(spec: RunSpec, run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` is not the run ``spec`` asks for (None if it is)."""
    try:
        old = Config.from_yaml(run_dir / runio.CONFIG_FILE).validate()
    except StatewiseError as exc:
        return f"its config.yaml cannot be read ({exc})"
    want, have = fingerprint(spec.build()), fingerprint(old)
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if not diff:
        return None
    shown = ", ".join(f"{k}: {have.get(k)!r} there, {want.get(k)!r} asked" for k in diff[:3])
    return shown + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")


def run_spec(spec: RunSpec) -> dict[str, Any]:
    """Train one grid cell (in a worker process) and return its summary."""
    return run_group((spec,))[0]


class Executor(Protocol):
    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (item, fn(item)) as the items finish, in any order."""


class LocalExecutor:
    """Worker processes on this machine (one per core by default), one fresh process per work item. The workers die
    with the parent: on Ctrl-C or SIGTERM the parent terminates them before it exits, and on Linux the kernel kills
    them if the parent is killed outright (PR_SET_PDEATHSIG), so no orphan keeps training."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[tuple[Any, Any]]:
        if self.workers <= 1:
            for item in items:
                yield item, fn(item)
            return
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(self.workers, initializer=_die_with_parent,
                                                        maxtasksperchild=1)
        try:
            for item, result in pool.imap_unordered(_Indexed(fn, items), range(len(items))):
                yield item, result
            pool.close()
        except BaseException:
            pool.terminate()  # SIGTERM to every worker now; the queued items never start
            raise
        finally:
            pool.join()


class _Indexed:
    """fn applied to items[i], returning (item, result) (picklable for the pool)."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any]):
        self.fn, self.items = fn, items

    def __call__(self, i: int) -> tuple[Any, Any]:
        return self.items[i], self.fn(self.items[i])


def _die_with_parent() -> None:
    """In a worker: be killed when the parent dies (Linux prctl; elsewhere the parent's handlers must do it), and
    leave Ctrl-C to the parent, which terminates the workers itself."""
    import signal
    import sys

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
    """An exclusive lock on ``OUT/.bench.lock`` for the life of a bench (workers inherit it, so the lock is only free
    when every worker is gone): a second bench on the same grid, or a restart while old workers are still stopping,
    is refused with one line instead of colliding with them."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".bench.lock"
        self.fh = None

    def __enter__(self) -> "GridLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise StatewiseError(f"another statewise bench is running in {self.path.parent} (or its workers are "
                                 "still stopping); nothing was started") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()


def group_specs(specs: list[RunSpec], populations: bool = True) -> list[tuple[RunSpec, ...]]:
    """The seeds of each (env, variant) cell as one population (in seed order), or every run on its own."""
    if not populations:
        return [(spec,) for spec in specs]
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        cells.setdefault((spec.env, spec.label, spec.algo, spec.config, spec.overrides, spec.steps), []).append(spec)
    return [tuple(sorted(group, key=lambda sp: sp.seed)) for group in cells.values()]


def plan(algos: list[str | dict[str, Any] | Variant], envs: list[str], seeds: list[int], steps: int, out: Path,
         config: str = "", overrides: tuple[str, ...] = ()) -> list[RunSpec]:
    """Every (env, variant, seed) cell as a RunSpec with its directory ``out/<env>/<label>-s<seed>``."""
    variants = [Variant.parse(a) for a in algos]
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise StatewiseError(f"grid labels must be unique, got {', '.join(labels)}")
    if len(set(seeds)) != len(seeds):
        raise StatewiseError(f"grid seeds must be unique, got {seeds}")
    specs = []
    for env in envs:
        env_name = env.split("/")[-1].split(":")[-1]
        for v in variants:
            for seed in seeds:
                specs.append(RunSpec(v.algo, env, seed, steps, str(out / env_name / f"{v.label}-s{seed}"), config,
                                     tuple(overrides) + v.overrides, v.label))
    for spec in specs:  # fail on bad input before anything runs
        spec.build()
    return specs


GRID_KEYS = {"algos", "envs", "seeds", "steps", "config", "set", "cost_limit"}


def load_grid(path: str | Path) -> dict[str, Any]:
    """A grid file (YAML): ``algos`` (names or variant mappings), ``envs``, ``seeds`` (list), ``steps``,
    ``config`` (relative to the grid file), ``set`` (shared overrides: a list of ``key=value`` or a mapping),
    ``cost_limit``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise StatewiseError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StatewiseError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StatewiseError(f"cannot read grid file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StatewiseError(f"grid file {path} must hold a mapping")
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise StatewiseError(f"unknown key(s) in grid file {path}: {', '.join(sorted(unknown))}; "
                             f"expected {', '.join(sorted(GRID_KEYS))}")
    if "config" in data:
        if not isinstance(data["config"], str) or not data["config"]:
            raise StatewiseError(f"grid file {path}: config must be a file name, got {data['config']!r}")
        data["config"] = str((path.parent / data["config"]).resolve())
    if "seeds" in data and not (isinstance(data["seeds"], list) and all(isinstance(x, int) for x in data["seeds"])):
        raise StatewiseError(f"grid file {path}: seeds must be a list of integers")
    if isinstance(data.get("set"), dict):  # {key: value} is the same as [key=value, ...]
        data["set"] = _as_overrides(data["set"])
    for key in ("algos", "envs", "set"):
        if key in data and not isinstance(data[key], list):
            raise StatewiseError(f"grid file {path}: {key} must be a list")
    if "steps" in data and not (isinstance(data["steps"], int) and not isinstance(data["steps"], bool)
                                and data["steps"] > 0):
        raise StatewiseError(f"grid file {path}: steps must be a positive integer, got {data['steps']!r}")
    if "cost_limit" in data:
        limit = data["cost_limit"]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not np.isfinite(limit):
            raise StatewiseError(f"grid file {path}: cost_limit must be a finite number, got {limit!r}")
    for key in ("envs", "set"):
        if key in data and not all(isinstance(x, str) and x for x in data[key]):
            raise StatewiseError(f"grid file {path}: {key} must be a list of non-empty strings")
    if "config" in data and not Path(data["config"]).is_file():
        raise StatewiseError(f"grid file {path}: config file {data['config']} not found")
    if "algos" in data:
        data["algos"] = [Variant.parse(entry) for entry in data["algos"]]
    return data


def bench(specs: list[RunSpec], executor: Executor, progress: bool = True, populations: bool = True,
          redo: bool = False) -> list[dict[str, Any]]:
    """Run the specs not yet finished; return the summaries of the whole grid. With ``populations`` (the default) the
    unfinished seeds of each (env, variant) cell train together in one process (:func:`run_group`).

    A finished run (summary.json) is reused and an interrupted one with a resume state is resumed, but only if its
    config.yaml resolves to the settings the spec asks for (:func:`fingerprint`); otherwise one line says what differs,
    before anything runs, or with ``redo`` the old run is moved aside (``.stale-<time>``) and trained again. An
    interrupted run without a resume state is moved aside (``.interrupted-<time>``) and trained again."""
    from statewise import resume

    stamp = time.strftime("%Y%m%d-%H%M%S")
    done, todo, resumable = [], [], []
    for spec in specs:
        run_dir = Path(spec.run_dir)
        summary = run_dir / runio.SUMMARY_FILE
        if run_dir.exists() and (run_dir / runio.CONFIG_FILE).is_file():
            why = _stale(spec, run_dir)
            if why is not None:
                if not redo:
                    raise StatewiseError(f"{run_dir} was trained with other settings ({why}); rerun with --redo "
                                         "to move it aside and train it again")
                run_dir.rename(run_dir.with_name(f"{run_dir.name}.stale-{stamp}"))
        if summary.is_file():
            done.append(runio.read_json(summary))
            continue
        if run_dir.exists():
            if resume.available(run_dir):
                resumable.append(spec)
                continue
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{stamp}"))
        todo.append(spec)
    groups = [Group(g) for g in group_specs(todo, populations)]
    for g in group_specs(resumable, populations):  # resumed together where the members share a checkpoint step
        steps = [set(resume.available(Path(spec.run_dir))) for spec in g]
        groups += [Group(g, resume=True)] if set.intersection(*steps) else [Group((spec,), resume=True) for spec in g]
    workers = getattr(executor, "workers", 1)
    if groups and len(groups) < workers:  # fewer work items than cores: each gets the spare cores as threads
        groups = [dataclasses.replace(g, specs=tuple(dataclasses.replace(spec, threads=workers // len(groups))
                                                     for spec in g.specs)) for g in groups]
    bar = tqdm(total=len(specs), initial=len(done), disable=not progress, unit="run", desc="grid")
    for group, summaries in executor.run(run_group, groups):
        for spec, summary in zip(group.specs, summaries):
            done.append(summary)
            name = f"{spec.label or spec.algo} {spec.env.split('/')[-1]} s{spec.seed}"
            if summary.get("status") == "failed":
                bar.set_postfix_str(f"{name}: FAILED at step {summary['failure']['step']}")
            else:
                fe = summary["final_eval"]
                bar.set_postfix_str(f"{name}: return {fe['return']:.2f} cost {fe['cost']:.2f}")
            bar.update(1)
    bar.close()
    return done


# ----------------------------------------------------------------------------------------- report
def run_metrics(run_dir: Path, cost_limit: float) -> dict[str, float]:
    """Everything the report tabulates for one run (docs/algorithm.md §7)."""
    from statewise.plots import read_csv

    summary = runio.read_json(run_dir / runio.SUMMARY_FILE)
    ev = read_csv(run_dir / runio.EVAL_CSV)
    out = {
        "return (last 10% of evals)": last_fraction_mean(ev["return"]),
        "episode cost (last 10%)": last_fraction_mean(ev["cost"]),
        "eval episode violation prob (last 10%)": last_fraction_mean(ev["episode_violation_prob"]),
        "training violation ratio": summary["train_violation_ratio"],  # after the random warm-up
        **({"training violation ratio incl. warm-up": summary["train_violation_ratio_total"]}
           if "train_violation_ratio_total" in summary else {}),  # runs from before it was recorded lack it
        "final return (final eval)": summary["final_eval"]["return"],
        "final cost (final eval)": summary["final_eval"]["cost"],
        "eval cost std (last 20%)": temporal_std(ev["cost"][:, None]),
        "eval cost threshold crossings": float(threshold_crossings(ev["cost"], cost_limit)),
        "wall time [s]": summary["wall_time_s"],
        "env steps/s": summary["env_steps_per_s"],
    }
    if "feasible_start_violation_prob" in summary["final_eval"]:
        out["violation prob from feasible starts (final)"] = summary["final_eval"]["feasible_start_violation_prob"]
    if "feasible_start_violation_prob" in ev:  # state-wise safety switching on and off between evaluations
        flips = threshold_crossings(ev["feasible_start_violation_prob"], 0.0)
        out["feasible-start safety flips (evals)"] = float(flips)
    for key, value in summary.get("calibration", {}).items():
        if key.endswith(("auroc", "auprc")):
            out[key.replace("_", " ")] = value
    if "lambda_max_slack1" in summary.get("calibration", {}):
        out["max λ on states with ≥ 1 m slack"] = summary["calibration"]["lambda_max_slack1"]
        out["95th pct. λ on states with ≥ 1 m slack"] = summary["calibration"]["lambda_q95_slack1"]
    bias = summary.get("value_bias", {})  # the last measurement (statewise.diagnostics)
    for states in ("feasible", "replay"):
        if f"{states}_qc_bias_median" in bias:
            out[f"Q^c − Monte-Carlo, median, {states} states (final)"] = bias[f"{states}_qc_bias_median"]
        if f"{states}_q_bias_median" in bias:
            out[f"Q − Monte-Carlo, median, {states} states (final)"] = bias[f"{states}_q_bias_median"]
    for key, value in summary.get("mc_calibration", {}).items():
        if key.endswith("auroc"):
            out[f"{key.replace('_', ' ')} vs violation within {summary['mc_calibration']['horizon']} steps"] = value
    probe_path = run_dir / runio.PROBE_FILE
    if probe_path.is_file():
        probe = runio.read_npz(probe_path)
        lam = probe["lam"]
        if len(lam) > 2:
            out["λ total variation (probe mean)"] = total_variation(lam.mean(axis=1))
            out["λ temporal std (last 20%)"] = temporal_std(lam)
            out["λ oscillations per 100 logs"] = oscillation_count(lam)
            near, far = neighbour_correlation(lam, probe["obs"])
            out["Δλ correlation: nearest neighbours"] = near
            out["Δλ correlation: random pairs"] = far
    return out


# The 2x2 ablation (docs/algorithm.md §6): (multiplier training, actor penalty) -> preset.
ABLATION = {("dual ascent", "Lagrangian λ·g"): "fac", ("dual ascent", "augmented ψ_ρ"): "alam-no-dt",
            ("regression to dual target", "Lagrangian λ·g"): "alam-no-qp",
            ("regression to dual target", "augmented ψ_ρ"): "sac-alam"}
HEADLINE_METRICS = ("return (last 10% of evals)", "episode cost (last 10%)", "training violation ratio",
                    "violation prob from feasible starts (final)", "feasible-start safety flips (evals)",
                    "eval cost std (last 20%)", "λ temporal std (last 20%)", "λ oscillations per 100 logs",
                    "lambda auroc", "cost value auroc", "max λ on states with ≥ 1 m slack",
                    "95th pct. λ on states with ≥ 1 m slack",
                    "Q^c − Monte-Carlo, median, feasible states (final)", "wall time [s]")
ABLATION_METRICS = ("return (last 10% of evals)", "episode cost (last 10%)", "training violation ratio",
                    "violation prob from feasible starts (final)", "λ temporal std (last 20%)",
                    "λ oscillations per 100 logs", "lambda auroc")


def _cell(values: list[float | None]) -> str:
    """Mean ± Student-t 95% half-width over the finite values; non-finite ones are counted and shown, never
    silently dropped ("1.2 ± 0.4 [1 of 3 non-finite]"). ``None`` = not measured for that run (e.g. a metric that
    needs the task's exact feasible set): counted separately ("[2 of 3 not measured]"); "–" if none was."""
    measured = [v for v in values if v is not None]
    vals = [v for v in measured if np.isfinite(v)]
    notes = []
    if len(measured) > len(vals):
        notes.append(f"{len(measured) - len(vals)} of {len(values)} non-finite")
    if measured and len(values) > len(measured):
        notes.append(f"{len(values) - len(measured)} of {len(values)} not measured")
    note = f" [{', '.join(notes)}]" if notes else ""
    if not vals:
        return "–" + note
    mean, half = mean_ci95(vals)
    return (f"{mean:.3g} ± {half:.2g}" if len(vals) > 1 else f"{mean:.3g}") + note


def _measured(by_label: dict[str, list[dict[str, float]]], labels: Iterable[str], key: str) -> bool:
    return any(key in row for label in labels for row in by_label[label])


def _ablation_table(by_label: dict[str, list[dict[str, float]]]) -> list[str]:
    if not all(label in by_label for label in ABLATION.values()):
        return []
    lines = ["### Ablation (docs/algorithm.md §6)", "",
             "fac = neither component, alam-no-dt = quadratic penalty only, alam-no-qp = dual-target regression "
             "only, sac-alam = both.", "",
             "| metric | multiplier training | Lagrangian λ·g | augmented ψ_ρ |", "|---|---|---|---|"]
    for key in (k for k in ABLATION_METRICS if _measured(by_label, ABLATION.values(), k)):
        for rule in ("dual ascent", "regression to dual target"):
            cells = [_cell([row.get(key) for row in by_label[ABLATION[(rule, pen)]]])
                     for pen in ("Lagrangian λ·g", "augmented ψ_ρ")]
            lines.append(f"| {key} | {rule} | " + " | ".join(cells) + " |")
    return lines + [""]


def _runs_table(runs: list[Path]) -> list[str]:
    """One row per run: its final evaluation, training violations and speed (the per-seed numbers behind the means)."""
    import yaml

    lines = ["### Each run", "",
             "| run | steps | final return | final cost | training violation ratio | wall time [s] | env steps/s | "
             "population | compiled (s) | networks (actor/critics, λ) | device, threads | torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        summary = runio.read_json(run / runio.SUMMARY_FILE)
        cfg = runio.read_config(run)
        versions_path = run / runio.VERSIONS_FILE
        torch_version = runio.read_json(versions_path).get("torch", "?") if versions_path.is_file() else "?"
        nets = "x".join(map(str, cfg["sac"]["hidden"]))
        if cfg["multiplier"]["kind"] == "network":
            nets += ", " + "x".join(map(str, cfg["multiplier"]["hidden"]))
        population = summary.get("population", 1)  # runs from before populations were single processes
        if summary.get("status") == "failed":
            failure = summary["failure"]
            lines.append(f"| {run.name} | **failed at step {failure['step']}: non-finite {failure['quantity']}** "
                         f"| – | – | – | – | – | {population} | – | {nets} | {cfg['device']}, {cfg['threads']} | "
                         f"{torch_version} |")
            continue
        fe = summary["final_eval"]
        compiled = f"yes ({summary['compile_s']:.0f})" if summary.get("compiled") else "no"
        lines.append(f"| {run.name} | {summary['steps']} | {fe['return']:.3g} | {fe['cost']:.3g} | "
                     f"{summary['train_violation_ratio']:.3g} | {summary['wall_time_s']:.0f} | "
                     f"{summary['env_steps_per_s']:.0f} | {population} | {compiled} | {nets} | "
                     f"{cfg['device']}, {cfg['threads']} | {torch_version} |")
    return lines + [""]


def report(out: Path, cost_limit: float = 0.0) -> Path:
    """Write ``OUT/report.md`` with figures per environment from a grid directory: the metrics table
    (mean ± 95% CI over seeds per variant), the ablation table (docs/algorithm.md §6) when its four variants ran, learning
    curves, λ maps over training, reliability curves and every run's final numbers and speed."""
    from statewise.plots import lambda_over_training, learning_curves, reliability_curves, value_bias_curves

    env_dirs = sorted(d for d in Path(out).iterdir() if d.is_dir()) if Path(out).is_dir() else []
    if not env_dirs:
        raise StatewiseError(f"no benchmark runs found in {out}")
    lines = [f"# statewise benchmark report: {out}", ""]
    for env_dir in env_dirs:
        runs = sorted(d for d in env_dir.iterdir() if (d / runio.SUMMARY_FILE).is_file())
        if not runs:
            continue
        by_label: dict[str, list[dict[str, float]]] = {}
        steps: dict[str, set[int]] = {}
        order: dict[str, tuple[int, bool, str]] = {}
        failed: list[tuple[Path, dict[str, Any]]] = []
        for run in runs:
            summary = runio.read_json(run / runio.SUMMARY_FILE)
            label = summary.get("label", summary["algo"])
            if summary.get("status") == "failed":  # every metric of a diverged run is non-finite, its cost too
                failed.append((run, summary))
                by_label.setdefault(label, []).append({})
            else:
                by_label.setdefault(label, []).append(run_metrics(run, cost_limit))
            steps.setdefault(label, set()).add(summary["steps"])
            order[label] = variant_order(summary["algo"], label)
        figure = learning_curves(runs, env_dir)
        labels = sorted(by_label, key=order.__getitem__)
        keys = list(dict.fromkeys(k for rows in by_label.values() for row in rows for k in row))
        for rows in by_label.values():
            for row in rows:
                if not row:
                    row.update(dict.fromkeys(keys, float("nan")))
        lines += [f"## {env_dir.name}", "",
                  f"{len(runs)} runs; steps per run: "
                  + ", ".join(f"{a} {'/'.join(map(str, sorted(steps[a])))}" for a in labels)
                  + "; mean ± 95% CI (Student's t, t·std/√n) over seeds (n per variant: "
                  + ", ".join(f"{a} {len(by_label[a])}" for a in labels) + "). Non-finite: undefined for that "
                  "run (an AUROC when the final policy never violated has no positive states) or diverged; not "
                  "measured: the run predates the metric or its task lacks what it needs.", ""]
        if failed:
            lines += [f"**{len(failed)} of {len(runs)} runs failed** (diverged; counted as non-finite in every metric, "
                      "never as safe):", ""]
            lines += [f"* {run.name}: non-finite {s['failure']['quantity']} at step {s['failure']['step']}"
                      for run, s in failed] + [""]
        headline = [k for k in HEADLINE_METRICS if k in keys]
        for title, subset in (("Headline", headline), ("All metrics", keys)):
            lines += [f"### {title}", "", "| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
            for key in subset:
                lines.append(f"| {key} | " + " | ".join(_cell([row.get(key) for row in by_label[a]])
                                                     for a in labels) + " |")
            lines.append("")
        lines += _ablation_table(by_label)
        lines += [f"![learning curves]({figure.relative_to(out)})", ""]
        for title, extra in (("λ over training", lambda_over_training(runs, env_dir)),
                             ("reliability", reliability_curves(runs, env_dir)),
                             ("critic estimates against Monte-Carlo truth", value_bias_curves(runs, env_dir))):
            if extra is not None:
                lines += [f"![{title}]({extra.relative_to(out)})", ""]
        lines += _runs_table(runs)
    path = Path(out) / "report.md"
    runio.atomic_write(path, "\n".join(lines) + "\n")
    return path
