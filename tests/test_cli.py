"""The command line: help, a successful run, and every error path (one line, exit code 2, nothing overwritten)."""

import pytest

from statewise.cli import main

SMALL = ["--steps", "200", "--no-progress", "--set", "sac.hidden=[8,8]", "--set", "multiplier.hidden=[8,8]",
         "--set", "sac.start_steps=64", "--set", "sac.batch_size=32", "--set", "eval_every=100",
         "--set", "eval_episodes=1", "--set", "final_eval_episodes=2", "--set", "log_every=50"]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def expect_error(argv, capsys, *fragments):
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("statewise: error:")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_help_of_every_command(capsys):
    for argv, word in ((["--help"], "train"), (["eval", "--help"], "RUN_DIR"), (["plot", "--help"], "RUN_DIRS")):
        main(argv)  # returns normally: exit code 0
        assert word in capsys.readouterr().out


def test_train_help_names_algorithms(capsys):
    main(["train", "--help"])
    out = capsys.readouterr().out
    for algo in ("sac", "sac-lag", "sac-pid-lag", "sac-al", "fac", "sac-alam", "alam-no-qp", "alam-no-dt"):
        assert algo in out
    assert "DoubleIntegrator-v0" in out


def test_train_eval_plot_roundtrip(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--algo", "sac-alam", "--env", "statewise/DoubleIntegrator-v0", "--seed", "1",
          "--run-dir", str(run), *SMALL])
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "lambda AUROC" in out
    assert (run / "plots" / "learning_curves.png").stat().st_size > 1000
    assert (run / "plots" / "lambda_heatmap.png").stat().st_size > 1000
    main(["eval", str(run), "--episodes", "2"])
    out = capsys.readouterr().out
    assert "violation prob from feasible starts" in out
    main(["plot", str(run), str(run), "--out", str(tmp_path / "p")])
    assert (tmp_path / "p" / "learning_curves.png").is_file()


@pytest.mark.parametrize("argv,fragments", [
    (["train", "--algo", "ppo"], ["unknown algorithm 'ppo'", "sac-alam"]),
    (["train", "--env", "NoSuchEnv-v9"], ["NoSuchEnv-v9"]),
    (["train", "--set", "sac.bach_size=3"], ["unknown config key 'sac.bach_size'", "sac.batch_size"]),
    (["train", "--set", "sac.batch_size=abc"], ["sac.batch_size"]),
    (["train", "--set", "nokey"], ["key=value"]),
    (["train", "--steps", "0"], ["steps must be positive"]),
    (["train", "--steps", "-5"], ["steps must be positive"]),
    (["train", "--set", "constraint.threshold=-1"], ["constraint.threshold"]),
    (["train", "--set", "constraint.threshold=500"], ["constraint.threshold"]),
    (["train", "--set", "multiplier.rho=0"], ["multiplier.rho must be positive"]),
    (["train", "--set", "multiplier.rho=nan"], ["multiplier.rho"]),
    (["train", "--set", "multiplier.rho=.nan"], ["multiplier.rho", "NaN"]),
    (["train", "--config", "/nonexistent/c.yaml"], ["config file not found"]),
    (["train", "--seed", "4294967296"], ["seed must be in"]),
    (["train", "--set", "multiplier.normalize_actor=flase"], ["normalize_actor"]),
    (["train", "--set", "threads=100000000"], ["threads"]),
    (["eval", "/nonexistent/run"], ["does not exist"]),
    (["plot", "/nonexistent/run"], ["does not exist"]),
])
def test_bad_input_one_line_exit_2(argv, fragments, capsys, tmp_path):
    expect_error([*argv, *(["--run-dir", str(tmp_path / "r")] if argv[0] == "train" else [])], capsys, *fragments)
    assert not (tmp_path / "r").exists()


def test_env_without_cost_refused_before_writing(tmp_path, capsys):
    expect_error(["train", "--env", "_toy_envs:ToyNoCost-v0", "--run-dir", str(tmp_path / "r"), *SMALL,
                  "--set", "max_episode_steps=20"], capsys,
                 "info['cost']")
    assert not (tmp_path / "r").exists()


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    expect_error(["train", "--run-dir", str(run), *SMALL], capsys, "already exists")
    assert (run / "keep.txt").read_text() == "precious" and len(list(run.iterdir())) == 1


def test_missing_and_corrupt_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), *SMALL])
    capsys.readouterr()
    good = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    expect_error(["eval", str(run)], capsys, "corrupt")
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    expect_error(["eval", str(run)], capsys, "corrupt")
    (run / "checkpoint.pt").unlink()
    expect_error(["eval", str(run)], capsys, "no checkpoint")
    expect_error(["eval", str(run), "--episodes", "0"], capsys, "--episodes")
    expect_error(["eval", str(run), "--seed", "-1"], capsys, "--seed")


def test_unusable_run_dir_and_config(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    expect_error(["train", "--run-dir", str(tmp_path / "file" / "run"), *SMALL], capsys, "run directory")
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe\x00bad")
    expect_error(["train", "--config", str(tmp_path / "bad.yaml")], capsys, "config file")


def test_bench_grid_file_cli_overrides_and_errors(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("envs: [statewise/DoubleIntegrator-v0]\nseeds: [5]\nsteps: 120\n"
                    "algos: [{label: fac-k2, algo: fac, set: [multiplier.steps=2]}]\n"
                    "set: {sac.hidden: [8, 8], multiplier.hidden: [8, 8], sac.start_steps: 64, sac.batch_size: 32,\n"
                    "      eval_every: 60, eval_episodes: 1, final_eval_episodes: 2, log_every: 30, probe_size: 16}\n")
    out = tmp_path / "out"
    main(["bench", "--grid", str(grid), "--out", str(out), "--workers", "1"])
    assert (out / "DoubleIntegrator-v0" / "fac-k2-s5" / "summary.json").is_file()
    assert "report.md" in capsys.readouterr().out
    # command-line options override the file: --seeds/--first-seed replace its seed list
    main(["bench", "--grid", str(grid), "--out", str(out), "--workers", "1", "--first-seed", "6", "--seeds", "1"])
    assert (out / "DoubleIntegrator-v0" / "fac-k2-s6" / "summary.json").is_file()
    capsys.readouterr()
    expect_error(["bench", "--out", str(out)], capsys, "--steps is required")
    expect_error(["bench", "--grid", str(tmp_path / "nope.yaml"), "--out", str(out)], capsys, "grid file not found")
    expect_error(["bench", "--grid", str(grid), "--out", str(out), "--workers", "0"], capsys, "--workers")
    expect_error(["bench", "--algos", "fac,nope", "--steps", "10", "--out", str(out)], capsys, "unknown algorithm")
