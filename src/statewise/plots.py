"""Plots of run directories: learning curves and λ(s) heat maps (PNG, written atomically)."""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from statewise import runio  # noqa: E402
from statewise.config import variant_order  # noqa: E402
from statewise.errors import CheckpointError  # noqa: E402
from statewise.metrics import t_quantile_975  # noqa: E402

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


def _run_label(run_dir: Path) -> tuple[str, str]:
    """(group label = the run's label, by default its algorithm; env) from the run's config.yaml."""
    cfg_path = run_dir / runio.CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{run_dir} is not a statewise run directory (no {runio.CONFIG_FILE})")
    cfg = runio.read_config(run_dir)
    return str(cfg.get("label") or cfg.get("algo")), str(cfg.get("env"))


def _save(fig: plt.Figure, path: Path) -> Path:
    runio.atomic_save(fig, path, saver=lambda f, fh: f.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _band(ax: plt.Axes, steps: np.ndarray, series: list[np.ndarray], label: str, color: str) -> None:
    data = np.vstack(series)
    with warnings.catch_warnings():  # all-NaN columns (no finished episode yet) are simply not drawn
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(data, axis=0)
        half = (t_quantile_975(len(series) - 1) * np.nanstd(data, axis=0, ddof=1) / np.sqrt(len(series))
                if len(series) > 1 else None)  # Student's t 95% band over seeds
    ax.plot(steps, mean, label=f"{label} (n={len(series)})", color=color, lw=1.6)
    if half is not None:
        ax.fill_between(steps, mean - half, mean + half, color=color, alpha=0.2, lw=0)


def learning_curves(run_dirs: list[Path], out: Path) -> Path:
    """Eval return, eval cost and the probe-set mean of λ against environment steps; runs of the same
    algorithm are averaged with a 95% confidence band."""
    groups: dict[str, list[Path]] = defaultdict(list)
    envs = set()
    for d in run_dirs:
        algo, env = _run_label(d)
        groups[algo].append(d)
        envs.add(env)
    panels = [("eval", "return", "evaluation return"), ("eval", "cost", "evaluation episode cost"),
              ("train", "lam_probe_mean", "mean λ(s) on probe states")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (algo, dirs) in enumerate(groups.items()):
        for ax, (stream, key, title) in zip(axes, panels):
            tables = [read_csv(d / (runio.EVAL_CSV if stream == "eval" else runio.TRAIN_CSV)) for d in dirs]
            tables = [t for t in tables if key in t and len(t[key])]
            if not tables:
                continue
            n = min(len(t["step"]) for t in tables)
            _band(ax, tables[0]["step"][:n], [t[key][:n] for t in tables], algo, colors[i % len(colors)])
            ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(", ".join(sorted(envs)))
    return _save(fig, out / "learning_curves.png")


def lambda_heatmaps(run_dirs: list[Path], out: Path) -> Path | None:
    """λ(s) of each run with a multiplier network over the task's plane, with the exact feasible boundary (solid)
    where the task knows it and the constraint boundary h(s) = 0 (dashed)."""
    from statewise.agent import load
    from statewise.evaluate import build_env

    # a run that failed before its first checkpoint has no λ to draw (its learning curves are drawn)
    agents = [load(d) for d in run_dirs if (Path(d) / runio.CHECKPOINT_FILE).is_file()]
    agents = [a for a in agents if a.config.multiplier.kind == "network"]  # a scalar λ has no map
    if not agents:
        return None
    env = build_env(agents[0].config.env, agents[0].config.max_episode_steps)
    task = env.unwrapped
    if not hasattr(task, "plane"):
        return None
    plane = task.plane()
    xs, ys, obs = plane.grid(HEATMAP_N)
    cols = min(3, len(agents))
    rows = int(np.ceil(len(agents) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False, layout="constrained")
    for ax, agent in zip(axes.flat, agents):
        lam = agent.multiplier(obs).reshape(HEATMAP_N, HEATMAP_N)
        im = ax.imshow(lam, origin="lower", extent=(*plane.xlim, *plane.ylim), aspect="auto", cmap="magma")
        fig.colorbar(im, ax=ax, label="λ(s)")
        h = task.constraint(obs).reshape(HEATMAP_N, HEATMAP_N)
        ax.contour(xs, ys, h, levels=[0.0], colors="cyan", linestyles="--", linewidths=1.0)
        if hasattr(task, "feasible"):
            feas = task.feasible(obs).reshape(HEATMAP_N, HEATMAP_N).astype(float)
            ax.contour(xs, ys, feas, levels=[0.5], colors="lime", linewidths=1.5)
        ax.set_title(f"{agent.config.label} seed {agent.config.seed}")
        ax.set_xlabel(plane.xlabel)
        ax.set_ylabel(plane.ylabel)
    for ax in list(axes.flat)[len(agents):]:
        ax.axis("off")
    note = "green: exact feasible boundary, " if hasattr(task, "feasible") else ""
    fig.suptitle(f"λ(s) on {agents[0].config.env} ({note}cyan dashed: constraint h(s)=0)")
    env.close()
    return _save(fig, out / "lambda_heatmap.png")


def lambda_over_training(run_dirs: list[Path], out: Path, columns: int = 4) -> Path | None:
    """λ(s) on the task plane at ``columns`` points in training (from the snapshots in probe.npz), one row per
    algorithm with a multiplier network (its lowest seed), with the exact feasible boundary where known."""
    from statewise.evaluate import build_env
    from statewise.training import LAMBDA_GRID_N

    first: dict[str, tuple[int, Path]] = {}
    rank: dict[str, tuple[int, bool, str]] = {}
    for d in run_dirs:
        cfg = runio.read_config(d)
        if cfg["multiplier"]["kind"] != "network" or not (d / runio.PROBE_FILE).is_file():
            continue
        label = cfg.get("label") or cfg["algo"]
        rank[label] = variant_order(cfg["algo"], label)
        if label not in first or cfg["seed"] < first[label][0]:
            first[label] = (cfg["seed"], d)
    if not first:
        return None
    first = {label: first[label] for label in sorted(first, key=rank.__getitem__)}
    env_id = runio.read_config(next(iter(first.values()))[1])["env"]
    env = build_env(env_id)
    task = env.unwrapped
    if not hasattr(task, "plane"):
        env.close()
        return None
    plane = task.plane()
    xs, ys, obs = plane.grid(LAMBDA_GRID_N)
    feas = task.feasible(obs).reshape(LAMBDA_GRID_N, LAMBDA_GRID_N) if hasattr(task, "feasible") else None
    env.close()
    fig, axes = plt.subplots(len(first), columns, figsize=(3.6 * columns, 3.0 * len(first)), squeeze=False,
                             layout="constrained")
    for row, (algo, (seed, d)) in zip(axes, first.items()):
        probe = runio.read_npz(d / runio.PROBE_FILE)
        steps, grids = probe["grid_steps"], probe["grid_lam"]
        picks = np.unique(np.linspace(0, len(steps) - 1, columns).round().astype(int))
        vmax = float(grids[picks].max())
        for ax, k in zip(row, picks):
            im = ax.imshow(grids[k].reshape(LAMBDA_GRID_N, LAMBDA_GRID_N), origin="lower", aspect="auto",
                           extent=(*plane.xlim, *plane.ylim), cmap="magma", vmin=0.0, vmax=vmax)
            if feas is not None:
                ax.contour(xs, ys, feas.astype(float), levels=[0.5], colors="lime", linewidths=1.0)
            ax.set_title(f"{algo} s{seed}, step {int(steps[k])}", fontsize=9)
        fig.colorbar(im, ax=list(row), label="λ(s)")
        for ax in row[len(picks):]:
            ax.axis("off")
    fig.suptitle(f"λ(s) over training on {env_id}" + (" (green: exact feasible boundary)" if feas is not None else ""))
    return _save(fig, out / "lambda_over_training.png")


def reliability_curves(run_dirs: list[Path], out: Path) -> Path | None:
    """Violation frequency within H steps per λ-quantile bin (Monte-Carlo, final policy), and the same for
    Q^c as a reference; one line per algorithm, averaged over its seeds."""
    curves: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    horizon = None
    for d in run_dirs:
        summary = runio.read_json(d / runio.SUMMARY_FILE)
        mc = summary.get("mc_calibration") or {}
        for score in ("lambda", "cost_value"):
            if f"{score}_reliability" in mc:
                label = summary.get("label", summary["algo"])
                curves[score][label].append(mc[f"{score}_reliability"]["violation_freq"])
                horizon = mc["horizon"]
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, (score, title) in zip(axes, (("lambda", "λ(s)"), ("cost_value", "Q^c(s, π(s)) (reference)"))):
        for algo, series in curves[score].items():
            n = min(len(c) for c in series)
            freq = np.mean([c[:n] for c in series], axis=0)
            ax.plot(np.arange(1, n + 1), freq, marker="o", label=f"{algo} (n={len(series)})")
        ax.set_xlabel(f"{title} quantile bin (low → high)")
        ax.set_ylabel(f"P(violation within {horizon} steps)")
        ax.set_title(f"reliability of {title}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, out / "reliability.png")


def value_bias_curves(run_dirs: list[Path], out: Path) -> Path | None:
    """Critic estimates against Monte-Carlo truth over training (value_bias.csv), in the style of the TD3 paper's
    over-estimation figure: rows reward / cost critic, columns replay / exactly feasible states; per variant the
    mean estimate over states (solid, band over seeds) and the Monte-Carlo value of the same states (dashed)."""
    data: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    order: dict[str, tuple] = {}
    for d in run_dirs:
        rows = read_csv(Path(d) / runio.VALUE_BIAS_CSV)
        if rows:
            label, _ = _run_label(Path(d))
            data[label].append(rows)
            order[label] = _variant_key(Path(d))
    if not data:
        return None
    labels = sorted(data, key=order.__getitem__)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    constrained = any("feasible_qc" in rows for series in data.values() for rows in series)
    kinds = [("q", "reward critic Q(s, π(s))")] + ([("qc", "cost critic Q^c(s, π(s))")] if constrained else [])
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.6 * len(kinds)), layout="constrained", squeeze=False)
    for row, (key, title) in zip(axes, kinds):
        for ax, states in zip(row, ("replay", "feasible")):
            for i, label in enumerate(labels):
                series = [r for r in data[label] if f"{states}_{key}" in r]
                if not series:
                    continue
                n = min(len(r["step"]) for r in series)
                steps = series[0]["step"][:n]
                color = colors[i % len(colors)]
                _band(ax, steps, [r[f"{states}_{key}"][:n] for r in series], label, color)
                ax.plot(steps, np.mean([r[f"{states}_{key}_mc"][:n] for r in series], axis=0), color=color,
                        ls="--", lw=1.2)
            ax.set_title(f"{title}, {'replay' if states == 'replay' else 'exactly feasible'} states")
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="solid: critic, dashed: Monte-Carlo", title_fontsize=7)
    return _save(fig, out / "value_bias.png")


def _variant_key(run_dir: Path) -> tuple:
    cfg = runio.read_config(run_dir)
    return variant_order(cfg["algo"], str(cfg.get("label") or cfg["algo"]))


def plot_runs(run_dirs: list[Path], out: Path) -> list[Path]:
    for d in run_dirs:
        if not Path(d).is_dir():
            raise CheckpointError(f"run directory {d} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    paths = [learning_curves(run_dirs, out)]
    heat = lambda_heatmaps(run_dirs, out)
    if heat is not None:
        paths.append(heat)
    return paths
