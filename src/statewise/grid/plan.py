"""Benchmark grids: what to run. Variants (labelled algorithm presets with overrides), run specs, grid files, the
grouping of a cell's seeds into one population, and the fingerprint that says whether a run on disk is the run a spec
asks for. Nothing here runs anything (:mod:`statewise.grid.execution`) or reads results
(:mod:`statewise.analysis.report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from statewise.config import Config, flatten
from statewise.errors import StatewiseError
from statewise.run import runio


def _as_overrides(mapping: dict[str, Any]) -> list[str]:
    """{key: value} -> ["key=value"] with the value written as YAML (so lists and numbers survive)."""
    import yaml

    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in mapping.items()]


@dataclass(frozen=True)
class Variant:
    """One column of a grid: an algorithm, optionally with its own overrides under its own label."""

    label: str
    algo: str
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entry: str | dict[str, Any] | Variant) -> Variant:
        """``"fac"``, or a mapping ``{label: fac-lr3e-4, algo: fac, set: [multiplier.lr=3e-4]}``."""
        if isinstance(entry, Variant):
            return entry
        if isinstance(entry, str):
            return cls(entry, entry)
        if not isinstance(entry, dict) or "algo" not in entry:
            raise StatewiseError(f"a grid variant is an algorithm name or a mapping with 'algo', got {entry!r}")
        unknown = set(entry) - {"label", "algo", "set"}
        if unknown:
            raise StatewiseError(f"unknown key(s) in grid variant {entry!r}: {', '.join(sorted(unknown))}")
        sets = entry.get("set") or []
        if isinstance(sets, dict):
            sets = _as_overrides(sets)
        return cls(str(entry.get("label") or entry["algo"]), str(entry["algo"]), tuple(str(x) for x in sets))


@dataclass(frozen=True)
class RunSpec:
    algo: str
    env: str
    seed: int
    steps: int
    run_dir: str
    config: str = ""  # YAML file with the shared settings ("" = defaults)
    overrides: tuple[str, ...] = field(default_factory=tuple)  # shared, then the variant's own
    label: str = ""
    threads: int = 1  # torch threads of the worker process (bench gives spare cores to the populations)

    def build(self) -> Config:
        cfg = Config.from_yaml(self.config) if self.config else Config()
        cfg.algo, cfg.env, cfg.seed, cfg.steps, cfg.run_dir = self.algo, self.env, self.seed, self.steps, self.run_dir
        cfg.label = self.label
        cfg.progress, cfg.threads = False, self.threads
        cfg.apply_overrides(list(self.overrides))
        return cfg.validate()


# settings that say how a run is computed, not what it computes. threads: torch's thread count, which bench sets from
# the spare cores, so a grid continued with other --workers (or on another machine) still reuses its runs; more threads
# may change float rounding in torch's parallel kernels (no test claims bitwise equality across thread counts).
# compile: auto resolves per machine (a C++ compiler), and compiled and eager updates agree to float rounding
_NOT_FINGERPRINTED = {"run_dir", "threads", "progress", "compile"}


def fingerprint(cfg: Config) -> dict[str, Any]:
    """The resolved settings a run's results depend on (config.yaml minus run_dir, threads, progress, compile)."""
    flat = flatten(cfg.to_dict())
    return {k: v for k, v in flat.items() if k.split(".")[0] not in _NOT_FINGERPRINTED}


def stale(spec: RunSpec, run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` is not the run ``spec`` asks for (None if it is)."""
    try:
        old = Config.from_yaml(run_dir / runio.CONFIG_FILE).validate()
    except StatewiseError as exc:
        return f"its config.yaml cannot be read ({exc})"
    want, have = fingerprint(spec.build()), fingerprint(old)
    if want.get("sac.target_entropy") == "auto" and have.get("sac.target_entropy") != "auto":
        want["sac.target_entropy"] = _auto_target_entropy(spec.env)  # config.yaml holds the resolved −dim(A)
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if not diff:
        return None
    shown = ", ".join(f"{k}: {have.get(k)!r} there, {want.get(k)!r} asked" for k in diff[:3])
    return shown + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")


def _auto_target_entropy(env_id: str) -> float:
    from statewise.run.evaluate import build_env

    env = build_env(env_id)
    try:
        return float(-env.action_space.shape[0])
    finally:
        env.close()


def group_specs(specs: list[RunSpec], populations: bool = True) -> list[tuple[RunSpec, ...]]:
    """The seeds of each (env, variant) cell as one population (in seed order), or every run on its own."""
    if not populations:
        return [(spec,) for spec in specs]
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        cells.setdefault((spec.env, spec.label, spec.algo, spec.config, spec.overrides, spec.steps), []).append(spec)
    return [tuple(sorted(group, key=lambda sp: sp.seed)) for group in cells.values()]


def plan(algos: list[str | dict[str, Any] | Variant], envs: list[str], seeds: list[int], steps: int, out: Path,
         config: str = "", overrides: tuple[str, ...] = ()) -> list[RunSpec]:
    """Every (env, variant, seed) cell as a RunSpec with its directory ``out/<env>/<label>-s<seed>``."""
    variants = [Variant.parse(a) for a in algos]
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise StatewiseError(f"grid labels must be unique, got {', '.join(labels)}")
    if len(set(seeds)) != len(seeds):
        raise StatewiseError(f"grid seeds must be unique, got {seeds}")
    specs = []
    for env in envs:
        env_name = env.split("/")[-1].split(":")[-1]
        for v in variants:
            for seed in seeds:
                specs.append(RunSpec(v.algo, env, seed, steps, str(out / env_name / f"{v.label}-s{seed}"), config,
                                     tuple(overrides) + v.overrides, v.label))
    for spec in specs:  # fail on bad input before anything runs
        spec.build()
    return specs


GRID_KEYS = {"algos", "envs", "seeds", "steps", "config", "set", "cost_limit"}


def load_grid(path: str | Path) -> dict[str, Any]:
    """A grid file (YAML): ``algos`` (names or variant mappings), ``envs``, ``seeds`` (list), ``steps``,
    ``config`` (relative to the grid file), ``set`` (shared overrides: a list of ``key=value`` or a mapping),
    ``cost_limit``."""
    path = Path(path)
    data = _read_grid_file(path)
    if "config" in data:
        data["config"] = _config_path(path, data["config"])
    if "seeds" in data and not (isinstance(data["seeds"], list) and all(isinstance(x, int) for x in data["seeds"])):
        raise StatewiseError(f"grid file {path}: seeds must be a list of integers")
    if isinstance(data.get("set"), dict):  # {key: value} is the same as [key=value, ...]
        data["set"] = _as_overrides(data["set"])
    _check_values(path, data)
    if "config" in data and not Path(data["config"]).is_file():
        raise StatewiseError(f"grid file {path}: config file {data['config']} not found")
    if "algos" in data:
        data["algos"] = [Variant.parse(entry) for entry in data["algos"]]
    return data


def _read_grid_file(path: Path) -> dict[str, Any]:
    """The mapping a grid file holds, with only known keys."""
    import yaml

    if not path.is_file():
        raise StatewiseError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StatewiseError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StatewiseError(f"cannot read grid file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StatewiseError(f"grid file {path} must hold a mapping")
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise StatewiseError(f"unknown key(s) in grid file {path}: {', '.join(sorted(unknown))}; "
                             f"expected {', '.join(sorted(GRID_KEYS))}")
    return data


def _config_path(path: Path, config: Any) -> str:
    """A grid file's ``config``, resolved relative to the grid file."""
    if not isinstance(config, str) or not config:
        raise StatewiseError(f"grid file {path}: config must be a file name, got {config!r}")
    return str((path.parent / config).resolve())


def _check_values(path: Path, data: dict[str, Any]) -> None:
    """The lists, ``steps`` and ``cost_limit`` of a grid file have the right types."""
    for key in ("algos", "envs", "set"):
        if key in data and not isinstance(data[key], list):
            raise StatewiseError(f"grid file {path}: {key} must be a list")
    if "steps" in data and not (isinstance(data["steps"], int) and not isinstance(data["steps"], bool)
                                and data["steps"] > 0):
        raise StatewiseError(f"grid file {path}: steps must be a positive integer, got {data['steps']!r}")
    if "cost_limit" in data:
        limit = data["cost_limit"]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not np.isfinite(limit):
            raise StatewiseError(f"grid file {path}: cost_limit must be a finite number, got {limit!r}")
    for key in ("envs", "set"):
        if key in data and not all(isinstance(x, str) and x for x in data[key]):
            raise StatewiseError(f"grid file {path}: {key} must be a list of non-empty strings")
