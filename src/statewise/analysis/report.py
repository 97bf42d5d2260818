"""The benchmark report: per-run metrics read from the run directories, mean ± Student-t CIs per variant, the
ablation table, figures and every run's numbers (``statewise report``). Reads files only; never imports execution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from statewise.config import variant_order
from statewise.errors import CheckpointError, StatewiseError
from statewise.method.multipliers import per_state
from statewise.metrics import (
    delta_correlation_by_distance,
    high_frequency_share,
    lagged_correlation,
    last_fraction_mean,
    mean_ci95,
    neighbour_correlation,
    oscillation_amplitude,
    oscillation_count,
    perturbation_response,
    temporal_std,
    threshold_crossings,
    total_variation,
)
from statewise.run import runio


def run_metrics(run_dir: Path, cost_limit: float) -> dict[str, float]:
    """Everything the report tabulates for one run (docs/algorithm.md §7)."""
    from statewise.analysis.plots import read_csv

    summary = runio.read_json(run_dir / runio.SUMMARY_FILE)
    ev = read_csv(run_dir / runio.EVAL_CSV)
    if not ev:
        raise CheckpointError(f"{run_dir}: {_no_evaluations(run_dir)}")
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
        "eval return std (last 20%)": temporal_std(ev["return"][:, None]),
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
    bias = summary.get("value_bias", {})  # the last measurement (statewise.run.value_bias)
    for states in ("feasible", "replay"):
        if f"{states}_qc_bias_median" in bias:
            out[f"Q^c − Monte-Carlo, median, {states} states (final)"] = bias[f"{states}_qc_bias_median"]
        if f"{states}_q_bias_median" in bias:
            out[f"Q − Monte-Carlo, median, {states} states (final)"] = bias[f"{states}_q_bias_median"]
    for key, value in summary.get("mc_calibration", {}).items():
        if key.endswith("auroc"):
            out[f"{key.replace('_', ' ')} vs violation within {summary['mc_calibration']['horizon']} steps"] = value
    runs = summary.get("violation_runs")
    if runs:
        out["longest violation run (training steps)"] = float(runs["longest"])
        out[f"violation bursts (≥ {runs['burst_min_steps']} steps)"] = float(runs["bursts"])
    out.update(constraint_metrics(summary))
    probe_path = run_dir / runio.PROBE_FILE
    if probe_path.is_file():
        out.update(lambda_stability(run_dir, runio.read_npz(probe_path)))
    return out


# the per-constraint rows (constraint_metrics), all in the headline table: "<metric> [<constraint name>]"
CONSTRAINT_METRICS = ("training violation ratio [", "final step violation rate [", "λ AUROC, own infeasible set [",
                      "Q^c AUROC, own infeasible set [")


def constraint_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Per named constraint (constraint.costs, docs/algorithm.md §2c): its training violation ratio, its final
    evaluation's step violation rate, and how well λ_k and Q^c_k separate its own exact infeasible set."""
    out = {}
    for name, part in summary.get("constraints", {}).items():
        out[f"{CONSTRAINT_METRICS[0]}{name}]"] = part["train_violation_ratio"]
        rate = summary["final_eval"].get(f"step_violation_rate[{name}]")
        if rate is not None:
            out[f"{CONSTRAINT_METRICS[1]}{name}]"] = rate
    for name, cal in summary.get("constraint_calibration", {}).items():
        out[f"{CONSTRAINT_METRICS[2]}{name}]"] = cal["lambda_auroc"]
        out[f"{CONSTRAINT_METRICS[3]}{name}]"] = cal["cost_value_auroc"]
    return out


DISTANCE_BINS = 6  # bins of "Δλ correlation by distance"; the report shows the nearest, a middle and the farthest
SWING_LAGS = 5  # "λ swing → training violations": the largest correlation over lags 1..SWING_LAGS logs


def lambda_stability(run_dir: Path, probe: Any) -> dict[str, float]:
    """The stability measures of λ on the probe states (docs/algorithm.md §7): how much it swings, how fast, how far
    its changes reach, whether swings precede violations, and its response to the perturbation test."""
    lam, out = probe["lam"], {}
    if len(lam) <= 2:
        return out
    cfg = runio.read_config(run_dir)
    amp = oscillation_amplitude(lam, float(cfg["multiplier"]["lam_max"]))
    out["λ oscillation amplitude (median state)"] = amp["median"]
    out["λ oscillation amplitude (90th pct. state)"] = amp["q90"]
    out["λ oscillation amplitude ÷ λ_max (median state)"] = amp["median_rel"]
    late = oscillation_amplitude(lam, float(cfg["multiplier"]["lam_max"]), last=0.5)
    out["λ oscillation amplitude, late half (median state)"] = late["median"]
    out["λ oscillation amplitude, late half (90th pct. state)"] = late["q90"]
    out["λ high-frequency share (> 0.1 per log)"] = high_frequency_share(lam)
    # sparsity of the final map: a per-state multiplier should be ~0 on most states and high on the risky few
    out["λ median on probe states (end)"] = float(np.median(lam[-1]))
    out["share of probe states with λ > 1 (end)"] = float(np.mean(lam[-1] > 1.0))
    spatial = not np.all(lam == lam[:, :1])  # a scalar λ is the same on every state: its correlations are 1 trivially
    if spatial:
        _, corr = delta_correlation_by_distance(lam, probe["obs"], bins=DISTANCE_BINS)
        for name, i in (("nearest", 0), ("middle", DISTANCE_BINS // 2), ("farthest", DISTANCE_BINS - 1)):
            out[f"Δλ correlation by distance: {name} sixth of pairs"] = float(corr[i])
    out["λ total variation (probe mean)"] = total_variation(lam.mean(axis=1))
    out["λ temporal std (last 20%)"] = temporal_std(lam)
    out["λ sign changes per 100 logs (old oscillation proxy)"] = oscillation_count(lam)
    if spatial:
        near, far = neighbour_correlation(lam, probe["obs"])
        out["Δλ correlation: nearest neighbours"] = near
        out["Δλ correlation: random pairs"] = far
    out.update(_swing_then_violations(run_dir, probe))
    out.update(_perturbation(cfg, probe))
    return out


def _swing_then_violations(run_dir: Path, probe: Any) -> dict[str, float]:
    """The largest correlation between λ's swing at a log (mean |Δλ| over the probe states) and the training
    violation ratio 1..SWING_LAGS logs later."""
    from statewise.analysis.plots import read_csv

    train = read_csv(run_dir / runio.TRAIN_CSV)
    ratio = dict(zip(train["step"].astype(int).tolist(), train["train_violation_ratio"].tolist(), strict=True))
    steps = probe["steps"].astype(int)
    swing = np.r_[np.nan, np.abs(np.diff(probe["lam"], axis=0)).mean(1)]
    effect = np.array([ratio.get(int(t), np.nan) for t in steps])
    corr = lagged_correlation(swing, effect, SWING_LAGS)[1:]
    return {"λ swing → training violations, max lagged corr": float(np.nanmax(corr)) if np.isfinite(corr).any()
            else float("nan")}


def _perturbation(cfg: dict[str, Any], probe: Any) -> dict[str, float]:
    """The perturbation test's rows (runs trained with ``perturbation.steps`` > 0): λ's rise by distance from the
    region (in radii) and the steps it takes to return."""
    p = cfg.get("perturbation", {})
    if not p.get("steps"):
        return {}
    distance = np.linalg.norm(probe["obs"] - np.asarray(p["center"]), axis=1) / p["radius"]
    response = perturbation_response(probe["lam"], probe["steps"], distance, p["start"], p["start"] + p["steps"])
    return {f"perturbation: {key.replace('_', ' ')}": value for key, value in response.items()}


# The 2x2 ablation (docs/algorithm.md §6): (multiplier training, actor penalty) -> preset.
ABLATION = {("dual ascent", "Lagrangian λ·g"): "fac", ("dual ascent", "augmented ψ_ρ"): "alam-no-dt",
            ("regression to dual target", "Lagrangian λ·g"): "alam-no-qp",
            ("regression to dual target", "augmented ψ_ρ"): "sac-alam"}
HEADLINE_METRICS = ("return (last 10% of evals)", "episode cost (last 10%)", "training violation ratio",
                    "violation prob from feasible starts (final)", "feasible-start safety flips (evals)",
                    "eval cost std (last 20%)", "λ temporal std (last 20%)",
                    "λ oscillation amplitude (median state)", "Δλ correlation by distance: nearest sixth of pairs",
                    "Δλ correlation by distance: farthest sixth of pairs", "longest violation run (training steps)",
                    "λ median on probe states (end)", "share of probe states with λ > 1 (end)", "lambda auroc",
                    "cost value auroc", "max λ on states with ≥ 1 m slack",
                    "95th pct. λ on states with ≥ 1 m slack",
                    "Q^c − Monte-Carlo, median, feasible states (final)", "wall time [s]", "env steps/s")
ABLATION_METRICS = ("return (last 10% of evals)", "episode cost (last 10%)", "training violation ratio",
                    "violation prob from feasible starts (final)", "λ temporal std (last 20%)",
                    "λ oscillation amplitude (median state)", "longest violation run (training steps)",
                    "lambda auroc")


def ci_cell(values: list[float | None]) -> str:
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


def ablation_table(by_label: dict[str, list[dict[str, float]]]) -> list[str]:
    """The markdown lines of the 2x2 ablation table (docs/algorithm.md §6), from the per-run metrics of each label;
    none unless all four of its variants ran."""
    if not all(label in by_label for label in ABLATION.values()):
        return []
    lines = ["### Ablation (docs/algorithm.md §6)", "",
             "fac = neither component, alam-no-dt = quadratic penalty only, alam-no-qp = dual-target regression "
             "only, sac-alam = both.", "",
             "| metric | multiplier training | Lagrangian λ·g | augmented ψ_ρ |", "|---|---|---|---|"]
    for key in (k for k in ABLATION_METRICS if _measured(by_label, ABLATION.values(), k)):
        for rule in ("dual ascent", "regression to dual target"):
            cells = [ci_cell([row.get(key) for row in by_label[ABLATION[(rule, pen)]]])
                     for pen in ("Lagrangian λ·g", "augmented ψ_ρ")]
            lines.append(f"| {key} | {rule} | " + " | ".join(cells) + " |")
    return lines + [""]


def _runs_table(runs: list[Path]) -> list[str]:
    """One row per run: its final evaluation, training violations and speed (the per-seed numbers behind the means)."""
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
        if per_state(cfg["multiplier"]["kind"]):
            nets += ", " + "x".join(map(str, cfg["multiplier"]["hidden"]))
        population = summary.get("population", 1)  # runs from before populations were single processes
        if summary.get("status") == "failed":
            failure = summary["failure"]
            what = (failure.get("error") or f"non-finite {failure['quantity']}").splitlines()[0].replace("|", "/")
            lines.append(f"| {run.name} | **failed at step {failure['step']}: {what}** "
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


def report(out: Path, cost_limit: float = 0.0, warn: Callable[[str], None] | None = None) -> Path:
    """Write ``OUT/report.md`` with figures per environment from a grid directory (``OUT/<env>/<label>-s<seed>``,
    as bench writes it): the metrics table (mean ± 95% CI over seeds per variant), the ablation table
    (docs/algorithm.md §6) when its four variants ran, learning curves, λ maps over training, reliability curves and
    every run's final numbers and speed.

    A finished run whose evaluations cannot be found (eval.csv missing or empty) is counted as unreadable, non-finite
    in every metric, and ``warn`` (default: :func:`warnings.warn`) is told. Refused before anything is written: a
    single run's directory, and a directory without a finished run."""
    out = Path(out)
    for name in (runio.CONFIG_FILE, runio.SUMMARY_FILE):
        if (out / name).is_file():
            raise StatewiseError(f"{out} is a single run (it holds {name}); report reads a directory of runs, such "
                                 "as a bench --out folder (OUT/<env>/<label>-s<seed>); nothing was written")
    env_dirs = sorted(d for d in out.iterdir() if d.is_dir()) if out.is_dir() else []
    if not env_dirs:
        raise StatewiseError(f"no benchmark runs found in {out}")
    found = [(env_dir, runs) for env_dir in env_dirs if (runs := runio.finished_runs(env_dir))]
    if not found:
        raise StatewiseError(f"no finished run in {out} (a finished run is OUT/<env>/<label>-s<seed> with "
                             f"{runio.SUMMARY_FILE}); nothing was written")
    lines = [f"# statewise benchmark report: {out}", ""]
    for env_dir, runs in found:
        lines += _env_section(out, env_dir, runs, cost_limit, warn or _warn)
    path = out / "report.md"
    runio.atomic_write(path, "\n".join(lines) + "\n")
    return path


@dataclass
class _Variants:
    """The finished runs of one environment by label (variant): their metrics, steps and failures."""

    by_label: dict[str, list[dict[str, float]]]  # a failed run's row: every metric non-finite
    steps: dict[str, set[int]]
    labels: list[str]  # in the report's variant order
    keys: list[str]  # every metric some run has, in the order first seen
    failed: list[tuple[Path, dict[str, Any]]]
    unreadable: list[tuple[Path, str]]  # finished runs whose evaluations cannot be read (their row: non-finite too)


def _no_evaluations(run: Path) -> str:
    return f"{runio.EVAL_CSV} is {'empty' if (run / runio.EVAL_CSV).is_file() else 'missing'}"


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)


def _read_variants(runs: list[Path], cost_limit: float, warn: Callable[[str], None]) -> _Variants:
    by_label: dict[str, list[dict[str, float]]] = {}
    steps: dict[str, set[int]] = {}
    order: dict[str, tuple[int, bool, str]] = {}
    failed: list[tuple[Path, dict[str, Any]]] = []
    unreadable: list[tuple[Path, str]] = []
    for run in runs:
        summary = runio.read_json(run / runio.SUMMARY_FILE)
        label = summary.get("label", summary["algo"])
        if summary.get("status") == "failed":  # every metric of a diverged run is non-finite, its cost too
            failed.append((run, summary))
            by_label.setdefault(label, []).append({})
        elif not _has_evaluations(run):  # counted, never dropped: non-finite like a failed run
            unreadable.append((run, _no_evaluations(run)))
            warn(f"{run}: {_no_evaluations(run)}; the report counts this run as unreadable (non-finite in every "
                 "metric)")
            by_label.setdefault(label, []).append({})
        else:
            by_label.setdefault(label, []).append(run_metrics(run, cost_limit))
        steps.setdefault(label, set()).add(summary["steps"])
        order[label] = variant_order(summary["algo"], label)
    labels = sorted(by_label, key=order.__getitem__)
    keys = list(dict.fromkeys(k for rows in by_label.values() for row in rows for k in row))
    for rows in by_label.values():
        for row in rows:
            if not row:
                row.update(dict.fromkeys(keys, float("nan")))
    return _Variants(by_label, steps, labels, keys, failed, unreadable)


def _has_evaluations(run: Path) -> bool:
    """Whether the run's eval.csv holds an evaluation (a corrupt one is an error: statewise.analysis.plots.read_csv)."""
    from statewise.analysis.plots import read_csv

    return bool(read_csv(run / runio.EVAL_CSV))


def _env_section(out: Path, env_dir: Path, runs: list[Path], cost_limit: float,
                 warn: Callable[[str], None]) -> list[str]:
    """The report's section on one environment, and its figures (written into ``env_dir``)."""
    from statewise.analysis.plots import (
        lambda_over_training,
        lambda_traces,
        learning_curves,
        reliability_curves,
        value_bias_curves,
    )

    variants = _read_variants(runs, cost_limit, warn)
    figure = learning_curves(runs, env_dir)
    lines = _overview(env_dir, runs, variants) + _metric_tables(variants) + ablation_table(variants.by_label)
    lines += [f"![learning curves]({figure.relative_to(out)})", ""]
    for title, extra in (("λ over training", lambda_over_training(runs, env_dir)),
                         ("λ on fixed states over training", lambda_traces(runs, env_dir)),
                         ("reliability", reliability_curves(runs, env_dir)),
                         ("critic estimates against Monte-Carlo truth", value_bias_curves(runs, env_dir))):
        if extra is not None:
            lines += [f"![{title}]({extra.relative_to(out)})", ""]
    return lines + _runs_table(runs)


def _overview(env_dir: Path, runs: list[Path], variants: _Variants) -> list[str]:
    """The section's heading, what was run and how it is summarised, and the runs that failed."""
    labels, by_label = variants.labels, variants.by_label
    lines = [f"## {env_dir.name}", "",
             f"{len(runs)} runs; steps per run: "
             + ", ".join(f"{a} {'/'.join(map(str, sorted(variants.steps[a])))}" for a in labels)
             + "; mean ± 95% CI (Student's t, t·std/√n) over seeds (n per variant: "
             + ", ".join(f"{a} {len(by_label[a])}" for a in labels) + "). Non-finite: undefined for that "
             "run (an AUROC when the final policy never violated has no positive states) or diverged; not "
             "measured: the run predates the metric, its task lacks what it needs, or (spatial λ measures) its λ is "
             "one scalar.", ""]
    if variants.failed:
        lines += [f"**{len(variants.failed)} of {len(runs)} runs failed** (diverged; counted as non-finite in every "
                  "metric, never as safe):", ""]
        lines += [f"* {run.name}: non-finite {s['failure']['quantity']} at step {s['failure']['step']}"
                  for run, s in variants.failed] + [""]
    if variants.unreadable:
        lines += [f"**{len(variants.unreadable)} of {len(runs)} runs unreadable** (finished, but their evaluations "
                  "cannot be read; counted as non-finite in every metric):", ""]
        lines += [f"* {run.name}: {why}" for run, why in variants.unreadable] + [""]
    return lines


def _metric_tables(variants: _Variants) -> list[str]:
    """The headline metrics and all metrics: mean ± 95% CI per variant."""
    labels, keys = variants.labels, variants.keys
    headline = [k for k in HEADLINE_METRICS if k in keys] + [k for k in keys if k.startswith(CONSTRAINT_METRICS)]
    lines = []
    for title, subset in (("Headline", headline), ("All metrics", keys)):
        lines += [f"### {title}", "", "| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for key in subset:
            lines.append(f"| {key} | " + " | ".join(ci_cell([row.get(key) for row in variants.by_label[a]])
                                                 for a in labels) + " |")
        lines.append("")
    return lines
