"""The typed config: overrides, type coercion, presets, validation, round trip."""

from pathlib import Path

import pytest

from statewise import ALGORITHMS, Config
from statewise.config import Preset, preset_table
from statewise.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_parse_yaml_values():
    cfg = Config()
    cfg.apply_overrides(["multiplier.lr=3e-5", "sac.hidden=[32, 32]", "progress=false", "steps=2e4",
                         "sac.target_entropy=-2", "multiplier.rho=10"])
    assert cfg.multiplier.lr == pytest.approx(3e-5)
    assert cfg.sac.hidden == [32, 32] and cfg.progress is False and cfg.steps == 20000
    assert cfg.sac.target_entropy == -2 and isinstance(cfg.multiplier.rho, float)


def test_presets_resolve_and_switches_override():
    cfg = Config(algo="sac-alam").validate()
    m = cfg.multiplier
    assert (m.kind, m.update, m.penalty, m.normalize_actor, m.rho_lambda) == (
        "network", "regression", "augmented", False, m.rho)
    cfg = Config(algo="sac-alam")
    cfg.apply_overrides(["multiplier.penalty=lagrangian"])
    assert cfg.validate().multiplier.penalty == "lagrangian"
    lag = Config(algo="sac-lag").validate().multiplier
    assert (lag.kind, lag.normalize_actor) == ("scalar", True)
    assert not Config(algo="sac").validate().constrained


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_preset_resolves_to_its_row(algo):
    preset = ALGORITHMS[algo]
    assert isinstance(preset, Preset) and preset.summary
    m = Config(algo=algo).validate().multiplier
    assert (m.kind, m.update, m.penalty, m.normalize_actor) == (
        preset.kind, preset.update, preset.penalty, preset.normalize_actor)
    assert f"| {algo} " in preset_table() and preset.summary in preset_table()


@pytest.mark.parametrize("document", ["README.md", "docs/algorithm.md"])
def test_documents_hold_the_preset_table_verbatim(document):
    """The algorithm table in the documents is a copy of preset_table(); paste its output again after a change."""
    text = (ROOT / document).read_text(encoding="utf-8")
    assert "\n" + preset_table() in text, f"{document}: its algorithm table is not statewise.config.preset_table()"


def test_resolve_fills_auto_and_leaves_explicit_values():
    cfg = Config(algo="fac", num_envs=3)
    cfg.apply_overrides(["multiplier.penalty=augmented", "multiplier.rho=4"])
    assert cfg.resolve() is cfg
    m = cfg.multiplier
    assert (m.kind, m.update, m.penalty, m.rho_lambda, m.lr, m.steps) == (
        "network", "dual-ascent", "augmented", 4.0, 3e-5, 1)
    assert (cfg.label, cfg.vector_mode, cfg.constraint.threshold) == ("fac", "sync", 0.1)
    assert cfg.sac.target_entropy == "auto" and cfg.compile == "auto"  # need the environment and the hardware
    with pytest.raises(ConfigError, match="unknown algorithm 'ppo'"):
        Config(algo="ppo").resolve()


def test_round_trip_through_yaml(tmp_path):
    cfg = Config(algo="fac", seed=7)
    cfg.apply_overrides(["multiplier.period=12", "constraint.threshold=0.5"])
    cfg.validate()
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = Config.from_yaml(path).validate()
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("override,message", [
    ("algo=ppo", "unknown algorithm"),
    ("sac.hiden=[3]", "did you mean 'sac.hidden'"),
    ("sac.batch_size=1.5", "expects int"),
    ("sac.hidden=[0]", "positive layer widths"),
    ("sac.gamma=1.0", "sac.gamma"),
    ("constraint.twin_aggregate=min", "twin_aggregate"),
    ("constraint.twin_target=min", "twin_target"),
    ("constraint.tau=0", "constraint.tau"),
    ("constraint.tau=fast", "expects float"),
    ("multiplier.steps=many", "multiplier.steps must be a number or 'auto'"),
    ("value_bias=maybe", "expects bool"),
    ("multiplier.update=regression", None),  # fine for sac-alam
    ("multiplier.lam_init=200", "lam_init"),
    ("sac.start_steps=10", "start_steps"),
])
def test_validation(override, message):
    cfg = Config(algo="sac-alam")
    if message is None:
        cfg.apply_overrides([override])
        cfg.validate()
        return
    with pytest.raises(ConfigError, match=message):
        cfg.apply_overrides([override])
        cfg.validate()


def test_inconsistent_multiplier_choices():
    cfg = Config(algo="sac-lag")
    cfg.apply_overrides(["multiplier.update=regression"])
    with pytest.raises(ConfigError, match="needs multiplier.kind=network"):
        cfg.validate()
    cfg = Config(algo="fac")
    cfg.apply_overrides(["multiplier.kind=none"])
    with pytest.raises(ConfigError, match="only for sac"):
        cfg.validate()


@pytest.mark.parametrize("algo, lr, steps", [("sac-alam", 3e-4, 10), ("alam-no-qp", 3e-4, 10), ("fac", 3e-5, 1),
                                             ("alam-no-dt", 3e-5, 1), ("sac-lag", 3e-4, 1), ("sac-pid-lag", 3e-4, 1)])
def test_multiplier_budget_follows_the_update_rule(algo, lr, steps):
    """Regression to the dual target gets a critic's lr and K_λ = 10 steps; dual ascent on a network keeps the small
    dual step; explicit values always win."""
    cfg = Config(algo=algo).validate()
    assert (cfg.multiplier.lr, cfg.multiplier.steps) == (lr, steps)
    assert (cfg.constraint.twin_aggregate, cfg.constraint.twin_target, cfg.constraint.tau) == ("mean", "mean", 0.05)
    explicit = Config(algo=algo)
    explicit.apply_overrides(["multiplier.lr=1e-3", "multiplier.steps=2"])
    assert (explicit.validate().multiplier.lr, explicit.multiplier.steps) == (1e-3, 2)


def test_registries_and_config_choices_name_the_same_parts():
    """A part added to a registry is selectable in the config, and every name the config accepts is built."""
    from statewise.config import MULTIPLIER_KINDS, PENALTIES, SIGNALS
    from statewise.method.multipliers import MULTIPLIERS, per_state
    from statewise.method.penalties import PENALTIES as PENALTY_BUILDERS
    from statewise.method.signals import SIGNAL_CLASSES

    assert set(MULTIPLIERS) == set(MULTIPLIER_KINDS) - {"none"}
    assert set(PENALTY_BUILDERS) == set(PENALTIES)
    assert set(SIGNAL_CLASSES) == set(SIGNALS)
    assert {algo for algo, p in ALGORITHMS.items() if per_state(p.kind)} == {"fac", "sac-alam", "alam-no-qp",
                                                                             "alam-no-dt"}
