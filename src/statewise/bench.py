"""Multi-seed benchmark grids and their report (``statewise bench`` / ``statewise report``).

A grid is every (env, algo, seed) combination, one run directory each under ``OUT/<env>/<algo>-s<seed>``.
Runs are executed by an :class:`Executor`; the local one uses worker processes. A cluster engine can
replace it without touching the rest: it only has to turn specs into summaries. Finished runs (with a
``summary.json``) are skipped, so an interrupted grid continues where it stopped; an unfinished run
directory is moved aside (``.interrupted-<time>``), never deleted.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
from tqdm import tqdm

from statewise import runio
from statewise.config import Config
from statewise.errors import StatewiseError
from statewise.metrics import (
    last_fraction_mean, mean_ci95, neighbour_correlation, oscillation_count, temporal_std, threshold_crossings,
    total_variation)


@dataclass(frozen=True)
class RunSpec:
    algo: str
    env: str
    seed: int
    steps: int
    run_dir: str
    config: str = ""  # YAML file with the shared settings ("" = defaults)
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def build(self) -> Config:
        cfg = Config.from_yaml(self.config) if self.config else Config()
        cfg.algo, cfg.env, cfg.seed, cfg.steps, cfg.run_dir = self.algo, self.env, self.seed, self.steps, self.run_dir
        cfg.progress, cfg.threads = False, 1  # one torch thread per worker process
        cfg.apply_overrides(list(self.overrides))
        return cfg.validate()


def run_spec(spec: RunSpec) -> dict[str, Any]:
    """Train one grid cell (in a worker process) and return its summary."""
    from statewise.train import train

    return train(spec.build()).summary


class Executor(Protocol):
    def run(self, fn: Callable[[RunSpec], dict], specs: list[RunSpec]) -> Iterator[tuple[RunSpec, dict]]:
        """Yield (spec, fn(spec)) as runs finish, in any order."""


class LocalExecutor:
    """Worker processes on this machine (one per core by default)."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, fn: Callable[[RunSpec], dict], specs: list[RunSpec]) -> Iterator[tuple[RunSpec, dict]]:
        if self.workers <= 1:
            for spec in specs:
                yield spec, fn(spec)
            return
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(fn, spec): spec for spec in specs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()


def plan(algos: list[str], envs: list[str], seeds: list[int], steps: int, out: Path, config: str = "",
         overrides: tuple[str, ...] = ()) -> list[RunSpec]:
    specs = []
    for env in envs:
        env_name = env.split("/")[-1].split(":")[-1]
        for algo in algos:
            for seed in seeds:
                specs.append(RunSpec(algo, env, seed, steps, str(out / env_name / f"{algo}-s{seed}"), config,
                                     tuple(overrides)))
    for spec in specs:  # fail on bad input before anything runs
        spec.build()
    return specs


def bench(specs: list[RunSpec], executor: Executor, progress: bool = True) -> list[dict[str, Any]]:
    """Run the specs not yet finished; return the summaries of the whole grid."""
    done, todo = [], []
    for spec in specs:
        run_dir = Path(spec.run_dir)
        summary = run_dir / runio.SUMMARY_FILE
        if summary.is_file():
            done.append(json.loads(summary.read_text()))
            continue
        if run_dir.exists():
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))
        todo.append(spec)
    bar = tqdm(total=len(specs), initial=len(done), disable=not progress, unit="run", desc="grid")
    for spec, summary in executor.run(run_spec, todo):
        done.append(summary)
        fe = summary["final_eval"]
        bar.set_postfix_str(f"{spec.algo} {spec.env.split('/')[-1]} s{spec.seed}: return {fe['return']:.2f} "
                            f"cost {fe['cost']:.2f}")
        bar.update(1)
    bar.close()
    return done


# ----------------------------------------------------------------------------------------- report
def run_metrics(run_dir: Path, cost_limit: float) -> dict[str, float]:
    """Everything the report tabulates for one run (ALGORITHM.md §10)."""
    from statewise.plots import read_csv

    summary = json.loads((run_dir / runio.SUMMARY_FILE).read_text())
    ev = read_csv(run_dir / runio.EVAL_CSV)
    out = {
        "return (last 10% of evals)": last_fraction_mean(ev["return"]),
        "episode cost (last 10%)": last_fraction_mean(ev["cost"]),
        "eval episode violation prob (last 10%)": last_fraction_mean(ev["episode_violation_prob"]),
        "training violation ratio": summary["train_violation_ratio"],
        "final return (final eval)": summary["final_eval"]["return"],
        "final cost (final eval)": summary["final_eval"]["cost"],
        "eval cost std (last 20%)": float(np.std(ev["cost"][-max(2, int(np.ceil(0.2 * len(ev["cost"])))):])),
        "eval cost threshold crossings": float(threshold_crossings(ev["cost"], cost_limit)),
        "wall time [s]": summary["wall_time_s"],
        "env steps/s": summary["env_steps_per_s"],
    }
    if "feasible_start_violation_prob" in summary["final_eval"]:
        out["violation prob from feasible starts (final)"] = summary["final_eval"]["feasible_start_violation_prob"]
    for key, value in summary.get("calibration", {}).items():
        if key.endswith(("auroc", "auprc")):
            out[key.replace("_", " ")] = value
    for key, value in summary.get("mc_calibration", {}).items():
        if key.endswith("auroc"):
            out[f"{key.replace('_', ' ')} vs violation within {summary['mc_calibration']['horizon']} steps"] = value
    probe_path = run_dir / runio.PROBE_FILE
    if probe_path.is_file():
        probe = np.load(probe_path)
        lam = probe["lam"]
        if len(lam) > 2:
            out["λ total variation (probe mean)"] = total_variation(lam.mean(axis=1))
            out["λ temporal std (last 20%)"] = temporal_std(lam)
            out["λ oscillations per 100 logs"] = oscillation_count(lam)
            near, far = neighbour_correlation(lam, probe["obs"])
            out["Δλ correlation: nearest neighbours"] = near
            out["Δλ correlation: random pairs"] = far
    return out


def report(out: Path, cost_limit: float = 0.0) -> Path:
    """Write ``OUT/report.md`` and one learning-curve figure per environment from a grid directory."""
    from statewise.plots import lambda_over_training, learning_curves, reliability_curves

    env_dirs = sorted(d for d in Path(out).iterdir() if d.is_dir()) if Path(out).is_dir() else []
    if not env_dirs:
        raise StatewiseError(f"no benchmark runs found in {out}")
    lines = [f"# statewise benchmark report: {out}", ""]
    for env_dir in env_dirs:
        runs = sorted(d for d in env_dir.iterdir() if (d / runio.SUMMARY_FILE).is_file())
        if not runs:
            continue
        by_algo: dict[str, list[dict[str, float]]] = {}
        meta = {}
        for run in runs:
            summary = json.loads((run / runio.SUMMARY_FILE).read_text())
            by_algo.setdefault(summary["algo"], []).append(run_metrics(run, cost_limit))
            meta[summary["algo"]] = summary["steps"]
        figure = learning_curves(runs, env_dir)
        algos = list(by_algo)
        keys = list(dict.fromkeys(k for rows in by_algo.values() for row in rows for k in row))
        lines += [f"## {env_dir.name}", "",
                  f"{len(runs)} runs; steps per run: " + ", ".join(f"{a} {meta[a]}" for a in algos)
                  + "; mean ± 95% CI over seeds (n per algorithm: "
                  + ", ".join(f"{a} {len(by_algo[a])}" for a in algos) + ")", "",
                  "| metric | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
        for key in keys:
            cells = []
            for algo in algos:
                vals = [row[key] for row in by_algo[algo] if key in row and np.isfinite(row[key])]
                if vals:
                    mean, half = mean_ci95(vals)
                    cells.append(f"{mean:.3g} ± {half:.2g}")
                else:
                    cells.append("–")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines += ["", f"![learning curves]({figure.relative_to(out)})", ""]
        for title, extra in (("λ over training", lambda_over_training(runs, env_dir)),
                             ("reliability", reliability_curves(runs, env_dir))):
            if extra is not None:
                lines += [f"![{title}]({extra.relative_to(out)})", ""]
    path = Path(out) / "report.md"
    runio.atomic_write(path, "\n".join(lines) + "\n")
    return path
