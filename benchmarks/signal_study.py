"""Which constraint signal makes λ(s) most calibrated? One table per task from the runs of a signal grid
(benchmarks/grids/signals_*.yaml): per variant, mean ± Student-t 95% CI over seeds of

  * return (last 10% of evaluations), the training violation ratio after the warm-up and (double integrator) the
    final policy's violation probability from feasible starts (as statewise report computes them);
  * λ AUROC against the exact infeasible set on the task's plane (double integrator: everywhere; PointHazard: the
    robot at rest, where the infeasible set is exactly the hazards), and the same for the critic's value F(s, π(s));
  * the share of states with ≥ 1 m of slack on that plane where λ ≤ 1;
  * λ's stability: sign changes per 100 logs (the old oscillation proxy) and temporal std over the last 20% of
    training (probe states);
  * if ``statewise calibrate`` ran on the runs: the risk monitor's held-out ECE and AUROC (violation within H steps);
  * with ``--infeasible-starts N`` (tasks that say at reset whether a start is feasible): how the final deterministic
    policy violates from the inherently infeasible ones among N starts (reset seeds 5·10^6 + i, the same for every
    run): violating steps per episode and the deepest constraint value max_t h(s_t).

    python benchmarks/signal_study.py bench/di-signals/DoubleIntegrator-v0 bench/ph-signals/PointHazard-v0
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from value_bias import ci_cell, run_dirs

import statewise
from statewise.analysis.plots import run_label
from statewise.analysis.report import run_metrics
from statewise.run import runio
from statewise.run.evaluate import build_env, calibration

COLUMNS = ("return", "train viol.", "viol. from feasible starts", "λ AUROC (exact)", "F AUROC (exact)",
           "λ ≤ 1, ≥ 1 m slack", "λ osc./100 logs", "λ temporal std", "risk ECE", "risk AUROC")


def measure(run: Path) -> list[float | None]:
    agent = statewise.load(run)
    env = build_env(agent.config.env, agent.config.max_episode_steps)
    try:
        calib = calibration(env, agent.multiplier, agent.cost_value)
    finally:
        env.close()
    report = run_metrics(run, 0.0)
    risk = runio.read_json(run / runio.RISK_FILE) if (run / runio.RISK_FILE).is_file() else {}
    test = risk.get("test", {})
    # None: not measured for this task or run (shown as "–"); NaN: measured but undefined (counted as non-finite)
    return [report["return (last 10% of evals)"], report["training violation ratio"],
            report.get("violation prob from feasible starts (final)"),
            calib.get("lambda_auroc"), calib.get("cost_value_auroc"), calib.get("lambda_le1_share_slack1"),
            report.get("λ sign changes per 100 logs (old oscillation proxy)"), report.get("λ temporal std (last 20%)"),
            test.get("ece"), test.get("auroc")]


def infeasible_starts(run: Path, starts: int) -> list[float | None]:
    """[violating steps per episode, deepest h] from the inherently infeasible starts among ``starts``."""
    agent = statewise.load(run)
    env = build_env(agent.config.env, agent.config.max_episode_steps)
    steps, depth = [], []
    try:
        for i in range(starts):
            obs, info = env.reset(seed=5_000_000 + i)
            if info.get("feasible") is None:
                return [None, None]
            if info["feasible"]:
                continue
            cost, deepest, done = 0.0, float(info["constraint"]), False
            while not done:
                obs, _, terminated, truncated, step = env.step(agent.act(obs))
                cost += float(step["cost"] > 0)
                deepest = max(deepest, float(step["constraint"]))
                done = terminated or truncated
            steps.append(cost)
            depth.append(deepest)
    finally:
        env.close()
    return [sum(steps) / len(steps), sum(depth) / len(depth)] if steps else [None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="directories holding the runs of one task each (or run directories)")
    parser.add_argument("--infeasible-starts", type=int, default=0, metavar="N",
                        help="also: how the final policies violate from the infeasible ones among N starts")
    args = parser.parse_args()
    columns = COLUMNS + (("violating steps, infeasible starts", "deepest h, infeasible starts")
                         if args.infeasible_starts else ())
    for path in args.paths:
        by_label: dict[str, list[list[float | None]]] = defaultdict(list)
        for run in run_dirs([path]):
            extra = infeasible_starts(run, args.infeasible_starts) if args.infeasible_starts else []
            by_label[run_label(run)[0]].append(measure(run) + extra)
        print(f"\n{path}: mean ± Student-t 95% CI over seeds")
        print("| variant | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for label, rows in sorted(by_label.items(), key=lambda kv: (kv[0].split("-")[-1], kv[0])):
            cells = [ci_cell([r[k] for r in rows], 0).strip() for k in range(len(columns))]
            print(f"| {label} (n={len(rows)}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
