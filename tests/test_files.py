"""Every file the project writes is strict: no `auto` left in config.yaml, no bare NaN in JSON (null, with the reason
beside it); and the config reference (`statewise config`) covers every key."""

import csv
import json
import math

import pytest
import yaml

import statewise
from statewise.cli import main
from statewise.config import Config, flatten, reference
from statewise.run import runio


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_run_files_are_strict(tmp_path, tiny):
    result = statewise.train(tiny(tmp_path / "run"), plots=False)
    cfg = yaml.safe_load((result.run_dir / runio.CONFIG_FILE).read_text())
    flat = flatten(cfg)
    assert [k for k, v in flat.items() if v == "auto"] == []
    assert flat["sac.target_entropy"] == -1.0 and isinstance(flat["compile"], bool)
    Config.from_yaml(result.run_dir / runio.CONFIG_FILE).validate()  # and it still reads back as a config
    for name in (runio.SUMMARY_FILE, runio.VERSIONS_FILE):
        strict_json((result.run_dir / name).read_text())


def test_non_finite_numbers_become_null_with_a_reason(tmp_path):
    path = tmp_path / "s.json"
    runio.write_json(path, {"lambda_auroc": float("nan"), "ratio": float("inf"), "series": [1.0, float("nan")],
                            "nested": {"feasible_start_violation_prob": float("nan")}, "kept": None, "x": 2.5})
    data = strict_json(path.read_text())
    assert data["lambda_auroc"] is None and "one class" in data["lambda_auroc_null_reason"]
    assert data["ratio"] is None and data["ratio_null_reason"] == "+infinite"
    assert data["series"] == [1.0, None] and "series_null_reason" in data
    assert data["nested"]["feasible_start_violation_prob"] is None
    assert "feasible state" in data["nested"]["feasible_start_violation_prob_null_reason"]
    back = runio.read_json(path)  # readers get NaN back where a reason says why; a plain null stays None
    assert math.isnan(back["lambda_auroc"]) and math.isnan(back["series"][1]) and back["x"] == 2.5
    assert math.isnan(back["nested"]["feasible_start_violation_prob"]) and back["kept"] is None


def test_config_reference_covers_every_key(capsys):
    keys = set(flatten(Config().to_dict()))
    rows = reference()
    assert {row[0] for row in rows} == keys
    assert [row[0] for row in rows if not row[3]] == []  # every key has a meaning
    main(["config"])
    out = capsys.readouterr().out
    assert all(key in out for key in keys)
    assert "multiplier.rho " in out and "augmented-Lagrangian penalty coefficient" in out
    main(["train", "--help"])
    assert "statewise config" in capsys.readouterr().out


def test_install_hints_work_from_a_checkout():
    from statewise.analysis.video import VIDEO_INSTALL
    from statewise.envs.velocity import MUJOCO_INSTALL
    from statewise.grid.ray_executor import RAY_INSTALL

    for hint in (MUJOCO_INSTALL, VIDEO_INSTALL, RAY_INSTALL):
        assert hint.startswith('pip install -e ".[') and "statewise[" not in hint


@pytest.mark.parametrize("algo", ["sac", "sac-lag", "sac-pid-lag", "sac-alam"])
def test_training_log_header_is_declared_up_front(tmp_path, tiny, algo):
    """metrics.csv starts with its final header (no column appears later, which would rewrite the file under a
    reader); warm-up rows leave the learning columns empty."""
    from statewise.run.diagnostics import PROBE_LOG_FIELDS
    from statewise.run.trainer import TRAIN_LOG_FIELDS

    result = statewise.train(tiny(tmp_path / algo, algo=algo), plots=False)
    with open(result.run_dir / runio.TRAIN_CSV, newline="") as fh:
        rows = list(csv.reader(fh))
    agent = statewise.load(result.run_dir)
    expected = ["step", *TRAIN_LOG_FIELDS, *agent.sac.stat_names(), *(PROBE_LOG_FIELDS if algo != "sac" else ())]
    assert rows[0] == expected
    first = dict(zip(rows[0], rows[1], strict=True))  # step 50, inside the 100-step warm-up
    assert first["actor_loss"] == "" and first["time_s"] != ""
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert all(last[name] != "" for name in agent.sac.stat_names())  # every declared statistic is produced
