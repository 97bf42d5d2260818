"""Value bias of the critics: estimate against Monte-Carlo truth over training, per variant (TD3-style).

Reads ``value_bias.csv`` of every run (train with ``--set value_bias=true``; the bias grids do) and prints, per
variant (the run's label) and evaluation step, the mean over seeds of: the critic's mean estimate, the Monte-Carlo
value, and the median of (estimate − truth) over states, for the cost critic on replay states and on exactly
feasible states, plus the fraction of feasible states whose estimated residual g = Q^c − d is positive (it is 0
for the Monte-Carlo values of a safe policy). Draws the over-estimation figure into ``--out``.

A run without ``value_bias.csv`` (an older run) is measured once, now, from its final checkpoint on the fixed set of
exactly feasible states.

    python benchmarks/value_bias.py bench/di-bias/DoubleIntegrator-v0 --out docs/results/value_bias
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import statewise
from statewise.analysis.plots import read_csv, run_label, value_bias_curves
from statewise.analysis.report import ci_cell as _report_cell
from statewise.run import runio
from statewise.run.evaluate import build_env
from statewise.run.value_bias import feasible_states, monte_carlo_values, summarize

COLUMNS = (("feasible_qc", "Q^c feasible"), ("feasible_qc_mc", "MC feasible"),
           ("feasible_qc_bias_median", "median bias feasible"), ("replay_qc_bias_median", "median bias replay"),
           ("feasible_g_pos_frac", "g>0 feasible"), ("feasible_q_bias_median", "Q median bias feasible"))


def ci_cell(values: list[float], width: int) -> str:
    """The report's table cell (mean ± Student-t 95% half-width, non-finite values counted), right-aligned."""
    return f"{_report_cell(values):>{width}s}"


def run_dirs(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if (p / runio.CONFIG_FILE).is_file():
            out.append(p)
        elif p.is_dir():
            out += runio.finished_runs(p)
    if not out:
        raise SystemExit(f"no finished runs in {', '.join(paths)}")
    return out


def measure_now(run: Path) -> dict[str, np.ndarray]:
    agent = statewise.load(run)
    env = build_env(agent.config.env, agent.config.max_episode_steps)
    values = monte_carlo_values(agent.sac, env.unwrapped, feasible_states(env, 256), 8, 500,
                                torch.Generator().manual_seed(0))
    row = summarize(values, agent.config.constraint.threshold, "feasible_")
    return {"step": np.array([agent.step]), **{k: np.array([v]) for k, v in row.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories, or directories holding runs")
    parser.add_argument("--out", default=None, help="directory for value_bias.png (default: none)")
    args = parser.parse_args()

    runs = run_dirs(args.paths)
    by_label: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    for run in runs:
        rows = read_csv(run / runio.VALUE_BIAS_CSV) or measure_now(run)
        by_label[run_label(run)[0]].append(rows)
    header = f"{'variant':24s} {'step':>6s} " + " ".join(f"{name:>22s}" for _, name in COLUMNS)
    print(f"mean ± Student-t 95% CI over seeds; {len(runs)} runs\n{header}")
    for label, series in by_label.items():
        n = min(len(r["step"]) for r in series)
        for k in range(n):
            cells = [ci_cell([r[key][k] for r in series if key in r], 22) for key, _ in COLUMNS]
            print(f"{label + f' (n={len(series)})':24s} {int(series[0]['step'][k]):>6d} " + " ".join(cells))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        figure = value_bias_curves(runs, out)
        if figure is not None:
            print(f"figure: {figure}")


if __name__ == "__main__":
    main()
