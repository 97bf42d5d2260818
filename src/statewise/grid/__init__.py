"""Multi-seed benchmark grids (``statewise bench`` / ``statewise report``), in three parts:

* :mod:`statewise.grid.plan` — what to run: variants, run specs, grid files, populations, run fingerprints;
* :mod:`statewise.grid.execution` — running it: work items, the local executor, :func:`bench` (reuse, resume, refuse);
  :mod:`statewise.grid.ray_executor` runs the same work items on a Ray cluster;
* :mod:`statewise.analysis.report` — reading the results: per-run metrics, tables with Student-t CIs, figures.

A grid is every (env, variant, seed) combination, one run directory each under ``OUT/<env>/<label>-s<seed>``. This
module gathers the public names of the three for convenience.
"""

from statewise.analysis.report import ABLATION, HEADLINE_METRICS, ablation_table, ci_cell, report, run_metrics
from statewise.grid.execution import Executor, GridLock, Group, LocalExecutor, bench, run_group, run_spec
from statewise.grid.plan import GRID_KEYS, RunSpec, Variant, fingerprint, group_specs, load_grid, plan, stale

__all__ = ["ABLATION", "GRID_KEYS", "HEADLINE_METRICS", "Executor", "GridLock", "Group", "LocalExecutor", "RunSpec",
           "Variant", "bench", "fingerprint", "group_specs", "load_grid", "plan", "report", "run_group", "run_metrics",
           "run_spec", "stale", "ablation_table", "ci_cell"]
