"""The stability sweep read back: each measure of λ's swings, their reach and the policy's steadiness against the
dual step, one line per method (mean ± Student-t 95% CI over seeds), as a table and a figure.

    python benchmarks/stability_sweep.py bench/stability-di --out docs/results/stability/double_integrator

Reads the run directories that ``statewise bench --grid benchmarks/grids/stability_*.yaml`` wrote (labels
``<method>-lr<step>``); runs that failed or diverged are counted in the table, never dropped. Writes
``sweep.md`` and ``sweep.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from statewise.analysis.report import ci_cell, run_metrics  # noqa: E402
from statewise.metrics import mean_ci95  # noqa: E402
from statewise.run import runio  # noqa: E402

MEASURES = (
    "λ oscillation amplitude (median state)",
    "λ oscillation amplitude (90th pct. state)",
    "λ oscillation amplitude, late half (median state)",
    "λ oscillation amplitude, late half (90th pct. state)",
    "λ high-frequency share (> 0.1 per log)",
    "Δλ correlation by distance: nearest sixth of pairs",
    "Δλ correlation by distance: farthest sixth of pairs",
    "λ swing → training violations, max lagged corr",
    "longest violation run (training steps)",
    "training violation ratio",
    "eval return std (last 20%)",
    "return (last 10% of evals)",
    "lambda auroc",
    "λ sign changes per 100 logs (old oscillation proxy)",
)
METHOD_ORDER = ("fac", "fac-aw", "alam-no-dt", "alam-no-qp", "sac-alam")  # dual ascent first, then ALaM's parts
LABEL = re.compile(r"^(?P<method>.+)-lr(?P<step>[0-9.e+-]+)$")


def collect(folder: Path) -> tuple[dict[tuple[str, float], list[dict[str, float] | None]], list[str]]:
    """(method, step) -> per-run metrics (None for a run that failed), and the methods in grid order."""
    cells: dict[tuple[str, float], list[dict[str, float] | None]] = defaultdict(list)
    methods: list[str] = []
    for summary_path in sorted(folder.rglob(runio.SUMMARY_FILE)):
        run = summary_path.parent
        if runio.moved_aside(run):
            continue
        summary = runio.read_json(summary_path)
        match = LABEL.match(summary.get("label", ""))
        if not match:
            continue
        key = (match["method"], float(match["step"]))
        if key[0] not in methods:
            methods.append(key[0])
        cells[key].append(run_metrics(run, cost_limit=0.0) if summary.get("status") == "ok" else None)
    methods.sort(key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))
    return cells, methods


def table(cells: dict, methods: list[str]) -> list[str]:
    steps = sorted({step for _, step in cells})
    lines = []
    for measure in MEASURES:
        lines += [f"#### {measure}", "", "| method | " + " | ".join(f"{s:g}" for s in steps) + " |",
                  "|---|" + "---|" * len(steps)]
        for method in methods:
            row = []
            for step in steps:
                runs = cells.get((method, step), [])
                failed = sum(r is None for r in runs)
                cell = ci_cell([r.get(measure) for r in runs if r is not None]) if runs else "not run"
                row.append(cell + (f" [{failed} of {len(runs)} failed]" if failed else ""))
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def figure(cells: dict, methods: list[str], out: Path) -> Path:
    cols = 3
    rows = int(np.ceil(len(MEASURES) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.2 * rows), layout="constrained", squeeze=False)
    for ax, measure in zip(axes.flat, MEASURES, strict=False):  # spare panels stay empty
        for method in methods:
            points = []
            for (m, step), runs in sorted(cells.items()):
                vals = [r[measure] for r in runs if r is not None and np.isfinite(r.get(measure, np.nan))]
                if m == method and vals:
                    points.append((step, *mean_ci95(vals)))
            if points:
                x, mean, half = map(np.asarray, zip(*points, strict=True))
                ax.errorbar(x, mean, yerr=half, marker="o", capsize=3, lw=1.2, label=method)
        ax.set_xscale("log")
        ax.set_title(measure, fontsize=9)
        ax.set_xlabel("dual step (multiplier.lr, one optimiser step per round)", fontsize=8)
    for ax in list(axes.flat)[len(MEASURES):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    path = out / "sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells, methods = collect(args.folder)
    if not cells:
        raise SystemExit(f"no runs with <method>-lr<step> labels under {args.folder}")
    args.out.mkdir(parents=True, exist_ok=True)
    counts = ", ".join(f"{m}-lr{s:g}: {len(r)}" for (m, s), r in sorted(cells.items()))
    lines = [f"# Stability sweep: {args.folder}", "", f"Runs per cell: {counts}.", "",
             "Mean ± 95% CI (Student's t) over seeds; a failed run is shown in its cell.", "",
             *table(cells, methods), "![sweep](sweep.png)", ""]
    runio.atomic_write(args.out / "sweep.md", "\n".join(lines))
    figure(cells, methods, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
