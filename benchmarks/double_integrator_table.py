"""SAC-Lag, FAC and SAC-ALaM on statewise/DoubleIntegrator-v0 over several seeds: the README's table.

Runs every (algorithm, seed) with configs/double_integrator.yaml in parallel worker processes (one
torch thread each), skips runs already finished in --out, and prints a markdown table of the final
evaluation (mean ± 95% CI over seeds): return, episode cost, violation probability of episodes that
start in a feasible state, and the AUROC of λ(s) for separating the exact infeasible set from the
feasible set on a 101×101 grid.

    python benchmarks/double_integrator_table.py --seeds 0 1 2 --out bench/di
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "double_integrator.yaml"
METRICS = [("return", "final_eval", "return"), ("episode cost", "final_eval", "cost"),
           ("violation prob. from feasible starts", "final_eval", "feasible_start_violation_prob"),
           ("λ AUROC (infeasible vs feasible)", "calibration", "lambda_auroc"),
           ("Q^c AUROC (reference)", "calibration", "cost_value_auroc"),
           ("wall time [s]", None, "wall_time_s")]


def run_one(algo: str, seed: int, steps: int, run_dir: str, sets: list[str]) -> dict:
    from statewise import Config, train

    cfg = Config.from_yaml(CONFIG)
    cfg.algo, cfg.seed, cfg.steps, cfg.run_dir, cfg.progress, cfg.threads = algo, seed, steps, run_dir, False, 1
    cfg.apply_overrides(sets)
    return train(cfg).summary


def mean_ci(values: list[float]) -> str:
    vals = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(vals) == 0:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3g}"
    half = 1.96 * vals.std(ddof=1) / math.sqrt(len(vals))
    return f"{vals.mean():.3g} ± {half:.2g}"


def table(summaries: dict[str, list[dict]]) -> str:
    algos = list(summaries)
    lines = ["| metric | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for label, group, key in METRICS:
        cells = []
        for algo in algos:
            vals = [(s[group] if group else s).get(key, float("nan")) for s in summaries[algo]]
            cells.append(mean_ci(vals))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n = {len(v) for v in summaries.values()}
    lines.append("")
    lines.append(f"mean ± 95% CI (1.96·std/√n) over n = {'/'.join(map(str, sorted(n)))} seeds per algorithm")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="sac-lag,fac,sac-alam")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="default: the config's steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("bench/double_integrator"))
    args = parser.parse_args()
    from statewise import Config

    steps = args.steps or Config.from_yaml(CONFIG).steps
    algos = args.algos.split(",")
    jobs, summaries = [], {a: [] for a in algos}
    for algo in algos:
        for seed in args.seeds:
            run_dir = args.out / f"{algo}-s{seed}"
            if (run_dir / "summary.json").is_file():
                summaries[algo].append(json.loads((run_dir / "summary.json").read_text()))
            elif run_dir.exists():
                raise SystemExit(f"{run_dir} exists but is unfinished; remove it to rerun")
            else:
                jobs.append((algo, seed, steps, str(run_dir), args.sets))
    print(f"{len(jobs)} runs to do, {sum(map(len, summaries.values()))} already done", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(run_one, *job): job for job in jobs}
        for fut in as_completed(futures):
            algo, seed = futures[fut][:2]
            summary = fut.result()
            summaries[algo].append(summary)
            fe = summary["final_eval"]
            print(f"done {algo} seed {seed}: return {fe['return']:.2f} cost {fe['cost']:.2f} "
                  f"feasible-start violation {fe.get('feasible_start_violation_prob', float('nan')):.3f} "
                  f"AUROC {summary['calibration'].get('lambda_auroc', float('nan')):.3f} "
                  f"({summary['wall_time_s']:.0f} s)", flush=True)
    for algo in algos:
        summaries[algo].sort(key=lambda s: s["seed"])
    text = table(summaries)
    cmd = f"python benchmarks/double_integrator_table.py --seeds {' '.join(map(str, args.seeds))} --steps {steps}"
    if args.sets:
        cmd += " " + " ".join(f"--set {s}" for s in args.sets)
    report = f"statewise/DoubleIntegrator-v0, {steps} env steps, configs/double_integrator.yaml\n\n{text}\n\n`{cmd}`\n"
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(report)


if __name__ == "__main__":
    main()
