"""One typed configuration, validated once and saved verbatim into every run directory.

A run is fully described by :class:`Config`. Sources are applied in one documented order:
dataclass defaults < ``--config file.yaml`` < explicit CLI flags (``--algo``, ``--env`` ...) <
``--set key=value``. :meth:`Config.validate` first resolves every ``"auto"`` the config decides itself
(:meth:`Config.resolve`), then checks each section, so the ``config.yaml`` in the run directory says exactly which
values ran.

Algorithms are presets of the multiplier block (docs/algorithm.md §6): :data:`ALGORITHMS` maps each ``--algo`` to a
:class:`Preset`, and :func:`preset_table` renders them as the table that ``statewise train --help``,
``statewise config``, the README and docs/algorithm.md show (a test keeps the documents' copies equal to it).

"w/o both" is ``fac``: the presets differ only in the two switches, so
``--algo sac-alam --set multiplier.penalty=lagrangian --set multiplier.update=dual-ascent``
reproduces ``--algo fac`` exactly (a test checks this).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from statewise.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """One ``--algo``: the values its ``auto`` multiplier keys resolve to, and what it is."""

    kind: str  # multiplier.kind: none | scalar | pid | network
    update: str  # multiplier.update: dual-ascent | regression | pid (none without a multiplier)
    penalty: str  # multiplier.penalty: lagrangian | augmented (none without a multiplier)
    normalize_actor: bool  # multiplier.normalize_actor: divide the actor loss by 1 + λ
    summary: str  # what it is, in a few words (the last column of preset_table)


ALGORITHMS: dict[str, Preset] = {
    "sac": Preset("none", "none", "none", False, "unconstrained SAC"),
    "sac-lag": Preset("scalar", "dual-ascent", "lagrangian", True, "SAC-Lag (as in FDPI)"),
    "sac-pid-lag": Preset("pid", "pid", "lagrangian", True, "PID-Lagrangian SAC (Stooke et al. 2020)"),
    "sac-al": Preset("scalar", "dual-ascent", "augmented", False, "scalar augmented Lagrangian"),
    "fac": Preset("network", "dual-ascent", "lagrangian", False, "Feasible Actor-Critic (Ma et al. 2021)"),
    "sac-alam": Preset("network", "regression", "augmented", False, "SAC-ALaM (reconstructed)"),
    "alam-no-qp": Preset("network", "regression", "lagrangian", False, "ablation: no quadratic penalty"),
    "alam-no-dt": Preset("network", "dual-ascent", "augmented", False, "ablation: no dual-target regression"),
}
PRESET_COLUMNS = ("algo", "multiplier", "update", "penalty", "actor loss ÷ (1+λ)", "what it is")


def preset_table() -> str:
    """The algorithm presets as a Markdown table, one row per ``--algo`` (``statewise train --help``,
    ``statewise config``, and verbatim in README.md and docs/algorithm.md)."""
    rows = [PRESET_COLUMNS] + [
        (algo, p.kind, _or_dash(p.update), _or_dash(p.penalty), "yes" if p.normalize_actor else "no", p.summary)
        for algo, p in ALGORITHMS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(PRESET_COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(rows[0]), line(tuple("-" * w for w in widths)), *map(line, rows[1:])]) + "\n"


def _or_dash(value: str) -> str:
    return "–" if value == "none" else value


def variant_order(algo: str, label: str) -> tuple[int, bool, str]:
    """Sort key for report columns and figure rows: presets in ALGORITHMS order, each before its variants."""
    return list(ALGORITHMS).index(algo), label != algo, label


# Default multiplier learning rates. Adam moves each parameter by about lr per step whatever the gradient's scale, so
# for dual ascent the lr is the dual step: on a λ network, 1e-3 wound it up to the cap in every state and 3e-5 did
# not (docs/algorithm.md §5; docs/results/double_integrator_dual_step/report.md). Regression to the dual target fits
# a clipped target, as a critic fits its Bellman target, so it takes a critic's lr and K_λ = 10 steps per update
# (docs/algorithm.md §5).
SCALAR_LR, NETWORK_LR = 3e-4, 3e-5
REGRESSION_STEPS = 10
MULTIPLIER_KINDS = ("none", "scalar", "pid", "network")
UPDATE_RULES = ("dual-ascent", "regression", "pid")
PENALTIES = ("lagrangian", "augmented")
SIGNALS = ("cvf", "cdf", "hjr", "cbf")
ACTIVATIONS = ("relu", "elu", "tanh")
DEVICES = ("cpu", "cuda")
VECTOR_MODES = ("single", "sync", "async")


@dataclass
class SACConfig:
    """The shared soft actor-critic backbone (docs/algorithm.md §3)."""

    hidden: list[int] = field(default_factory=lambda: [256, 256])  # hidden layer widths of actor and critics
    activation: str = "relu"  # hidden activation of actor and critics (and λ, see multiplier): relu | elu | tanh
    gamma: float = 0.99  # reward discount γ
    tau: float = 0.005  # Polyak rate of the reward critics' targets
    batch_size: int = 256  # minibatch size of every gradient step
    buffer_size: int = 1_000_000  # replay capacity in transitions (per member of a population)
    start_steps: int = 10_000  # uniformly random actions, no updates, before this many env steps
    # gradient steps per collected transition (not per vector step), so results compare across num_envs;
    # fractional ratios accumulate (0.25 = one update every 4 transitions)
    update_ratio: float = 1.0
    lr_actor: float = 3e-4  # Adam learning rate of the policy
    lr_critic: float = 3e-4  # Adam learning rate of the reward and cost critics
    lr_alpha: float = 3e-4  # Adam learning rate of the entropy temperature α
    alpha_init: float = 1.0  # initial temperature α
    target_entropy: float | str = "auto"  # auto = -dim(A)
    grad_clip: float = 40.0  # global norm per optimiser; 0 disables
    reward_scale: float = 1.0  # rewards are multiplied by this before the critics see them

    def check(self) -> None:
        """Check the backbone's values (``target_entropy`` may stay ``auto``: it needs the action space)."""
        if self.target_entropy != "auto" and not isinstance(self.target_entropy, (int, float)):
            raise ConfigError(f"sac.target_entropy must be a number or 'auto', got '{self.target_entropy}'")
        _choice("sac.activation", self.activation, ACTIVATIONS)
        for name in ("batch_size", "buffer_size", "update_ratio", "lr_actor", "lr_critic", "lr_alpha", "alpha_init",
                     "reward_scale"):
            _positive(f"sac.{name}", getattr(self, name))
        _discount("sac.gamma", self.gamma)
        _rate("sac.tau", self.tau)
        _check_hidden("sac.hidden", self.hidden)
        if self.start_steps < self.batch_size:
            raise ConfigError("sac.start_steps must be at least sac.batch_size so the first batch can be drawn")
        if self.grad_clip < 0:
            raise ConfigError("grad_clip values must be >= 0 (0 disables clipping)")


@dataclass
class ConstraintConfig:
    """The constraint signal F(s, a) and the state-wise constraint F(s, π(s)) <= d (docs/algorithm.md §2).

    ``cvf``: F = Q^c, the discounted sum of future (binary) costs, gamma_c-discounted. With binary costs and
    gamma_c = 0.99 the value lies in [0, 100]; threshold 0.1 asks for (roughly) no predicted violation in the near
    future. ``cdf`` (constraint decay, in [0, 1]), ``hjr`` (reachability value of the signed constraint h) and
    ``cbf`` (barrier residual of h) are the alternatives; see statewise.method.signals.
    """

    # constraint signal F: cvf (cost value) | cdf (constraint decay) | hjr (reachability) | cbf (barrier residual)
    signal: str = "cvf"
    # Several state-wise constraints at once: the names of the per-step costs, each its own constraint with its own
    # cost critics, threshold and multiplier (docs/algorithm.md §2c). A name is a key of the environment's
    # info["costs"] mapping or, without one, of info itself (Safety-Gymnasium's cost_hazards, cost_vases_contact).
    # Empty: one constraint on info["cost"].
    costs: list[str] = field(default_factory=list)
    # d: the constraint is F(s, π(s)) ≤ d in every state; auto = 0.1 for cvf and cdf, 0 for hjr and cbf; with
    # several costs, one number for all or a list with one per cost
    threshold: float | str | list[float] = "auto"
    gamma_c: float = 0.99  # discount γ_c of the signal (cvf, cdf, hjr)
    cbf_k: float | str = "auto"  # cbf only: the barrier condition is h(s') − (1 − k) h(s) ≤ d; auto = 1 − γ_c (RCRL)
    binary_cost: bool = True  # cvf: train on c = 1[c_env > 0] (cdf always does)
    # How the twin cost critics combine: into the risk estimate Q^c(s, a) that forms g, and at (s', a') inside the
    # Bellman target. mean (default) or max (pessimistic). A max inside the bootstrap compounds the twins'
    # disagreement into a positive bias of about 0.56 σ / (1 − γ_c): on the double integrator, Q^c ≈ 0.65 on states
    # whose true value is 0, which kept every network λ rising (docs/algorithm.md §2;
    # docs/results/double_integrator_bias/report.md).
    twin_aggregate: str = "mean"
    twin_target: str = "mean"  # twins combined at (s', a') in the Bellman target: mean | max
    # Polyak rate of the cost critics' targets (the reward critics use sac.tau). A bootstrapped error decays at about
    # τ (1 − γ_c) per step; 0.05 lets the cost critic forget the violations of an earlier, riskier policy in ~700
    # steps instead of ~7,000 at 0.005.
    tau: float = 0.05

    def resolve(self) -> None:
        """Replace ``auto`` in threshold and cbf_k by the signal's defaults."""
        if self.threshold == "auto":
            self.threshold = 0.1 if self.signal in ("cvf", "cdf") else 0.0
        if self.cbf_k == "auto":
            self.cbf_k = round(1.0 - self.gamma_c, 12)

    def check(self) -> None:
        """Check the resolved section: the signal, its discount and rates, and a threshold that fits the signal."""
        _choice("constraint.signal", self.signal, SIGNALS)
        _choice("constraint.twin_aggregate", self.twin_aggregate, ("max", "mean"))
        _choice("constraint.twin_target", self.twin_target, ("max", "mean"))
        _discount("constraint.gamma_c", self.gamma_c)
        _rate("constraint.tau", self.tau)
        for name in ("threshold", "cbf_k"):
            if isinstance(getattr(self, name), (str, bool)):
                raise ConfigError(f"constraint.{name} must be a number or 'auto', got '{getattr(self, name)}'")
        if not 0.0 < self.cbf_k <= 1.0:
            raise ConfigError(f"constraint.cbf_k must be in (0, 1], got {self.cbf_k}")
        self._check_costs()
        for d in self.thresholds:
            self._check_threshold(d)
        if self.signal == "cdf" and not self.binary_cost:
            raise ConfigError("constraint.signal cdf needs binary costs (constraint.binary_cost=true)")

    @property
    def thresholds(self) -> list[float]:
        """d_k of each constraint (one entry without ``costs``); call on a resolved section."""
        count = max(len(self.costs), 1)
        return [float(d) for d in self.threshold] if isinstance(self.threshold, list) else [self.threshold] * count

    def _check_costs(self) -> None:
        """Named costs: distinct non-empty names, a threshold list of the same length, a signal of the cost."""
        if any(not isinstance(n, str) or not n.strip() for n in self.costs) or len(set(self.costs)) != len(
                self.costs):
            raise ConfigError(f"constraint.costs must be distinct non-empty names, got {self.costs}")
        if isinstance(self.threshold, list) and len(self.threshold) != max(len(self.costs), 1):
            raise ConfigError(f"constraint.threshold lists {len(self.threshold)} values but constraint.costs names "
                              f"{len(self.costs)} cost(s); give one threshold per cost, or one number for all")
        if self.costs and self.signal in ("hjr", "cbf"):
            raise ConfigError(f"constraint.signal {self.signal} reads one signed constraint h(s) from the "
                              "environment; with several constraint.costs use cvf or cdf")

    def _check_threshold(self, d: float) -> None:
        if self.signal == "cvf" and not 0.0 < d < 1.0 / (1.0 - self.gamma_c):
            raise ConfigError(
                f"constraint.threshold must be in (0, 1/(1-gamma_c)) = (0, {1.0 / (1.0 - self.gamma_c):g}) "
                f"for the cost value signal, got {d}")
        if self.signal == "cdf" and not 0.0 < d < 1.0:
            raise ConfigError(f"constraint.threshold must be in (0, 1) for the constraint decay signal (cdf), "
                              f"got {d}")


@dataclass
class MultiplierConfig:
    """How λ is represented and trained (docs/algorithm.md §5, §6). ``auto`` = the algorithm's preset."""

    kind: str = "auto"  # none | scalar | pid | network
    update: str = "auto"  # dual-ascent | regression | pid
    penalty: str = "auto"  # lagrangian | augmented
    normalize_actor: bool | str = "auto"  # divide the actor loss by 1 + λ_eff (SAC-Lag convention)
    rho: float = 1.0  # augmented-Lagrangian penalty coefficient ρ
    rho_lambda: float | str = "auto"  # dual step ρ_λ of the regression target; auto = ρ
    lam_max: float = 100.0  # λ is clipped to [0, λ_max] where it is used
    lam_init: float = 0.1  # initial λ (scalar value, or softplus output of the network)
    # Adam lr; auto = 3e-4 for a scalar λ and for regression to the dual target, 3e-5 for dual ascent on a λ network
    # (whose step is the dual step: larger ones wind the network up; docs/algorithm.md §5,
    # docs/results/double_integrator_dual_step/report.md)
    lr: float | str = "auto"
    period: int = 10  # m_λ: gradient steps between multiplier updates
    # K_λ: optimiser steps per multiplier update; auto = 10 for regression (fit the dual target, like a critic fits
    # its Bellman target), 1 for dual ascent and PID
    steps: int | str = "auto"
    target_tau: float = 1.0  # λ_prev <- (1-τ) λ_prev + τ λ after each update; 1 = hard copy
    # space of the regression loss (update=regression): log = (log(1+λ) − log(1+λ̂))², linear = (λ − λ̂)². Same
    # fixed point λ = λ̂; in linear space the fit is dominated by the states whose target is near λ_max and leaves
    # errors of several units where the target is ~0 (λ AUROC on the double integrator 0.93 linear, 0.97-0.99 log on
    # tuning seeds; docs/algorithm.md §5)
    fit_space: str = "log"
    # action at which the multiplier's residual g(s, a) = Q^c(s, a) − d is taken: sample = ã ~ π(·|s) (FAC, the
    # paper), mean = the deterministic action tanh(μ(s)) that is evaluated and deployed (no better on the double
    # integrator's slack states: docs/algorithm.md §5)
    residual_action: str = "sample"
    # network λ: fit each round on its replay states plus Gaussian noise of this many per-dimension standard
    # deviations of the round's states (0 = on the replay states themselves). Tried against λ extrapolated onto
    # slack states off the policy's path: it helped on tuning seeds and not on report seeds (docs/algorithm.md §5),
    # so it is off
    state_noise: float = 0.0
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # hidden layer widths of the λ network
    activation: str = "auto"  # hidden activation of the λ network: relu | elu | tanh; auto = sac.activation
    grad_clip: float = 3.0  # FAC: lam_gradient_clip_norm = 3; 0 disables
    # dual ascent on a network: drop the ascent term where λ_ξ(s) is already at λ_max and g > 0 (projected
    # dual ascent). Off = FAC as published: the raw output can wind up far above the cap (docs/algorithm.md §5;
    # docs/results/double_integrator_dual_step/report.md).
    anti_windup: bool = False
    # PID-Lagrangian gains (kind=pid). K_I is the integral (dual-ascent) step on the batch-mean residual;
    # K_P = 100 K_I is the middle of a K_P/K_I ∈ {10, 100, 1000} sweep (untuned).
    pid_kp: float = 1e-2  # K_P, proportional gain
    pid_ki: float = 1e-4  # K_I, integral gain
    pid_kd: float = 0.0  # K_D, derivative gain
    pid_ema_p: float = 0.95  # smoothing of the residual in the proportional term
    pid_ema_d: float = 0.95  # smoothing of the residual in the derivative term
    pid_d_delay: int = 10  # the derivative compares with the smoothed residual this many updates ago

    def resolve(self, preset: Preset, sac_activation: str) -> None:
        """Replace ``auto`` by the algorithm's preset and the defaults that follow from it (docs/algorithm.md §5)."""
        self.kind = preset.kind if self.kind == "auto" else self.kind
        self.update = preset.update if self.update == "auto" else self.update
        self.penalty = preset.penalty if self.penalty == "auto" else self.penalty
        self.normalize_actor = preset.normalize_actor if self.normalize_actor == "auto" else self.normalize_actor
        self.rho_lambda = self.rho if self.rho_lambda == "auto" else self.rho_lambda
        self.activation = sac_activation if self.activation == "auto" else self.activation
        if self.lr == "auto":  # (unused by pid)
            self.lr = NETWORK_LR if (self.kind, self.update) == ("network", "dual-ascent") else SCALAR_LR
        if self.steps == "auto":
            self.steps = REGRESSION_STEPS if self.update == "regression" else 1
        if self.kind == "none":  # no multiplier: no update rule, no penalty, nothing to normalise by
            self.update, self.penalty, self.normalize_actor = "none", "none", False

    def check(self, algo: str) -> None:
        """Check the resolved section: choices that fit together and fit ``algo``, then every value's range."""
        for name in ("lr", "rho_lambda", "steps"):
            if isinstance(getattr(self, name), str):
                raise ConfigError(f"multiplier.{name} must be a number or 'auto', got '{getattr(self, name)}'")
        self._check_choices(algo)
        self._check_values()

    def _check_choices(self, algo: str) -> None:
        _choice("multiplier.kind", self.kind, MULTIPLIER_KINDS)
        if self.kind == "none":
            if algo != "sac":
                raise ConfigError(f"algorithm '{algo}' needs a multiplier; multiplier.kind=none is only for sac")
        else:
            if algo == "sac":
                raise ConfigError("algorithm 'sac' is unconstrained; use sac-lag, fac or sac-alam for a multiplier")
            _choice("multiplier.update", self.update, UPDATE_RULES)
            _choice("multiplier.penalty", self.penalty, PENALTIES)
            if self.kind == "scalar" and self.update == "regression":
                raise ConfigError("multiplier.update=regression needs multiplier.kind=network")
            if (self.kind == "pid") != (self.update == "pid"):
                raise ConfigError("multiplier.kind=pid goes with multiplier.update=pid (and only with it)")
        if self.state_noise < 0:
            raise ConfigError(f"multiplier.state_noise must be >= 0, got {self.state_noise}")
        if self.state_noise > 0 and self.kind != "network":
            raise ConfigError(f"multiplier.state_noise jitters the states a λ network is fit on; a {self.kind} "
                              f"multiplier has no state input (set it to 0)")
        _choice("multiplier.fit_space", self.fit_space, ("linear", "log"))
        _choice("multiplier.residual_action", self.residual_action, ("sample", "mean"))
        _choice("multiplier.activation", self.activation, ACTIVATIONS)

    def _check_values(self) -> None:
        for name in ("period", "steps", "pid_d_delay", "lr", "rho", "rho_lambda", "lam_max"):
            _positive(f"multiplier.{name}", getattr(self, name))
        for name in ("pid_kp", "pid_ki", "pid_kd"):
            if getattr(self, name) < 0:
                raise ConfigError(f"multiplier.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("pid_ema_p", "pid_ema_d"):
            _discount(f"multiplier.{name}", getattr(self, name))
        _rate("multiplier.target_tau", self.target_tau)
        if not isinstance(self.normalize_actor, bool):
            raise ConfigError(f"multiplier.normalize_actor must be true, false or auto, got '{self.normalize_actor}'")
        _check_hidden("multiplier.hidden", self.hidden)
        _at_most("multiplier.pid_d_delay", self.pid_d_delay, 100_000)
        _at_most("multiplier.steps", self.steps, 10_000)
        if self.grad_clip < 0:
            raise ConfigError("grad_clip values must be >= 0 (0 disables clipping)")
        if not 0.0 < self.lam_init < self.lam_max:
            raise ConfigError(f"multiplier.lam_init must be in (0, lam_max={self.lam_max}), got {self.lam_init}")


@dataclass
class PerturbationConfig:
    """Extra cost in one small region of the state space for a window of training: the perturbation test of how far
    a change of λ at some states spreads to others (docs/algorithm.md §7). Off while ``steps`` is 0. Only the
    training environments are perturbed; evaluation sees the task as it is."""

    center: list[float] = field(default_factory=list)  # observation at the centre of the region
    radius: float = 0.25  # the region is ‖s − center‖₂ < radius, in observation units
    start: int = 0  # the window starts after this many training steps (transitions per member)
    steps: int = 0  # length of the window in training steps; 0 = off
    cost: float = 1.0  # cost added to each transition that leaves a state inside the region during the window

    def check(self) -> None:
        if self.steps == 0:
            return
        if not self.center:
            raise ConfigError("perturbation.steps > 0 needs perturbation.center (an observation, e.g. [0.0, 0.0])")
        for name in ("radius", "cost", "steps"):
            _positive(f"perturbation.{name}", getattr(self, name))
        if self.start < 0:
            raise ConfigError(f"perturbation.start must be >= 0, got {self.start}")
        if not all(math.isfinite(c) for c in self.center):
            raise ConfigError(f"perturbation.center must be finite numbers, got {self.center}")


@dataclass
class Config:
    algo: str = "sac-alam"  # algorithm preset (statewise config and train --help list them); sets the `auto` keys below
    label: str = ""  # name of this variant in plots and reports (e.g. fac-lr3e-4); empty = the algorithm
    env: str = "statewise/DoubleIntegrator-v0"  # environment id (statewise train --help lists the kinds)
    seed: int = 0  # seeds networks, replay sampling, environments and evaluation starts
    steps: int = 100_000  # environment steps (transitions collected over all environments)
    max_episode_steps: int = 0  # 0: the environment's registered time limit
    num_envs: int = 1  # environments collecting at once (statewise.run.collect)
    vector_mode: str = "auto"  # single | sync | async; auto = single for one env, sync for several
    device: str = "cpu"  # cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    run_dir: str = ""  # empty: runs/<env>/<algo>-s<seed>-<time>
    eval_every: int = 5_000  # env steps between evaluations (deterministic policy, eval.csv)
    eval_episodes: int = 10  # episodes per evaluation
    final_eval_episodes: int = 50  # episodes of the final evaluation (summary.json)
    log_every: int = 1_000  # env steps between rows of metrics.csv and TensorBoard
    # checkpoint.pt and resume.pt (statewise train --resume) every this many env steps and at least every
    # checkpoint_minutes of wall time; 0 turns either bound off (both 0: a checkpoint at the end only, no resume)
    checkpoint_every: int = 10_000
    checkpoint_minutes: float = 10.0  # the wall-time bound of the line above, in minutes
    probe_size: int = 1_024  # distinct states drawn from the buffer at start_steps (at most start_steps of them)
    # at every evaluation, the critics against Monte-Carlo truth on replay and exactly feasible states
    # (value_bias.csv; statewise.run.value_bias). Needs a task with batched dynamics (the double integrator).
    value_bias: bool = False
    # torch.compile the update: true, false, or auto = on a GPU, and on a CPU with a C++ compiler when the run has
    # at least 10k updates (compiling takes 15-80 s; statewise.method.sac.compile_decision)
    compile: bool | str = "auto"
    progress: bool = True  # progress bar on stderr
    sac: SACConfig = field(default_factory=SACConfig)
    constraint: ConstraintConfig = field(default_factory=ConstraintConfig)
    multiplier: MultiplierConfig = field(default_factory=MultiplierConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)

    # ------------------------------------------------------------------ helpers
    @property
    def constrained(self) -> bool:
        return self.multiplier.kind != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        for key, value in flatten(data).items():
            cfg.set(key, value)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text()
            _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
            data = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        try:
            return cls.from_dict(data)
        except RecursionError:  # an anchor that refers to itself (a: &a {b: *a})
            raise ConfigError(f"config file {path} refers to itself (a recursive YAML anchor)") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key (``sac.batch_size``) from a Python value or a YAML string."""
        *path, name = key.split(".")
        node: Any = self
        for part in path:
            child = getattr(node, part, None) if part in _field_names(node) else None
            if not dataclasses.is_dataclass(child):
                raise ConfigError(f"unknown config key '{key}'{_suggest(key, self)}")
            node = child
        if name not in _field_names(node) or dataclasses.is_dataclass(getattr(node, name)):
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, self)}")
        hint = get_type_hints(type(node))[name]
        setattr(node, name, _coerce(key, value, hint))

    def apply_overrides(self, items: list[str]) -> None:
        """Apply ``key=value`` strings (values parsed as YAML: 3e-4, [64,64], true)."""
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got '{item}'")
            key, raw = item.split("=", 1)
            self.set(key.strip(), raw.strip())

    # --------------------------------------------------------------- validation
    def resolve(self) -> Config:
        """Replace every ``auto`` the config decides by itself: the algorithm's preset and what follows from it, the
        signal's threshold, the label and the vector mode; returns self. ``sac.target_entropy`` and ``compile`` stay
        ``auto`` (they need the environment and the hardware). Raises ConfigError for an unknown algorithm."""
        preset = ALGORITHMS.get(self.algo)
        if preset is None:
            raise ConfigError(f"unknown algorithm '{self.algo}'; choose from {', '.join(ALGORITHMS)}")
        self.label = self.label or self.algo
        self.multiplier.resolve(preset, self.sac.activation)
        self.constraint.resolve()
        if self.vector_mode == "auto":
            self.vector_mode = "single" if self.num_envs == 1 else "sync"
        return self

    def validate(self) -> Config:
        """Resolve ``auto`` and check every value; returns self. Raises ConfigError (one line)."""
        self.resolve()
        self._check_run()
        _check_numbers(self)
        self.multiplier.check(self.algo)
        self.constraint.check()
        if self.constraint.costs and self.value_bias:
            raise ConfigError("value_bias checks one cost critic; it is not available with several constraint.costs")
        self.sac.check()
        self.perturbation.check()
        if self.sac.buffer_size < max(self.sac.start_steps, self.num_envs):
            raise ConfigError("sac.buffer_size must be at least sac.start_steps and num_envs")
        return self

    def _check_run(self) -> None:
        """Check the top-level run settings: label, counts, intervals, seed, device and vector mode."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.label):
            raise ConfigError(f"label must be letters, digits and . _ + - (it names run directories), "
                              f"got '{self.label}'")
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"compile must be true, false or auto, got '{self.compile}'")
        _choice("device", self.device, DEVICES)
        for name in ("steps", "num_envs", "eval_every", "eval_episodes", "final_eval_episodes", "log_every",
                     "probe_size"):
            _positive(name, getattr(self, name))
        _choice("vector_mode", self.vector_mode, VECTOR_MODES)
        if self.vector_mode == "single" and self.num_envs != 1:
            raise ConfigError(f"vector_mode single steps one environment; num_envs={self.num_envs} needs sync or async")
        if (self.sac.start_steps < 0 or self.checkpoint_every < 0 or self.checkpoint_minutes < 0 or self.threads < 0
                or self.max_episode_steps < 0):
            raise ConfigError("sac.start_steps, checkpoint_every, checkpoint_minutes, threads and max_episode_steps "
                              "must be >= 0")
        if not 0 <= self.seed < 2**32 - 2**21:  # numpy seeds must fit 32 bits (evaluation adds offsets)
            raise ConfigError(f"seed must be in [0, 2**32 - 2**21), got {self.seed}")
        for name, top in (("threads", 1024), ("num_envs", 1024), ("probe_size", 1_000_000)):
            _at_most(name, getattr(self, name), top)


# ---------------------------------------------------------------------- helpers
def _field_names(obj: Any) -> set[str]:
    return {f.name for f in fields(obj)}


def _all_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += _all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _suggest(key: str, cfg: Config) -> str:
    close = difflib.get_close_matches(key, _all_keys(cfg), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def reference() -> list[tuple[str, str, str, str]]:
    """Every config key as (key, type, default, meaning), read from the dataclasses above and their comments (the
    comment on a field's line and the comment lines just above it), so the list cannot drift from the code."""
    import inspect

    rows = []

    def walk(cls: type, instance: Any, prefix: str) -> None:
        docs = _field_comments(inspect.getsource(cls))
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = getattr(instance, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), value, f"{prefix}{f.name}.")
                continue
            kind = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            rows.append((prefix + f.name, kind, yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(
                "\n...").removesuffix(" ..."), docs.get(f.name, "")))

    walk(Config, Config(), "")
    return rows


def reference_markdown() -> str:
    """:func:`reference` as Markdown: one table per config section (top level, ``sac``, ``constraint``, …), the
    configuration reference of the documentation site (docs/_hooks.py inserts it, so it is built from the code)."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in reference():
        sections.setdefault(row[0].split(".")[0] if "." in row[0] else "", []).append(row)
    parts = []
    for section, rows in sections.items():
        parts.append(f"### `{section}`" if section else "### Top level")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        parts.extend(f"| `{key}` | {_cell(kind)} | `{default}` | {_cell(meaning)} |"
                     for key, kind, default, meaning in rows)
        parts.append("")
    return "\n".join(parts)


def _cell(text: str) -> str:
    """Text for one Markdown table cell: a literal ``|`` would end the cell (``bool | str`` reads ``bool or str``)."""
    return text.replace(" | ", " or ").replace("|", "\\|")


def _field_comments(source: str) -> dict[str, str]:
    import re

    docs: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"    (\w+): [^=]+=(.*)$", line)
        if match:
            trailing = match.group(2).split("  # ", 1)[1].strip() if "  # " in match.group(2) else ""
            docs[match.group(1)] = " ".join([*above, trailing]).strip()
        above = []
    return docs


def _refuse_duplicate_keys(root: yaml.Node | None, path: Path) -> None:
    """A key given twice in one mapping of a YAML file is a ConfigError (YAML would keep the last value silently);
    the message names the key (dotted) and its lines. Merge keys (``<<: *base``) may be overridden, as YAML means."""
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, prefix: str) -> None:
        if id(node) in seen_nodes:  # an alias (anchors may even refer to themselves)
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, prefix)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                    continue
                name = (key.tag, key.value)
                line = key.start_mark.line + 1
                if name in lines:
                    raise ConfigError(f"config file {path} gives key '{prefix}{key.value}' twice (lines {lines[name]} "
                                      f"and {line}); YAML would keep only the last value, so say it once")
                lines[name] = line
                walk(value, f"{prefix}{key.value}.")

    if root is not None:
        walk(root, "")


def min_training_steps(cfg: Config) -> int:
    """The smallest ``steps`` whose run makes a gradient update: the trainer collects num_envs transitions per step
    until it has ``steps``, and updates once it has more than ``sac.start_steps`` (then sac.update_ratio per
    transition)."""
    s, n = cfg.sac, cfg.num_envs
    first = s.start_steps + max(1, math.ceil((1.0 - 1e-9) / s.update_ratio))  # the first member step with an update
    return n * (math.ceil(first / n) - 1) + 1


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + str(key)] = value
    return out


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Turn ``value`` (possibly a YAML string from the command line) into the field's type."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        value = value if parsed is None else parsed
    options = hint.__args__ if hasattr(hint, "__args__") and type(hint).__name__ == "UnionType" else (hint,)
    for opt in options:
        origin = getattr(opt, "__origin__", opt)
        if origin in (int, float) and isinstance(value, str):
            try:  # YAML 1.1 reads '3e-5' or '2e4' (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is int and isinstance(value, float) and value.is_integer() and not math.isinf(value):
            return int(value)
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(float(value)):
                raise ConfigError(f"config key '{key}' must not be NaN")
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, (list, tuple)):
            item = getattr(opt, "__args__", (int,))[0]
            if item is str and all(isinstance(v, str) for v in value):
                return list(value)
            numbers = (int, float) if item is float else (int,)
            if all(isinstance(v, numbers) and not isinstance(v, bool) for v in value):
                return [item(v) for v in value]
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"config key '{key}' expects {wanted}, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} '{value}'; choose from {', '.join(choices)}")


# Largest value each hyper-parameter may take: far beyond any sensible setting, small enough that it cannot overflow
# float32 arithmetic in the update (a learning rate of 1e308 would turn every parameter into inf at the first step).
_CEILINGS = {
    "sac.lr_actor": 1.0, "sac.lr_critic": 1.0, "sac.lr_alpha": 1.0, "multiplier.lr": 1.0,
    "sac.alpha_init": 1e4, "sac.reward_scale": 1e6, "sac.update_ratio": 1e3, "sac.grad_clip": 1e9,
    "multiplier.rho": 1e6, "multiplier.rho_lambda": 1e6, "multiplier.lam_max": 1e6, "multiplier.grad_clip": 1e9,
    "multiplier.pid_kp": 1e6, "multiplier.pid_ki": 1e6, "multiplier.pid_kd": 1e6, "sac.target_entropy": 1e6,
    "multiplier.state_noise": 1e3, "perturbation.cost": 1e6, "perturbation.radius": 1e6,
}


def _check_numbers(cfg: Config) -> None:
    """Every number in the config is finite, and none is beyond its ceiling (absurd values are refused, not run)."""
    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value, name = getattr(node, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, name + ".")
            elif isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
            elif isinstance(value, list) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
                raise ConfigError(f"{name} must hold finite numbers, got {value}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                top = _CEILINGS.get(name)
                if top is not None and abs(value) > top:
                    raise ConfigError(f"{name} = {value:g} is beyond the supported maximum {top:g} (in absolute value)")

    walk(cfg, "")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def _discount(name: str, value: float) -> None:
    """Discounts and smoothing factors: in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


def _rate(name: str, value: float) -> None:
    """Polyak rates: in (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value}")


def _at_most(name: str, value: int, top: int) -> None:
    if value > top:
        raise ConfigError(f"{name} = {value} is beyond the supported maximum {top}")


def _check_hidden(name: str, hidden: list[int]) -> None:
    """A non-empty list of positive layer widths, none beyond the supported maximum."""
    if not hidden or any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in hidden):
        raise ConfigError(f"{name} must be a non-empty list of positive layer widths, got {hidden}")
    _at_most(name, max(hidden), 65_536)
