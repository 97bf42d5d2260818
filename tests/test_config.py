"""The typed config: overrides, type coercion, presets, validation, round trip."""

import pytest

from statewise import Config
from statewise.errors import ConfigError


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
