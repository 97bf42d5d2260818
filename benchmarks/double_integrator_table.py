"""SAC-Lag, FAC and SAC-ALaM on statewise/DoubleIntegrator-v0 over several seeds: the README's table.

A thin front end to the benchmark grid (``statewise.bench``): it runs every (algorithm, seed) with
configs/double_integrator.yaml in parallel worker processes, skips runs already finished in --out, and
prints a markdown table of the final evaluation (mean ± 95% CI over seeds): return, episode cost,
violation probability of episodes that start in a feasible state, and the AUROC of λ(s) for separating
the exact infeasible set from the feasible set on a 101×101 grid. ``statewise report OUT`` gives the
full report of the same runs.

    python benchmarks/double_integrator_table.py --seeds 0 1 2 --out bench/di
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from statewise import Config
from statewise.bench import LocalExecutor, bench, plan
from statewise.metrics import mean_ci95

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "double_integrator.yaml"
ENV = "statewise/DoubleIntegrator-v0"
METRICS = [("return", "final_eval", "return"), ("episode cost", "final_eval", "cost"),
           ("violation prob. from feasible starts", "final_eval", "feasible_start_violation_prob"),
           ("λ AUROC (infeasible vs feasible)", "calibration", "lambda_auroc"),
           ("Q^c AUROC (reference)", "calibration", "cost_value_auroc"),
           ("wall time [s]", None, "wall_time_s")]


def cell(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "n/a"
    mean, half = mean_ci95(np.asarray(vals))
    return f"{mean:.3g} ± {half:.2g}" if len(vals) > 1 else f"{mean:.3g}"


def table(summaries: dict[str, list[dict]]) -> str:
    algos = list(summaries)
    lines = ["| metric | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for label, group, key in METRICS:
        cells = [cell([(s[group] if group else s).get(key, float("nan")) for s in summaries[a]]) for a in algos]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n = sorted({len(v) for v in summaries.values()})
    lines += ["", f"mean ± 95% CI (1.96·std/√n) over n = {'/'.join(map(str, n))} seeds per algorithm"]
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

    steps = args.steps or Config.from_yaml(CONFIG).steps
    algos = args.algos.split(",")
    specs = plan(algos, [ENV], args.seeds, steps, args.out, str(CONFIG), tuple(args.sets))
    summaries = {a: [] for a in algos}
    for summary in bench(specs, LocalExecutor(args.workers)):
        summaries[summary["algo"]].append(summary)
    for runs in summaries.values():
        runs.sort(key=lambda s: s["seed"])

    cmd = f"python benchmarks/double_integrator_table.py --seeds {' '.join(map(str, args.seeds))} --steps {steps}"
    cmd += "".join(f" --set {s}" for s in args.sets)
    report = f"{ENV}, {steps} env steps, configs/double_integrator.yaml\n\n{table(summaries)}\n\n`{cmd}`\n"
    print("\n" + report)
    (args.out / "table.md").write_text(report)


if __name__ == "__main__":
    main()
