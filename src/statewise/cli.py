"""Command line: ``statewise train | eval | plot``. Every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click

from statewise.config import ALGORITHMS, VECTOR_MODES, Config, preset_table
from statewise.errors import StatewiseError


class FiniteFloat(click.ParamType):
    """A float option that refuses NaN and infinities (click's FLOAT takes 'nan' and 'inf')."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        return number


FINITE = FiniteFloat()

ALGO_HELP = "Algorithm: " + ", ".join(ALGORITHMS) + "."
PRESETS_HEADING = "Algorithms (--algo), presets of the multiplier keys (each sets those left at auto):"
ENV_HELP = ("Environment id: statewise/DoubleIntegrator-v0, statewise/PointHazard-v0, "
            "statewise/<Robot>Velocity-v0 (mujoco extra), a Safety-Gymnasium id such as SafetyPointGoal1-v0 "
            "(its extra), or any Gymnasium id whose env reports info['cost'] ('module:Name-v0' imports the module "
            "first).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="statewise")
@click.option("--verbose", is_flag=True, help="Show third-party notices and warnings that are filtered by default.")
def cli(verbose) -> None:
    """statewise: state-wise safe RL with SAC-ALaM and its baselines."""
    if verbose:
        from statewise.quiet import set_verbose

        set_verbose()


TRAIN_HELP = f"""Train an agent and write a run directory (metrics, TensorBoard, checkpoint, summary, plots).

\b
{PRESETS_HEADING}
{preset_table()}
\b
Built-in environments: statewise/DoubleIntegrator-v0, statewise/PointHazard-v0
Velocity-constrained MuJoCo (mujoco extra): statewise/{{HalfCheetah,Hopper,Walker2d,Ant,Swimmer,Humanoid}}Velocity-v0
Safety-Gymnasium (its own extra): SafetyPointGoal1-v0, SafetyCarGoal1-v0, SafetyHalfCheetahVelocity-v1, ...

Precedence: defaults < --config < --algo/--env/--steps/--seed/--run-dir/--device/--num-envs/--vector-mode < --set.
Every config key (for --config files and --set) with its type, default and meaning: statewise config.
"""


@cli.command(help=TRAIN_HELP)
@click.option("--algo", default=None, help=ALGO_HELP + " [default: sac-alam]")
@click.option("--env", "env_id", default=None, help=ENV_HELP)
@click.option("--steps", type=int, default=None, help="Environment steps to train for.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same results on CPU).")
@click.option("--seeds", "seeds_spec", default=None, metavar="LIST",
              help="Train a population of seeds in one process with one batched update, e.g. 0-7 or 0,3,5 "
                   "(one run directory per seed: RUN_DIR/<algo>-s<seed>).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML file of config keys (examples in configs/; every key: statewise config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config key, e.g. --set multiplier.rho=10 (repeatable; every key: statewise config).")
@click.option("--run-dir", default=None, help="New directory for this run (must not exist).")
@click.option("--device", default=None, help="cpu or cuda (the whole update and the replay buffer on the GPU).")
@click.option("--num-envs", type=int, default=None,
              help="Environments collecting at once [default: 1]; sac.update_ratio stays per transition.")
@click.option("--vector-mode", type=click.Choice(VECTOR_MODES), default=None,
              help="How several environments step: sync (in turn, this process) or async (one process each) "
                   "[default: single for one environment, sync for several].")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--resume", "resume_dir", default=None, metavar="RUN_DIR",
              help="Continue a killed run from its last checkpoint (RUN_DIR of one run, or of a population's runs); "
                   "takes no other option but --no-progress and --trust.")
@click.option("--trust", is_flag=True,
              help="With --resume: unpickle the saved environments even if another user or machine wrote the file "
                   "(by default only files signed with your own key are; others resume with fresh episodes).")
def train(algo, env_id, steps, seed, seeds_spec, config_path, overrides, run_dir, device, num_envs, vector_mode,
          no_progress, resume_dir, trust) -> None:
    from statewise.api import population_configs, resume, train_population

    if run_dir is not None and not run_dir.strip():
        raise StatewiseError("--run-dir must name a directory, got an empty one (leave --run-dir out for a generated "
                             "name under runs/)")
    if resume_dir is not None:
        given = [name for name, value in (("--algo", algo), ("--env", env_id), ("--steps", steps), ("--seed", seed),
                                          ("--seeds", seeds_spec), ("--config", config_path), ("--set", overrides),
                                          ("--run-dir", run_dir), ("--device", device), ("--num-envs", num_envs),
                                          ("--vector-mode", vector_mode)) if value]
        if given:
            raise StatewiseError(f"--resume continues a run with its own config.yaml; drop {', '.join(given)}")
        results = resume(resume_dir, progress=False if no_progress else None, trust=trust)
        _report_results(results, Path(resume_dir) if len(results) > 1 else None)
        return
    if trust:
        raise StatewiseError("--trust applies to --resume only")
    if seed is not None and seeds_spec is not None:
        raise StatewiseError("give --seed (one run) or --seeds (a population), not both")
    cfg = Config.from_yaml(config_path) if config_path else Config()
    for key, value in (("algo", algo), ("env", env_id), ("steps", steps), ("seed", seed),
                       ("device", device), ("num_envs", num_envs), ("vector_mode", vector_mode)):
        if value is not None:
            cfg.set(key, value)
    if no_progress:
        cfg.progress = False
    cfg.apply_overrides(list(overrides))
    if seeds_spec is None:
        if run_dir is not None:
            cfg.run_dir = run_dir
        configs = [cfg]
    else:
        configs = population_configs(cfg, parse_seeds(seeds_spec), run_dir)
    results = train_population(configs)
    _report_results(results, Path(run_dir) if seeds_spec is not None and run_dir is not None else None)


def _report_results(results: list, population_dir: Path | None) -> None:
    """Each run's directory and final numbers (or failure), the plots, and exit code 1 if a run failed."""
    from statewise.analysis.plots import plot_runs

    for result in results:
        click.echo(f"run directory: {result.run_dir}")
        if result.failed:
            click.echo(_failure_line(result.summary))
        else:
            click.echo(_summary_line(result.summary["final_eval"], result.summary.get("calibration", {})))
    untrained = [r for r in results if not r.failed and r.summary.get("gradient_updates") == 0]
    if untrained:  # every step fell in the random warm-up (tests and configs use such runs, so it is not refused)
        from statewise.config import min_training_steps

        cfg = Config.from_yaml(untrained[0].run_dir / "config.yaml")
        click.echo(f"statewise: warning: no gradient update: the {cfg.steps} steps all fell in the warm-up of "
                   f"random actions (sac.start_steps={cfg.sac.start_steps}), so the policy is untrained; the smallest "
                   f"run that trains is --steps {min_training_steps(cfg)} (or lower sac.start_steps)", err=True)
    plots = [p for r in results for p in r.plots]  # each run's own plots/, written by training
    if population_dir is not None:  # and the population's seeds pooled in one figure
        plots += plot_runs([r.run_dir for r in results], population_dir / "plots")
    click.echo(f"plots: {', '.join(str(p) for p in plots)}")
    failed = [r for r in results if r.failed]
    if failed:
        raise RunFailed(f"{len(failed)} of {len(results)} run(s) failed: " + "; ".join(
            f"{r.run_dir} at step {r.summary['failure']['step']}" for r in failed))


def parse_seeds(spec: str) -> list[int]:
    """``0-7`` -> [0, ..., 7]; ``0,3,5`` -> [0, 3, 5]; ranges and single seeds combine (``0-3,8``)."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part.lstrip("-"):
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise StatewiseError(f"--seeds: '{part}' is not a seed or a range like 0-7 (in '{spec}')") from None
    if any(x < 0 for x in seeds):
        raise StatewiseError(f"--seeds: seeds must be non-negative, got '{spec}'")
    if len(set(seeds)) != len(seeds):
        raise StatewiseError(f"--seeds: each seed at most once, got '{spec}'")
    return seeds


@cli.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--episodes", type=int, default=20, show_default=True, help="Deterministic evaluation episodes.")
@click.option("--seed", type=int, default=12345, show_default=True, help="Seed of the first episode's reset.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--video", is_flag=True,
              help="Also record the first --video-episodes episodes to MP4, headless (needs the video extra).")
@click.option("--video-episodes", type=int, default=1, show_default=True, help="Episodes to record with --video.")
@click.option("--video-dir", type=click.Path(file_okay=False), default=None,
              help="Where the MP4s go [default: RUN_DIR/videos]; existing files are never overwritten.")
def eval_cmd(run_dir, episodes, seed, as_json, video, video_episodes, video_dir) -> None:
    """Evaluate a trained run: return, cost and violation rate of deterministic episodes (and, with --video,
    MP4s of them)."""
    from statewise.analysis import video as videos

    if episodes <= 0:
        raise StatewiseError(f"--episodes must be positive, got {episodes}")
    if not 0 <= seed < 2**32 - episodes:
        raise StatewiseError(f"--seed must be in [0, 2**32 - episodes), got {seed}")
    if video and not 0 < video_episodes <= episodes:
        raise StatewiseError(f"--video-episodes must be in [1, --episodes={episodes}], got {video_episodes}")
    if video:
        videos.use_headless_gl()  # before anything imports MuJoCo
    from statewise.analysis.agent import load
    from statewise.run.evaluate import calibration, run_episodes, task_env

    agent = load(run_dir)
    if video:
        out = Path(video_dir) if video_dir else Path(run_dir) / "videos"
        for path in videos.record(agent.config.env, agent.config.max_episode_steps, agent.act, out,
                                  video_episodes, seed):
            click.echo(f"video: {path}", err=as_json)
    env = task_env(agent.config)
    result = run_episodes(env, lambda o: agent.act(o), range(seed, seed + episodes), agent.config.constraint.costs)
    calib = calibration(env, agent.multiplier, agent.cost_value) if agent.config.constrained else {}
    if as_json:
        from statewise.run.runio import strict

        click.echo(json.dumps(strict({"episodes": episodes, **result, "calibration": calib}), indent=2,
                              allow_nan=False))
    else:
        click.echo(f"{agent.config.algo} on {agent.config.env} ({episodes} episodes)")
        click.echo(_summary_line(result, calib))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Directory for the PNGs [default: RUN_DIR/plots for one run; for several, a plots folder in "
                   "their nearest common directory, e.g. runs/plots].")
@click.option("--cost-limit", type=FINITE, default=0.0, show_default=True,
              help="Episode-cost limit drawn on the cost panel (0: the state-wise constraint, no violation).")
def plot(run_dirs, out, cost_limit) -> None:
    """Compare runs: learning curves (return, cost, multiplier) with one line per configuration (seeds of the same
    settings pooled with a 95% band, labelled by the settings that differ) and, for tasks with a plane, λ(s) maps on
    one colour scale. Runs of several environments get one figure per environment."""
    from statewise.analysis.plots import default_plot_dir, plot_runs
    from statewise.run import runio

    dirs = [Path(d) for d in run_dirs]
    out_dir = Path(out) if out else default_plot_dir(dirs)
    paths = plot_runs(dirs, out_dir, cost_limit)
    click.echo(f"plots in {out_dir}:")
    for path in paths:
        click.echo(str(path))
    for d in dirs:  # not drawn here, but a damaged file of a run the user asked about: said (statewise report refuses)
        if (d / runio.PROBE_FILE).is_file():
            try:
                runio.read_npz(d / runio.PROBE_FILE)
            except StatewiseError as exc:
                click.echo(f"statewise: warning: {exc}; these plots do not use it, but statewise report refuses "
                           "the run", err=True)


@cli.command("bench")
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False), default=None,
              help="YAML grid file (algos or labelled variants, envs, seeds, steps, config, set); "
                   "the options below override it. See benchmarks/grids/.")
@click.option("--algos", default=None, help="Comma-separated algorithms [default: sac-lag,fac,sac-alam].")
@click.option("--envs", default=None, help="Comma-separated env ids [default: statewise/DoubleIntegrator-v0].")
@click.option("--seeds", type=int, default=None, help="Number of seeds per cell [default: 3].")
@click.option("--first-seed", type=int, default=None,
              help="Seeds are first-seed .. first-seed+seeds-1 (keep tuning and report seeds apart) [default: 0].")
@click.option("--steps", type=int, default=None, help="Environment steps per run (required without --grid).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Grid directory (reused to continue).")
@click.option("--workers", type=int, default=None, help="Parallel runs [default: one per core].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML file of shared config keys.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Shared override (repeatable).")
@click.option("--cost-limit", type=FINITE, default=None,
              help="Episode-cost level for counting threshold crossings in the report [default: 0].")
@click.option("--populations/--no-populations", default=True, show_default=True,
              help="Train the seeds of each (env, variant) cell as one population (one process, one batched "
                   "update), or every run in its own process.")
@click.option("--redo", is_flag=True,
              help="Runs in OUT trained with other settings are moved aside (.stale-<time>) and trained again "
                   "(without it, bench refuses to reuse them).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the work items run: worker processes here, or Ray tasks (the ray extra).")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="With --executor ray: join this Ray cluster (default: start a local Ray for the grid).")
def bench_cmd(grid_path, algos, envs, seeds, first_seed, steps, out, workers, config_path, overrides,
              cost_limit, populations, redo, executor, address) -> None:
    """Run a grid of algorithms (or labelled variants) x environments x seeds in parallel worker processes,
    skipping runs already finished in OUT, then write OUT/report.md. Exits 1 when a run failed (diverged, or its
    worker died), after writing the report of the runs that finished."""
    from statewise.analysis.report import report
    from statewise.grid.execution import GridIncomplete, GridLock, LocalExecutor, bench
    from statewise.grid.plan import load_grid, plan

    grid = load_grid(grid_path) if grid_path else {}
    variants = algos.split(",") if algos else grid.get("algos", ["sac-lag", "fac", "sac-alam"])
    env_ids = envs.split(",") if envs else grid.get("envs", ["statewise/DoubleIntegrator-v0"])
    if seeds is not None or first_seed is not None or "seeds" not in grid:
        n = 3 if seeds is None else seeds
        if n <= 0:
            raise StatewiseError(f"--seeds must be positive, got {n}")
        seed_list = list(range(first_seed or 0, (first_seed or 0) + n))
    else:
        seed_list = grid["seeds"]
    steps = steps if steps is not None else grid.get("steps")
    if steps is None:
        raise StatewiseError("--steps is required (or give steps in the --grid file)")
    if workers is not None and workers <= 0:
        raise StatewiseError(f"--workers must be positive, got {workers}")
    specs = plan(variants, env_ids, seed_list, int(steps), Path(out), config_path or grid.get("config", ""),
                 tuple(grid.get("set", [])) + tuple(overrides))
    with GridLock(Path(out)) as lock:
        if executor == "ray":
            from statewise.grid.ray_executor import RayExecutor

            engine = RayExecutor(Path(out), address, workers)
        else:
            if address is not None:
                raise StatewiseError("--address goes with --executor ray")
            engine = LocalExecutor(workers or os.cpu_count() or 1, lock.workers)
        failed = None
        try:
            summaries = bench(specs, engine, populations=populations, redo=redo)
        except GridIncomplete as exc:
            failed, summaries = exc, exc.summaries
    limit = cost_limit if cost_limit is not None else float(grid.get("cost_limit", 0.0))
    written = None
    if summaries:  # the work done is kept and reported, also when some runs failed
        written = report(Path(out), limit, warn=lambda message: click.echo(f"statewise: warning: {message}", err=True))
        click.echo(str(written))
    diverged = sum(summary.get("status") == "failed" for summary in summaries)
    unfinished = sum(len(group.specs) for group, _ in failed.failures) if failed is not None else 0
    if diverged or unfinished:
        why = ([f"{diverged} diverged"] if diverged else []) + \
              ([f"{unfinished} did not finish: {failed}"] if unfinished else [])
        raise RunFailed(f"{diverged + unfinished} of {len(specs)} runs failed ({'; '.join(why)}); "
                        + (f"report: {written}" if written else "no run finished, no report"))


@cli.command("calibrate")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--episodes", type=int, default=100, show_default=True, help="Rollouts of the final policy to fit on.")
@click.option("--test-episodes", type=int, default=100, show_default=True,
              help="Further rollouts, held out, to measure the calibration error on.")
@click.option("--horizon", type=int, default=50, show_default=True,
              help="H: the risk is of a violation within H steps.")
@click.option("--score", type=click.Choice(["auto", "lambda", "cost_value"]), default="auto", show_default=True,
              help="What to calibrate: λ(s), or Q^c(s, π(s)); auto = λ for a multiplier network, else Q^c.")
def calibrate_cmd(run_dirs, episodes, test_episodes, horizon, score) -> None:
    """Fit the risk monitor of each run: P(violation within H steps) from λ(s) by isotonic regression on Monte-Carlo
    rollouts of the final policy; writes RUN_DIR/risk.json (used by agent.risk and export) and a reliability plot.
    With several runs, also the mean ± 95% CI (Student's t) of the held-out figures per variant."""
    from statewise.analysis.calibrate import calibrate
    from statewise.analysis.plots import run_label
    from statewise.analysis.report import ci_cell

    by_label: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        out = calibrate(Path(run_dir), episodes, test_episodes, horizon, score)
        test = out["test"]
        click.echo(f"{run_dir}: risk from {out['score']}, {_risk_figures(out, horizon)}; {out['plot']}")
        for name, monitor in out.get("constraints", {}).items():  # one monitor per named constraint
            click.echo(f"  [{name}] {_risk_figures(monitor, horizon)}")
        by_label.setdefault(f"{run_label(Path(run_dir))[0]} ({out['score']})", []).append(test)
    if len(run_dirs) > 1:  # mean ± Student-t CI over the finite values; undefined ones (no violation) counted
        for label, tests in by_label.items():
            cells = [f"{name} {ci_cell([t[key] for t in tests])}" for key, name in
                     (("ece", "ECE"), ("ece_at_risk", "ECE at risk"), ("brier", "Brier"),
                      ("brier_skill", "Brier skill"), ("auroc", "AUROC"), ("positive_fraction", "positives"))]
            click.echo(f"{label}, n={len(tests)}: " + ", ".join(cells))


def _risk_figures(monitor: dict, horizon: int) -> str:
    """The held-out figures of one risk monitor (risk.json), in one line."""
    test = monitor["test"]
    return (f"held-out ECE {test['ece']:.4f}, ECE at risk (p >= {test['at_risk_threshold']:g}, "
            f"{test['at_risk_states']} states) {test['ece_at_risk']:.4f}, Brier {test['brier']:.4f}, Brier skill "
            f"{test['brier_skill']:.3f}, AUROC {test['auroc']:.3f} ({test['states']} states, "
            f"{test['positive_fraction']:.3f} with a violation within {horizon} steps; fit on "
            f"{monitor['fit']['states']})")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True,
              help="ONNX (onnxruntime, any language) or TorchScript (libtorch).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="File to write [default: RUN_DIR/export/agent.onnx or agent.pt]; never overwritten.")
def export_cmd(run_dir, fmt, out) -> None:
    """Export the deterministic policy, λ(s), Q^c(s, π(s)) and (after statewise calibrate) the risk monitor as one
    model with input obs (N, obs_dim); checked against torch on random inputs before it is kept (export extra)."""
    from statewise.analysis.export import export

    path, names = export(Path(run_dir), fmt, out)
    click.echo(f"{path}: input obs (N, obs_dim) float32 -> {', '.join(names)}")


@cli.command("config")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="Print the resolved config of --algo as YAML instead (a starting point for --config files).")
@click.option("--algo", default="sac-alam", show_default=True, help=ALGO_HELP)
def config_cmd(as_yaml, algo) -> None:
    """List every config key with its type, default and meaning (read from the typed config, so always current).
    A value of auto is set by the algorithm preset (--yaml shows what it becomes)."""
    from statewise.config import reference

    if as_yaml:
        click.echo(Config(algo=algo).validate().to_yaml(), nl=False)
        return
    click.echo(PRESETS_HEADING)
    click.echo(preset_table())
    rows = reference()
    width = max(len(key) for key, *_ in rows)
    kinds = max(len(kind) for _, kind, *_ in rows)
    for key, kind, default, meaning in rows:
        click.echo(f"{key:<{width}}  {kind:<{kinds}}  {default:<10}  {meaning}")


@cli.command("report")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--cost-limit", type=FINITE, default=0.0, show_default=True,
              help="Episode-cost level for counting threshold crossings.")
def report_cmd(out, cost_limit) -> None:
    """Aggregate a benchmark grid directory (a bench --out folder: OUT/<env>/<label>-s<seed>) into OUT/report.md
    with figures."""
    from statewise.analysis.report import report

    click.echo(str(report(Path(out), cost_limit,
                          warn=lambda message: click.echo(f"statewise: warning: {message}", err=True))))


class RunFailed(Exception):
    """Training ran but a run diverged: exit code 1 (user errors are 2)."""


def _failure_line(summary: dict) -> str:
    failure = summary["failure"]
    kept = summary.get("last_checkpoint_step")
    what = failure.get("error") or f"non-finite {failure['quantity']}"  # error: what the environment raised
    return (f"FAILED at step {failure['step']}: {what}; "
            + (f"last good checkpoint at step {kept}" if kept else "no checkpoint was written"))


def _summary_line(result: dict, calib: dict) -> str:
    parts = [f"return {result['return']:.2f}", f"cost {result['cost']:.2f}",
             f"step violation rate {result['step_violation_rate']:.4f}",
             f"episode violation prob {result['episode_violation_prob']:.3f}"]
    if "feasible_start_violation_prob" in result:
        parts.append(f"violation prob from feasible starts {result['feasible_start_violation_prob']:.3f}")
    if "lambda_auroc" in calib:
        parts.append(f"lambda AUROC {calib['lambda_auroc']:.3f}")
    return ", ".join(parts)


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: workers terminated, nothing half-written kept


def main(argv: list[str] | None = None) -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    try:
        cli.main(args=argv, prog_name="statewise", standalone_mode=False)
    except StatewiseError as exc:
        trace = getattr(exc, "trace", "")  # an environment that raised (EnvStepError): the user needs its traceback
        click.echo(f"statewise: error: {exc}" + (f"; its traceback:\n{trace.rstrip()}" if trace else ""), err=True)
        sys.exit(2)
    except RunFailed as exc:
        click.echo(f"statewise: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("statewise: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"statewise: error: {exc.format_message()}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
