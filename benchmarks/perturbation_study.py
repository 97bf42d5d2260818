"""The perturbation test read back against unperturbed twins: how far λ moves from the perturbed region, by how much,
and how long it takes to return.

    python benchmarks/perturbation_study.py bench/stability-perturbation bench/stability-di \\
        --out docs/results/stability/perturbation

Each run of the perturbation grid (benchmarks/grids/stability_perturbation.yaml) is paired with the run of the same
label and seed in the stability sweep (benchmarks/grids/stability_double_integrator.yaml), which has the same
settings without the extra cost. Compiled populations of the same size train bit-identically, so the twins agree
until the window opens; the script checks that on the probe states and refuses a pair that does not. λ's deviation
from its twin, per band of distance from the region (in radii), is then the perturbation's own effect
(:func:`statewise.metrics.perturbation_response` with ``reference``). Writes ``perturbation.md`` and
``perturbation.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from statewise.analysis.report import ci_cell  # noqa: E402
from statewise.metrics import perturbation_response  # noqa: E402
from statewise.run import runio  # noqa: E402

BINS = (0.5, 1.0, 2.0, 4.0)  # distance bands, in radii of the region


def runs_by_key(folder: Path) -> dict[tuple[str, int], Path]:
    out = {}
    for path in sorted(folder.rglob(runio.PROBE_FILE)):
        run = path.parent
        if runio.moved_aside(run) or not (run / runio.SUMMARY_FILE).is_file():
            continue
        cfg = runio.read_config(run)
        out[(cfg.get("label") or cfg["algo"], int(cfg["seed"]))] = run
    return out


def pair(run: Path, twin: Path) -> dict[str, float] | str:
    """The response of one perturbed run against its twin, or why the pair cannot be used."""
    cfg = runio.read_config(run)["perturbation"]
    probe, ref = runio.read_npz(run / runio.PROBE_FILE), runio.read_npz(twin / runio.PROBE_FILE)
    if not np.array_equal(probe["obs"], ref["obs"]) or not np.array_equal(probe["steps"], ref["steps"]):
        return "probe states or log steps differ"
    before = probe["steps"] <= cfg["start"]
    if not np.array_equal(probe["lam"][before], ref["lam"][before]):
        return "λ differs before the window opens (not the same run up to the perturbation)"
    distance = np.linalg.norm(probe["obs"] - np.asarray(cfg["center"]), axis=1) / cfg["radius"]
    out = perturbation_response(probe["lam"], probe["steps"], distance, cfg["start"], cfg["start"] + cfg["steps"],
                                bins=BINS, reference=ref["lam"])
    dev = np.abs(probe["lam"] - ref["lam"])
    window = (probe["steps"] > cfg["start"]) & (probe["steps"] <= cfg["start"] + cfg["steps"])
    edges = (0.0, *BINS, np.inf)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = (distance >= lo) & (distance < hi)
        name = f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+"
        per_log = np.median(dev[:, band], axis=1) if band.any() else np.full(len(dev), np.nan)
        out[f"peak |Δλ| in the window, {name}"] = float(per_log[window].max())
        out[f"peak |Δλ| to the end, {name}"] = float(per_log.max())
        out[f"states {name}"] = float(band.sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("perturbed", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    twins = runs_by_key(args.reference)
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    refused = []
    for (label, seed), run in runs_by_key(args.perturbed).items():
        twin = twins.get((label, seed))
        got = pair(run, twin) if twin is not None else "no unperturbed twin"
        if isinstance(got, str):
            refused.append(f"{label} s{seed}: {got}")
        else:
            results[label].append(got)
    if not results:
        raise SystemExit("no usable pair: " + "; ".join(refused))
    keys = [k for k in next(iter(results.values()))[0] if not k.startswith("states")]
    labels = sorted(results)
    lines = [f"# Perturbation test: {args.perturbed} against {args.reference}", "",
             "λ's deviation from its unperturbed twin on the probe states; distances in radii of the region. Mean ± "
             "95% CI (Student's t) over seeds. Rises are the largest median deviation per band over the logs from "
             "the window's start; peak |Δλ| the largest median absolute deviation; return steps the steps after the "
             "window until the median |Δλ| within 1 radius is below 10% of its peak (NaN: not within the run).", "",
             "| measure | " + " | ".join(f"{lab} (n={len(results[lab])})" for lab in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(ci_cell([r[key] for r in results[lab]]) for lab in labels) + " |")
    states = next(iter(results.values()))[0]
    lines += ["", "Probe states per band (first run): " + ", ".join(f"{k.split(' ', 1)[1]}: {int(v)}"
                                                                     for k, v in states.items()
                                                                     if k.startswith("states")), ""]
    if refused:
        lines += ["Pairs not used: " + "; ".join(refused), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    runio.atomic_write(args.out / "perturbation.md", "\n".join([*lines, "![perturbation](perturbation.png)", ""]))
    _figure(results, labels, args.out / "perturbation.png")
    print("\n".join(lines))


def _figure(results: dict[str, list[dict[str, float]]], labels: list[str], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for ax, when in zip(axes, ("in the window", "to the end"), strict=True):
        bands = [k for k in results[labels[0]][0] if k.startswith(f"peak |Δλ| {when}")]
        for label in labels:
            mean = [np.nanmean([r[b] for r in results[label]]) for b in bands]
            ax.plot(range(len(bands)), mean, marker="o", label=label)
        ax.set_xticks(range(len(bands)), [b.rsplit(" ", 1)[1] for b in bands])
        ax.set_xlabel("distance from the perturbed region (radii)")
        ax.set_ylabel("peak median |λ − λ_twin|")
        ax.set_title(f"λ's deviation from its unperturbed twin, {when}", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
