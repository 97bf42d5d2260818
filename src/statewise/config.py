"""One typed configuration, validated once and saved verbatim into every run directory.

A run is fully described by :class:`Config`. Sources are applied in one documented order:
dataclass defaults < ``--config file.yaml`` < explicit CLI flags (``--algo``, ``--env`` ...) <
``--set key=value``. After :meth:`Config.validate` every ``"auto"`` value is resolved, so the
``config.yaml`` in the run directory says exactly which values ran.

Algorithms are presets of the multiplier block (docs/algorithm.md §6):

============  ==========  =============  ==========  =================================
algo          multiplier  update         penalty     notes
============  ==========  =============  ==========  =================================
sac           none        -              -           unconstrained
sac-lag       scalar      dual-ascent    lagrangian  actor loss normalised by 1+λ
sac-pid-lag   pid         pid            lagrangian  PID-controlled scalar λ, normalised
sac-al        scalar      dual-ascent    augmented   scalar augmented Lagrangian
fac           network     dual-ascent    lagrangian  Feasible Actor-Critic
sac-alam      network     regression     augmented   SAC-ALaM
alam-no-qp    network     regression     lagrangian  ablation: no quadratic penalty
alam-no-dt    network     dual-ascent    augmented   ablation: no dual-target regression
============  ==========  =============  ==========  =================================

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

# algo -> (multiplier kind, update rule, penalty, normalise actor loss by 1 + λ)
ALGORITHMS: dict[str, tuple[str, str, str, bool]] = {
    "sac": ("none", "none", "none", False),
    "sac-lag": ("scalar", "dual-ascent", "lagrangian", True),
    "sac-pid-lag": ("pid", "pid", "lagrangian", True),
    "sac-al": ("scalar", "dual-ascent", "augmented", False),
    "fac": ("network", "dual-ascent", "lagrangian", False),
    "sac-alam": ("network", "regression", "augmented", False),
    "alam-no-qp": ("network", "regression", "lagrangian", False),
    "alam-no-dt": ("network", "dual-ascent", "augmented", False),
}


def variant_order(algo: str, label: str) -> tuple[int, bool, str]:
    """Sort key for report columns and figure rows: presets in ALGORITHMS order, each before its variants."""
    return list(ALGORITHMS).index(algo), label != algo, label


# Default multiplier learning rates. Adam moves each parameter by about lr per step whatever the gradient's scale, so
# for dual ascent the lr is the dual step: on a λ network, 1e-3 wound it up to the cap in every state (README, "Same
# dual step") and 3e-5 did not. Regression to the dual target fits a clipped target, as a critic fits its Bellman
# target, so it takes a critic's lr and K_λ = 10 steps per update (README, "Why λ kept rising").
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


@dataclass
class ConstraintConfig:
    """The constraint signal F(s, a) and the state-wise constraint F(s, π(s)) <= d (docs/algorithm.md §2).

    ``cvf``: F = Q^c, the discounted sum of future (binary) costs, gamma_c-discounted. With binary costs and
    gamma_c = 0.99 the value lies in [0, 100]; threshold 0.1 asks for (roughly) no predicted violation in the near
    future. ``cdf`` (constraint decay, in [0, 1]), ``hjr`` (reachability value of the signed constraint h) and
    ``cbf`` (barrier residual of h) are the alternatives; see statewise.method.signals.
    """

    signal: str = "cvf"  # constraint signal F: cvf (cost value) | cdf (constraint decay) | hjr (reachability) | cbf (barrier residual)
    threshold: float | str = "auto"  # d: the constraint is F(s, π(s)) ≤ d in every state; auto = 0.1 for cvf and cdf, 0 for hjr and cbf
    gamma_c: float = 0.99  # discount γ_c of the signal (cvf, cdf, hjr)
    cbf_k: float | str = "auto"  # cbf only: the barrier condition is h(s') − (1 − k) h(s) ≤ d; auto = 1 − γ_c (RCRL)
    binary_cost: bool = True  # cvf: train on c = 1[c_env > 0] (cdf always does)
    # How the twin cost critics combine: into the risk estimate Q^c(s, a) that forms g, and at (s', a') inside the
    # Bellman target. mean (default) or max (pessimistic). A max inside the bootstrap compounds the twins'
    # disagreement into a positive bias of about 0.56 σ / (1 − γ_c): on the double integrator, Q^c ≈ 0.65 on states
    # whose true value is 0, which kept every network λ rising (README, "Why λ kept rising").
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
    # (whose step is the dual step: larger ones wind the network up, README "Same dual step")
    lr: float | str = "auto"
    period: int = 10  # m_λ: gradient steps between multiplier updates
    # K_λ: optimiser steps per multiplier update; auto = 10 for regression (fit the dual target, like a critic fits
    # its Bellman target), 1 for dual ascent and PID
    steps: int | str = "auto"
    target_tau: float = 1.0  # λ_prev <- (1-τ) λ_prev + τ λ after each update; 1 = hard copy
    # space of the regression loss (update=regression): log = (log(1+λ) − log(1+λ̂))², linear = (λ − λ̂)². Same
    # fixed point λ = λ̂; in linear space the fit is dominated by the states whose target is near λ_max and leaves
    # errors of several units where the target is ~0 (λ AUROC on the double integrator 0.93 linear, 0.97-0.99 log on
    # tuning seeds; README, "λ on slack states")
    fit_space: str = "log"
    # action at which the multiplier's residual g(s, a) = Q^c(s, a) − d is taken: sample = ã ~ π(·|s) (FAC, the
    # paper), mean = the deterministic action tanh(μ(s)) that is evaluated and deployed (no better on the double
    # integrator's slack states: README, "Where λ is still wrong")
    residual_action: str = "sample"
    # network λ: fit each round on its replay states plus Gaussian noise of this many per-dimension standard
    # deviations of the round's states (0 = on the replay states themselves). Tried against λ extrapolated onto
    # slack states off the policy's path: it helped on tuning seeds and not on report seeds (README, "Where λ is
    # still wrong"), so it is off
    state_noise: float = 0.0
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # hidden layer widths of the λ network
    activation: str = "auto"  # hidden activation of the λ network: relu | elu | tanh; auto = sac.activation
    grad_clip: float = 3.0  # FAC: lam_gradient_clip_norm = 3; 0 disables
    # dual ascent on a network: drop the ascent term where λ_ξ(s) is already at λ_max and g > 0 (projected
    # dual ascent). Off = FAC as published: the raw output can wind up far above the cap (README, "Findings").
    anti_windup: bool = False
    # PID-Lagrangian gains (kind=pid). K_I is the integral (dual-ascent) step on the batch-mean residual;
    # K_P = 100 K_I is the middle of a K_P/K_I ∈ {10, 100, 1000} sweep (untuned).
    pid_kp: float = 1e-2  # K_P, proportional gain
    pid_ki: float = 1e-4  # K_I, integral gain
    pid_kd: float = 0.0  # K_D, derivative gain
    pid_ema_p: float = 0.95  # smoothing of the residual in the proportional term
    pid_ema_d: float = 0.95  # smoothing of the residual in the derivative term
    pid_d_delay: int = 10  # the derivative compares with the smoothed residual this many updates ago


@dataclass
class Config:
    algo: str = "sac-alam"  # algorithm preset (statewise train --help lists them); sets the `auto` keys below
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

    # ------------------------------------------------------------------ helpers
    @property
    def constrained(self) -> bool:
        return self.multiplier.kind != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        cfg = cls()
        for key, value in _flatten(data).items():
            cfg.set(key, value)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
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
    def _check_constraint(self) -> None:
        """Resolve and check the signal's threshold (and cbf's k) for the chosen signal."""
        c = self.constraint
        c.resolve()
        for name in ("threshold", "cbf_k"):
            if isinstance(getattr(c, name), (str, bool)):
                raise ConfigError(f"constraint.{name} must be a number or 'auto', got '{getattr(c, name)}'")
        if not 0.0 < c.cbf_k <= 1.0:
            raise ConfigError(f"constraint.cbf_k must be in (0, 1], got {c.cbf_k}")
        if c.signal == "cvf" and not 0.0 < c.threshold < 1.0 / (1.0 - c.gamma_c):
            raise ConfigError(
                f"constraint.threshold must be in (0, 1/(1-gamma_c)) = (0, {1.0 / (1.0 - c.gamma_c):g}) "
                f"for the cost value signal, got {c.threshold}")
        if c.signal == "cdf" and not 0.0 < c.threshold < 1.0:
            raise ConfigError(f"constraint.threshold must be in (0, 1) for the constraint decay signal (cdf), "
                              f"got {c.threshold}")
        if c.signal == "cdf" and not c.binary_cost:
            raise ConfigError("constraint.signal cdf needs binary costs (constraint.binary_cost=true)")

    def validate(self) -> "Config":
        """Check every value and resolve ``auto``; returns self. Raises ConfigError (one line)."""
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm '{self.algo}'; choose from {', '.join(ALGORITHMS)}")
        kind, update, penalty, normalize = ALGORITHMS[self.algo]
        self.label = self.label or self.algo
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.label):
            raise ConfigError(f"label must be letters, digits and . _ + - (it names run directories), "
                              f"got '{self.label}'")
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"compile must be true, false or auto, got '{self.compile}'")
        m = self.multiplier
        m.kind = kind if m.kind == "auto" else m.kind
        m.update = update if m.update == "auto" else m.update
        m.penalty = penalty if m.penalty == "auto" else m.penalty
        m.normalize_actor = normalize if m.normalize_actor == "auto" else m.normalize_actor
        m.rho_lambda = m.rho if m.rho_lambda == "auto" else m.rho_lambda
        m.activation = self.sac.activation if m.activation == "auto" else m.activation
        if m.lr == "auto":
            m.lr = NETWORK_LR if (m.kind, m.update) == ("network", "dual-ascent") else SCALAR_LR  # (unused by pid)
        if m.steps == "auto":
            m.steps = REGRESSION_STEPS if m.update == "regression" else 1
        for name in ("sac.target_entropy", "multiplier.lr", "multiplier.rho_lambda", "multiplier.steps"):
            if isinstance(self._get(name), str) and self._get(name) != "auto":
                raise ConfigError(f"{name} must be a number or 'auto', got '{self._get(name)}'")
        if self.sac.target_entropy != "auto" and not isinstance(self.sac.target_entropy, (int, float)):
            raise ConfigError("sac.target_entropy must be a number or 'auto'")

        _check_numbers(self)

        _choice("multiplier.kind", m.kind, MULTIPLIER_KINDS)
        if m.kind == "none":
            if self.algo != "sac":
                raise ConfigError(f"algorithm '{self.algo}' needs a multiplier; multiplier.kind=none is only for sac")
            m.update, m.penalty, m.normalize_actor = "none", "none", False
        else:
            if self.algo == "sac":
                raise ConfigError("algorithm 'sac' is unconstrained; use sac-lag, fac or sac-alam for a multiplier")
            _choice("multiplier.update", m.update, UPDATE_RULES)
            _choice("multiplier.penalty", m.penalty, PENALTIES)
            if m.kind == "scalar" and m.update == "regression":
                raise ConfigError("multiplier.update=regression needs multiplier.kind=network")
            if (m.kind == "pid") != (m.update == "pid"):
                raise ConfigError("multiplier.kind=pid goes with multiplier.update=pid (and only with it)")
        if m.state_noise < 0:
            raise ConfigError(f"multiplier.state_noise must be >= 0, got {m.state_noise}")
        if m.state_noise > 0 and m.kind != "network":
            raise ConfigError(f"multiplier.state_noise jitters the states a λ network is fit on; a {m.kind} "
                              f"multiplier has no state input (set it to 0)")
        _choice("constraint.signal", self.constraint.signal, SIGNALS)
        _choice("constraint.twin_aggregate", self.constraint.twin_aggregate, ("max", "mean"))
        _choice("constraint.twin_target", self.constraint.twin_target, ("max", "mean"))
        _choice("multiplier.fit_space", m.fit_space, ("linear", "log"))
        _choice("multiplier.residual_action", m.residual_action, ("sample", "mean"))
        _choice("sac.activation", self.sac.activation, ACTIVATIONS)
        _choice("multiplier.activation", m.activation, ACTIVATIONS)
        _choice("device", self.device, DEVICES)

        _positive("steps", self.steps)
        _positive("sac.batch_size", self.sac.batch_size)
        _positive("sac.buffer_size", self.sac.buffer_size)
        _positive("sac.update_ratio", self.sac.update_ratio)
        _positive("num_envs", self.num_envs)
        if self.vector_mode == "auto":
            self.vector_mode = "single" if self.num_envs == 1 else "sync"
        _choice("vector_mode", self.vector_mode, VECTOR_MODES)
        if self.vector_mode == "single" and self.num_envs != 1:
            raise ConfigError(f"vector_mode single steps one environment; num_envs={self.num_envs} needs sync or async")
        _positive("eval_every", self.eval_every)
        _positive("eval_episodes", self.eval_episodes)
        _positive("final_eval_episodes", self.final_eval_episodes)
        _positive("log_every", self.log_every)
        _positive("probe_size", self.probe_size)
        _positive("multiplier.period", m.period)
        _positive("multiplier.steps", m.steps)
        _positive("multiplier.pid_d_delay", m.pid_d_delay)
        for name in ("pid_kp", "pid_ki", "pid_kd"):
            if getattr(m, name) < 0:
                raise ConfigError(f"multiplier.{name} must be >= 0, got {getattr(m, name)}")
        for name in ("pid_ema_p", "pid_ema_d"):
            if not 0.0 <= getattr(m, name) < 1.0:
                raise ConfigError(f"multiplier.{name} must be in [0, 1), got {getattr(m, name)}")
        for name in ("sac.lr_actor", "sac.lr_critic", "sac.lr_alpha", "sac.alpha_init", "sac.reward_scale",
                     "multiplier.lr", "multiplier.rho", "multiplier.rho_lambda", "multiplier.lam_max"):
            _positive(name, self._get(name))
        for name in ("sac.gamma", "constraint.gamma_c"):
            if not 0.0 <= self._get(name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {self._get(name)}")
        for name in ("sac.tau", "constraint.tau", "multiplier.target_tau"):
            if not 0.0 < self._get(name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {self._get(name)}")
        if (self.sac.start_steps < 0 or self.checkpoint_every < 0 or self.checkpoint_minutes < 0 or self.threads < 0
                or self.max_episode_steps < 0):
            raise ConfigError("sac.start_steps, checkpoint_every, checkpoint_minutes, threads and max_episode_steps "
                              "must be >= 0")
        if not 0 <= self.seed < 2**32 - 2**21:  # numpy seeds must fit 32 bits (evaluation adds offsets)
            raise ConfigError(f"seed must be in [0, 2**32 - 2**21), got {self.seed}")
        if not isinstance(m.normalize_actor, bool):
            raise ConfigError(f"multiplier.normalize_actor must be true, false or auto, got '{m.normalize_actor}'")
        for name in ("sac.hidden", "multiplier.hidden"):
            hidden = self._get(name)
            if not hidden or any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in hidden):
                raise ConfigError(f"{name} must be a non-empty list of positive layer widths, got {hidden}")
        limits = {"threads": (self.threads, 1024), "num_envs": (self.num_envs, 1024),
                  "multiplier.pid_d_delay": (m.pid_d_delay, 100_000), "multiplier.steps": (m.steps, 10_000),
                  "probe_size": (self.probe_size, 1_000_000)}
        limits.update({f"{n}.hidden": (max(self._get(f"{n}.hidden")), 65_536) for n in ("sac", "multiplier")})
        for name, (value, top) in limits.items():
            if value > top:
                raise ConfigError(f"{name} = {value} is beyond the supported maximum {top}")

        if self.sac.start_steps < self.sac.batch_size:
            raise ConfigError("sac.start_steps must be at least sac.batch_size so the first batch can be drawn")
        if self.sac.buffer_size < max(self.sac.start_steps, self.num_envs):
            raise ConfigError("sac.buffer_size must be at least sac.start_steps and num_envs")
        if self.sac.grad_clip < 0 or m.grad_clip < 0:
            raise ConfigError("grad_clip values must be >= 0 (0 disables clipping)")
        self._check_constraint()
        if not 0.0 < m.lam_init < m.lam_max:
            raise ConfigError(f"multiplier.lam_init must be in (0, lam_max={m.lam_max}), got {m.lam_init}")
        return self

    def _get(self, dotted: str) -> Any:
        node: Any = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return node


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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
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
        if origin is list and isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
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
    "multiplier.state_noise": 1e3,
}


def _check_numbers(cfg: "Config") -> None:
    """Every number in the config is finite, and none is beyond its ceiling (absurd values are refused, not run)."""
    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value, name = getattr(node, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, name + ".")
            elif isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                top = _CEILINGS.get(name)
                if top is not None and abs(value) > top:
                    raise ConfigError(f"{name} = {value:g} is beyond the supported maximum {top:g} (in absolute value)")

    walk(cfg, "")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
