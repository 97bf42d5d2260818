"""Plots of run directories: learning curves and λ(s) heat maps (PNG, written atomically)."""

from __future__ import annotations

import csv
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from statewise.config import variant_order  # noqa: E402
from statewise.errors import CheckpointError  # noqa: E402
from statewise.method.multipliers import per_state  # noqa: E402
from statewise.metrics import quantile_bins, t_quantile_975  # noqa: E402
from statewise.run import runio  # noqa: E402

HEATMAP_N = 101


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a statewise CSV as float arrays (empty cells become NaN)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
        if header and header[0] != "step":
            raise ValueError("the first column is not 'step'")
        if not rows:
            return {}
        return {k: np.array([float(r[k]) if r.get(k) not in ("", None) else np.nan for r in rows]) for k in header}
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
        raise CheckpointError(f"{path} is corrupt or not a statewise CSV: {str(exc).splitlines()[0][:120]}") from None


def run_label(run_dir: Path) -> tuple[str, str]:
    """(group label = the run's label, by default its algorithm; env) from the run's config.yaml."""
    cfg = _read_run_config(run_dir)
    return str(cfg.get("label") or cfg.get("algo")), str(cfg.get("env"))


def _read_run_config(run_dir: Path) -> dict:
    if not (Path(run_dir) / runio.CONFIG_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not a statewise run directory (no {runio.CONFIG_FILE})")
    return runio.read_config(Path(run_dir))


# Settings that do not change what a run learns or how it is measured: runs that differ only in these are seeds of one
# configuration, pooled in one line with a band.
_BOOKKEEPING = frozenset({"seed", "run_dir", "threads", "progress", "device", "compile", "steps", "checkpoint_every",
                          "checkpoint_minutes"})
# How a differing setting is named in a legend (the others by their key without the section).
_SYMBOLS = {"multiplier.rho": "ρ", "multiplier.rho_lambda": "ρ_λ", "multiplier.lam_max": "λ_max",
            "multiplier.lr": "λ lr", "multiplier.steps": "K_λ", "multiplier.period": "m_λ",
            "multiplier.target_tau": "τ_λ", "multiplier.hidden": "λ net", "constraint.gamma_c": "γ_c",
            "constraint.threshold": "d", "constraint.tau": "τ_c", "sac.gamma": "γ", "sac.tau": "τ", "sac.lr": "lr",
            "sac.hidden": "net", "sac.batch_size": "batch", "constraint.signal": "signal"}


@dataclass
class Configuration:
    """Runs of one environment that share every setting but the seed (and bookkeeping): one line in a comparison."""

    label: str  # the run label (by default the algorithm), plus the settings that tell it apart, e.g. "sac-alam ρ=10"
    env: str
    runs: list[Path]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


def configurations(run_dirs: list[Path]) -> list[Configuration]:
    """Group runs into configurations (per environment, in the report's variant order) and name each by its label
    and, where several configurations share a label, by the settings in which they differ."""
    from statewise.config import flatten

    groups: dict[tuple, list[Path]] = {}
    settings: dict[tuple, dict[str, Any]] = {}
    for d in run_dirs:
        flat = flatten(_read_run_config(d))
        kept = {k: v for k, v in flat.items() if k not in _BOOKKEEPING}
        key = (str(flat.get("env")), repr(sorted(kept.items())))
        groups.setdefault(key, []).append(Path(d))
        settings[key] = kept
    base = {key: str(s.get("label") or s.get("algo")) for key, s in settings.items()}
    names: dict[tuple, str] = {}
    for key in groups:
        same = [k for k in groups if k[0] == key[0] and base[k] == base[key]]
        if len(same) == 1:
            names[key] = base[key]
            continue
        differ = sorted({name for k in same for name in settings[k]
                         if any(settings[o].get(name) != settings[k].get(name) for o in same)})
        parts = [f"{_SYMBOLS.get(name, name.split('.')[-1])}={_fmt(settings[key].get(name))}" for name in differ]
        names[key] = f"{base[key]} " + ", ".join(parts[:3]) + (f", +{len(parts) - 3} more" if len(parts) > 3 else "")
    order = sorted(groups, key=lambda k: (k[0], variant_order(str(settings[k].get("algo")), base[k]), names[k]))
    return [Configuration(names[k], k[0], sorted(groups[k], key=lambda d: _read_run_config(d).get("seed", 0)))
            for k in order]


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically, close it and return the path."""
    runio.atomic_save(fig, path, saver=lambda f, fh: f.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _band(ax: plt.Axes, series: list[tuple[np.ndarray, np.ndarray]], label: str, color: str) -> None:
    """Mean over seeds of (steps, values) series with a Student-t 95% band where at least two seeds have a value.
    Series of different lengths are pooled on the union of their steps, so every run is drawn to its end."""
    steps = np.unique(np.concatenate([s for s, _ in series]))
    data = np.full((len(series), len(steps)), np.nan)
    for row, (s, v) in zip(data, series, strict=True):
        row[np.searchsorted(steps, s)] = v
    count = np.sum(np.isfinite(data), axis=0)
    with warnings.catch_warnings():  # columns with no finite value (no finished episode yet) are simply not drawn
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(data, axis=0)
        sd = np.nanstd(data, axis=0, ddof=1)
    marker = "o" if len(steps) <= 3 else None  # a single evaluation is a point, not an invisible line
    ax.plot(steps, mean, label=f"{label} (n={len(series)})", color=color, lw=1.6, marker=marker, ms=4)
    banded = count >= 2
    if banded.any():
        half = np.array([t_quantile_975(int(c) - 1) if c >= 2 else np.nan for c in count]) * sd / np.sqrt(count)
        ax.fill_between(steps, mean - half, mean + half, where=banded, color=color, alpha=0.2, lw=0)


def learning_curves(run_dirs: list[Path], out: Path, cost_limit: float = 0.0,
                    name: str = "learning_curves.png") -> Path:
    """Eval return, eval episode cost (with the cost limit) and the probe-set mean of λ against environment steps,
    one line per configuration (:func:`configurations`), its seeds pooled with a 95% band. One environment."""
    configs = configurations(run_dirs)
    envs = sorted({c.env for c in configs})
    if len(envs) != 1:
        raise ValueError(f"learning_curves draws one environment, got {', '.join(envs)}")
    panels = [("eval", "return", "evaluation return"), ("eval", "cost", "evaluation episode cost"),
              ("train", "lam_probe_mean", "λ(s) on probe states: mean (solid), median (dashed)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, config in enumerate(configs):
        color = colors[i % len(colors)]
        for ax, (stream, key, title) in zip(axes, panels, strict=True):
            tables = [read_csv(d / (runio.EVAL_CSV if stream == "eval" else runio.TRAIN_CSV)) for d in config.runs]
            series = [(t["step"], t[key]) for t in tables if key in t and len(t[key])]
            if series:
                _band(ax, series, config.label, color)
            ax.set_title(title)
        _median_line(axes[2], config.runs, color)
    axes[1].axhline(cost_limit, color="black", ls="--", lw=1.0,
                    label="cost limit" + (" (state-wise: no violation)" if cost_limit == 0 else ""))
    for ax in axes:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # a run stopped before its first evaluation has no line
        axes[0].legend(fontsize=8)
    axes[1].legend(handles=[axes[1].get_lines()[-1]], fontsize=8)
    fig.suptitle(envs[0])
    return save_figure(fig, out / name)


def _median_line(ax: plt.Axes, runs: list[Path], color: str) -> None:
    """The median of λ over the probe states (seeds averaged), dashed: where a few risky states carry a high λ, the
    mean follows them and the median shows the rest of the map."""
    tables = [read_csv(d / runio.TRAIN_CSV) for d in runs]
    series = [(t["step"], t["lam_probe_q50"]) for t in tables if "lam_probe_q50" in t and len(t["lam_probe_q50"])]
    if not series:
        return
    steps = np.unique(np.concatenate([s for s, _ in series]))
    data = np.full((len(series), len(steps)), np.nan)
    for row, (s, v) in zip(data, series, strict=True):
        row[np.searchsorted(steps, s)] = v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ax.plot(steps, np.nanmean(data, axis=0), color=color, lw=1.2, ls="--")


def lambda_heatmaps(run_dirs: list[Path], out: Path, name: str = "lambda_heatmap.png") -> Path | None:
    """λ(s) of each run with a multiplier network over the task's plane at its final checkpoint, all on one colour
    scale, with the exact feasible boundary (solid) where the task knows it and the constraint boundary h(s) = 0
    (dashed). One environment; panels named by configuration, seed and training step."""
    from statewise.analysis.agent import load

    panels = []
    for config in configurations(run_dirs):
        # a run that failed before its first checkpoint has no λ to draw (its learning curves are drawn)
        for d in config.runs:
            if (d / runio.CHECKPOINT_FILE).is_file():
                agent = load(d)
                if per_state(agent.config.multiplier.kind):  # a scalar λ has no map
                    panels.append((config.label, agent))
    if not panels:
        return None
    opened = _plane_task(panels[0][1].config.env, panels[0][1].config.max_episode_steps)
    if opened is None:
        return None
    env, task, plane = opened
    xs, ys, obs = plane.grid(HEATMAP_N)
    panels, maps, truths = _constraint_panels(panels, task, obs)
    # one scale: equal colours are equal λ in every panel; logarithmic above 1, where a wound-up λ flattens the rest
    norm = mcolors.SymLogNorm(linthresh=1.0, vmin=0.0, vmax=max(1.0, max(float(np.max(m)) for m in maps)))
    per_run = max(len(agent.config.constraint.costs) for _, agent in panels)  # one row per run with named costs
    cols = per_run if per_run > 1 else min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False, layout="constrained")
    h = task.constraint(obs).reshape(HEATMAP_N, HEATMAP_N)
    for ax, (label, agent), lam, feas in zip(axes.flat, panels, maps, truths, strict=False):  # spares stay empty
        im = ax.imshow(lam, origin="lower", extent=(*plane.xlim, *plane.ylim), aspect="auto", cmap="magma",
                       norm=norm)
        ax.contour(xs, ys, h, levels=[0.0], colors="cyan", linestyles="--", linewidths=1.0)
        if feas is not None:
            ax.contour(xs, ys, feas, levels=[0.5], colors="lime", linewidths=1.5)
        ax.set_title(f"{label} s{agent.config.seed}, step {agent.step}", fontsize=10)
        ax.set_xlabel(plane.xlabel)
        ax.set_ylabel(plane.ylabel)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="λ(s) (one scale for all panels; logarithmic above 1)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    note = "green: exact feasible boundary, " if any(t is not None for t in truths) else ""
    fig.suptitle(f"λ(s) on {panels[0][1].config.env} ({note}cyan dashed: constraint h(s)=0)")
    env.close()
    return save_figure(fig, out / name)


def _constraint_panels(panels: list[tuple[str, Any]], task: Any, obs: np.ndarray
                       ) -> tuple[list[tuple[str, Any]], list[np.ndarray], list[np.ndarray | None]]:
    """The λ maps to draw and the exact feasible set behind each: one per run, or with several constraints
    (constraint.costs) one per constraint, λ_k against constraint k's own feasible set where the task knows it."""
    shape = (HEATMAP_N, HEATMAP_N)
    joint = task.feasible(obs).reshape(shape).astype(float) if hasattr(task, "feasible") else None
    own = task.constraint_feasible(obs) if hasattr(task, "constraint_feasible") else {}
    out_panels, maps, truths = [], [], []
    for label, agent in panels:
        if not agent.config.constraint.costs:
            out_panels.append((label, agent))
            maps.append(np.asarray(agent.multiplier(obs)).reshape(shape))
            truths.append(joint)
            continue
        for name, lam in agent.multipliers(obs).items():
            out_panels.append((f"{label} [{name}]", agent))
            maps.append(np.asarray(lam).reshape(shape))
            truths.append(own[name].reshape(shape).astype(float) if name in own else None)
    return out_panels, maps, truths


def _plane_task(env_id: str, max_episode_steps: int = 0) -> tuple[Any, Any, Any] | None:
    """(env, task, plane) of a task that has a plane to draw λ on (the caller closes env); None, env closed, if not."""
    from statewise.run.evaluate import build_env

    env = build_env(env_id, max_episode_steps)
    task = env.unwrapped
    if not hasattr(task, "plane"):
        env.close()
        return None
    return env, task, task.plane()


def _lowest_seed_runs(run_dirs: list[Path]) -> dict[str, tuple[int, Path]]:
    """label -> (seed, run) of each variant's lowest seed among the runs with a λ network and a probe.npz, in the
    report's variant order."""
    first: dict[str, tuple[int, Path]] = {}
    rank: dict[str, tuple[int, bool, str]] = {}
    for d in run_dirs:
        cfg = runio.read_config(d)
        if not per_state(cfg["multiplier"]["kind"]) or not (d / runio.PROBE_FILE).is_file():
            continue
        label = cfg.get("label") or cfg["algo"]
        rank[label] = variant_order(cfg["algo"], label)
        if label not in first or cfg["seed"] < first[label][0]:
            first[label] = (cfg["seed"], d)
    return {label: first[label] for label in sorted(first, key=rank.__getitem__)}


# λ traces: fixed points of the task plane, as fractions of its x and y ranges (the same states for every method)
TRACE_POINTS = ((0.5, 0.5), (0.25, 0.5), (0.75, 0.5), (0.5, 0.85))


def lambda_traces(run_dirs: list[Path], out: Path) -> Path | None:
    """λ(s) over training on a few fixed states at every log, one panel per variant with a λ network (its lowest
    seed). On a task with a plane: for each of TRACE_POINTS, the run's probe state nearest to it (standardised
    distance), so every method shows about the same states; otherwise four probe states at the quantiles 0, 1/3,
    2/3 and 1 of the final λ."""
    from statewise.run.diagnostics import LAMBDA_GRID_N

    first = _lowest_seed_runs(run_dirs)
    if not first:
        return None
    targets = None
    opened = _plane_task(runio.read_config(next(iter(first.values()))[1])["env"])
    if opened is not None:
        env, _, plane = opened
        _, _, grid = plane.grid(LAMBDA_GRID_N)
        env.close()
        targets = np.stack([grid[int(round(fy * (LAMBDA_GRID_N - 1))) * LAMBDA_GRID_N
                                 + int(round(fx * (LAMBDA_GRID_N - 1)))] for fx, fy in TRACE_POINTS])
    fig, axes = plt.subplots(len(first), 1, figsize=(7.5, 2.4 * len(first)), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, (label, (seed, d)) in zip(axes[:, 0], first.items(), strict=True):
        probe = runio.read_npz(d / runio.PROBE_FILE)
        for col, name in _trace_states(probe["obs"], probe["lam"], targets):
            ax.plot(probe["steps"], probe["lam"][:, col], lw=1.1, label=name)
        ax.set_title(f"{label} s{seed}", fontsize=9)
        ax.set_ylabel("λ(s)")
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("environment steps")
    where = "probe states nearest to fixed plane points (x, y: fractions of its ranges)" if targets is not None \
        else "probe states at quantiles of the final λ"
    fig.suptitle(f"λ(s) over training on fixed states: {where}", fontsize=10)
    return save_figure(fig, out / "lambda_traces.png")


def _trace_states(obs: np.ndarray, lam: np.ndarray, targets: np.ndarray | None) -> list[tuple[int, str]]:
    """(probe column, legend name) of the states :func:`lambda_traces` draws."""
    if targets is None:
        order = np.argsort(lam[-1], kind="mergesort")
        cols = [int(order[round(q * (len(order) - 1))]) for q in (0.0, 1 / 3, 2 / 3, 1.0)]
        return [(c, f"probe state {c}") for c in cols]
    scale = obs.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    out = []
    for (fx, fy), target in zip(TRACE_POINTS, targets, strict=True):
        c = int(np.argmin((((obs - target) / scale) ** 2).sum(1)))
        out.append((c, f"near plane ({fx:g}, {fy:g}): " + ", ".join(f"{v:.2g}" for v in obs[c][:2])))
    return out


def lambda_over_training(run_dirs: list[Path], out: Path, columns: int = 4) -> Path | None:
    """λ(s) on the task plane at ``columns`` points in training (from the snapshots in probe.npz), one row per
    algorithm with a multiplier network (its lowest seed), with the exact feasible boundary where known."""
    from statewise.run.diagnostics import LAMBDA_GRID_N

    first = _lowest_seed_runs(run_dirs)
    if not first:
        return None
    env_id = runio.read_config(next(iter(first.values()))[1])["env"]
    opened = _plane_task(env_id)
    if opened is None:
        return None
    env, task, plane = opened
    xs, ys, obs = plane.grid(LAMBDA_GRID_N)
    feas = task.feasible(obs).reshape(LAMBDA_GRID_N, LAMBDA_GRID_N) if hasattr(task, "feasible") else None
    env.close()
    fig, axes = plt.subplots(len(first), columns, figsize=(3.6 * columns, 3.0 * len(first)), squeeze=False,
                             layout="constrained")
    snapshots = {}
    for algo, (_, d) in first.items():
        probe = runio.read_npz(d / runio.PROBE_FILE)
        steps, grids = probe["grid_steps"], probe["grid_lam"]
        picks = np.unique(np.linspace(0, len(steps) - 1, columns).round().astype(int))
        snapshots[algo] = [(int(steps[k]), grids[k]) for k in picks]
    # one colour scale for every panel, so rows compare; logarithmic above 1, where a wound-up λ would flatten the rest
    vmax = max(1.0, max(float(g.max()) for shots in snapshots.values() for _, g in shots))
    norm = mcolors.SymLogNorm(linthresh=1.0, vmin=0.0, vmax=vmax)
    for row, (algo, (seed, _)) in zip(axes, first.items(), strict=True):
        for ax, (step, grid) in zip(row, snapshots[algo], strict=False):  # fewer snapshots than columns
            im = ax.imshow(grid.reshape(LAMBDA_GRID_N, LAMBDA_GRID_N), origin="lower", aspect="auto",
                           extent=(*plane.xlim, *plane.ylim), cmap="magma", norm=norm)
            if feas is not None:
                ax.contour(xs, ys, feas.astype(float), levels=[0.5], colors="lime", linewidths=1.0)
            ax.set_title(f"{algo} s{seed}, step {step}", fontsize=9)
            ax.set_xlabel(plane.xlabel, fontsize=8)
            ax.set_ylabel(plane.ylabel, fontsize=8)
        for ax in row[len(snapshots[algo]):]:
            ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="λ(s) (one scale for all panels; logarithmic above 1)")
    fig.suptitle(f"λ(s) over training on {env_id}" + (" (green: exact feasible boundary)" if feas is not None else ""))
    return save_figure(fig, out / "lambda_over_training.png")


RELIABILITY_BINS = 10  # bins of summaries that do not say (monte_carlo_calibration_from's default)


def pooled_reliability(curves: list[dict[str, Any]], bins: int = RELIABILITY_BINS
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One reliability curve for several seeds: their bins (summary.json's ``<score>_reliability``: mean score,
    violation frequency and number of states per quantile bin) pooled by score value, as if the seeds' states had been
    binned together. Bins with the same mean score (ties, e.g. λ = 0 in every seed) merge; the rest, in order of
    score, go to ``bins`` quantile bins of the pooled states, each by the pooled rank of its middle state (the rule of
    :func:`statewise.metrics.reliability` for tied scores). Exact where each seed's bins are groups of tied scores;
    otherwise at the resolution of the seeds' bins. (Lining bins up by position and cutting to the shortest seed
    averaged unrelated quantiles: seeds whose ties merged bins have fewer of them.) A summary written before the
    counts were kept gives each of its bins an equal share of its states.

    Returns, per non-empty pooled bin: the pooled quantile of its middle state (in (0, 1)), the mean score, the
    violation frequency and the number of states."""
    scores, freqs, counts = [], [], []
    for c in curves:
        n = len(c["violation_freq"])
        w = c.get("states") or [float(c.get("total_states", n)) / max(n, 1)] * n
        scores.append(np.asarray(c["mean_score"], dtype=np.float64))
        freqs.append(np.asarray(c["violation_freq"], dtype=np.float64))
        counts.append(np.asarray(w, dtype=np.float64))
    score, freq, count = (np.concatenate(a) if a else np.zeros(0) for a in (scores, freqs, counts))
    ok = np.isfinite(score) & np.isfinite(freq) & (count > 0)
    values, inverse = np.unique(score[ok], return_inverse=True)
    weight = np.bincount(inverse, count[ok], minlength=len(values))
    positives = np.bincount(inverse, count[ok] * freq[ok], minlength=len(values))
    total = weight.sum()
    if total <= 0:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    before = np.cumsum(weight) - weight
    which = quantile_bins(before + weight / 2, total, bins)
    used = np.unique(which)
    n_bin = np.array([weight[which == b].sum() for b in used])
    start = np.array([before[which == b].min() for b in used])
    mean_score = np.array([np.dot(weight[which == b], values[which == b]) for b in used]) / n_bin
    freq_bin = np.array([positives[which == b].sum() for b in used]) / n_bin
    return (start + n_bin / 2) / total, mean_score, freq_bin, n_bin


def reliability_curves(run_dirs: list[Path], out: Path) -> Path | None:
    """Violation frequency within H steps per λ-quantile bin (Monte-Carlo, final policy), and the same for
    Q^c as a reference; one line per algorithm, its seeds' states pooled (:func:`pooled_reliability`), each point at
    the pooled quantile of its bin's middle state."""
    curves: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    horizon, bins = None, RELIABILITY_BINS
    for d in run_dirs:
        summary = runio.read_json(d / runio.SUMMARY_FILE)
        mc = summary.get("mc_calibration") or {}
        for score in ("lambda", "cost_value"):
            if f"{score}_reliability" in mc:
                label = summary.get("label", summary["algo"])
                curves[score][label].append({"total_states": mc.get("states", 0), **mc[f"{score}_reliability"]})
                horizon, bins = mc["horizon"], int(mc.get("bins", RELIABILITY_BINS))
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, (score, title) in zip(axes, (("lambda", "λ(s)"), ("cost_value", "Q^c(s, π(s)) (reference)")), strict=True):
        for algo, series in curves[score].items():
            quantile, _, freq, _ = pooled_reliability(series, bins)
            ax.plot(quantile, freq, marker="o", label=f"{algo} (n={len(series)})")
        ax.set_xlabel(f"{title} quantile, seeds pooled (low → high)")
        ax.set_ylabel(f"P(violation within {horizon} steps)")
        ax.set_title(f"reliability of {title}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, out / "reliability.png")


def value_bias_curves(run_dirs: list[Path], out: Path) -> Path | None:
    """Critic estimates against Monte-Carlo truth over training (value_bias.csv), in the style of the TD3 paper's
    over-estimation figure: rows reward / cost critic, columns replay / exactly feasible states; per variant the
    mean estimate over states (solid, band over seeds) and the Monte-Carlo value of the same states (dashed)."""
    data: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    order: dict[str, tuple] = {}
    for d in run_dirs:
        rows = read_csv(Path(d) / runio.VALUE_BIAS_CSV)
        if rows:
            label, _ = run_label(Path(d))
            data[label].append(rows)
            order[label] = _variant_key(Path(d))
    if not data:
        return None
    labels = sorted(data, key=order.__getitem__)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    constrained = any("feasible_qc" in rows for series in data.values() for rows in series)
    kinds = [("q", "reward critic Q(s, π(s))")] + ([("qc", "cost critic Q^c(s, π(s))")] if constrained else [])
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.6 * len(kinds)), layout="constrained", squeeze=False)
    for row, (key, title) in zip(axes, kinds, strict=True):
        for ax, states in zip(row, ("replay", "feasible"), strict=True):
            for i, label in enumerate(labels):
                series = [r for r in data[label] if f"{states}_{key}" in r]
                if not series:
                    continue
                n = min(len(r["step"]) for r in series)
                steps = series[0]["step"][:n]
                color = colors[i % len(colors)]
                _band(ax, [(r["step"], r[f"{states}_{key}"]) for r in series], label, color)
                ax.plot(steps, np.mean([r[f"{states}_{key}_mc"][:n] for r in series], axis=0), color=color,
                        ls="--", lw=1.2)
            ax.set_title(f"{title}, {'replay' if states == 'replay' else 'exactly feasible'} states")
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="solid: critic, dashed: Monte-Carlo", title_fontsize=7)
    return save_figure(fig, out / "value_bias.png")


def _variant_key(run_dir: Path) -> tuple:
    cfg = runio.read_config(run_dir)
    return variant_order(cfg["algo"], str(cfg.get("label") or cfg["algo"]))


def default_plot_dir(run_dirs: list[Path]) -> Path:
    """Where ``statewise plot`` writes without ``--out``: RUN_DIR/plots for one run, else a ``plots`` folder in the
    runs' nearest common directory (e.g. runs/plots for runs/a and runs/b), never the working directory unasked."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0]) / "plots"
    common = Path(os.path.commonpath([str(Path(d).resolve()) for d in run_dirs]))
    if common in {Path(d).resolve() for d in run_dirs}:  # one run inside another's directory
        common = common.parent
    try:
        return common.relative_to(Path.cwd()) / "plots"
    except ValueError:
        return common / "plots"


def plot_runs(run_dirs: list[Path], out: Path, cost_limit: float = 0.0) -> list[Path]:
    """Learning curves and λ maps of ``run_dirs`` compared by configuration. Runs of several environments get one
    figure per environment, named after it (learning_curves-<env>.png); everything is checked before writing."""
    for d in run_dirs:
        if not Path(d).is_dir():
            raise CheckpointError(f"run directory {d} does not exist")
    run_dirs = [Path(d) for d in run_dirs]
    by_env: dict[str, list[Path]] = defaultdict(list)
    for config in configurations(run_dirs):  # reads every config.yaml first: a bad run fails before any file
        by_env[config.env].extend(config.runs)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for env, runs in by_env.items():
        suffix = "" if len(by_env) == 1 else "-" + env.replace("/", "-").replace(":", "-")
        paths.append(learning_curves(runs, out, cost_limit, f"learning_curves{suffix}.png"))
        heat = lambda_heatmaps(runs, out, f"lambda_heatmap{suffix}.png")
        if heat is not None:
            paths.append(heat)
    return paths
