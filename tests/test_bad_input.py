"""Every user error is one line on stderr and exit code 2: no traceback, no new run directory, no temporary file.

Each case is a command line (with {tmp} for a fresh directory and {run} for a small finished run whose files a
case may corrupt first) and a fragment the one-line message must contain."""

import shutil
import sys

import pytest

from conftest import tiny_config
from statewise.cli import main

SET = "train --steps 50 --run-dir {tmp}/new --set"
CASES = [
    # --set and options
    (f"{SET} sac.hidden=[]", "sac.hidden"),
    (f"{SET} sac.hidden=[0,4]", "sac.hidden"),
    (f"{SET} sac.hidden=[a]", "sac.hidden"),
    (f"{SET} multiplier.hidden=[-1]", "multiplier.hidden"),
    (f"{SET} sac.lr_actor=inf", "finite"),
    (f"{SET} sac.lr_critic=.nan", "NaN"),
    (f"{SET} multiplier.rho=1e308", "maximum"),
    (f"{SET} sac.alpha_init=inf", "finite"),
    (f"{SET} sac.reward_scale=inf", "finite"),
    (f"{SET} sac.reward_scale=0", "positive"),
    (f"{SET} sac.gamma=1", "sac.gamma"),
    (f"{SET} sac.tau=0", "sac.tau"),
    (f"{SET} sac.batch_size=-3", "batch_size"),
    (f"{SET} sac.batch_size=abc", "sac.batch_size"),
    (f"{SET} nonsense=1", "unknown config key"),
    (f"{SET} sac.nonsense=1", "unknown config key"),
    (f"{SET} sac=1", "unknown config key"),
    (f"{SET} novalue", "key=value"),
    (f"{SET} multiplier.kind=banana", "multiplier.kind"),
    (f"{SET} multiplier.fit_space=cubic", "fit_space"),
    (f"{SET} constraint.threshold=1000", "threshold"),
    (f"{SET} constraint.twin_target=min", "twin_target"),
    # several constraints (constraint.costs): a threshold list of another length, repeated or empty names, a signal of
    # h(s), a cost the environment does not report (checked at its first step, before anything is written)
    (f"{SET} constraint.costs=[wall,speed] --set constraint.threshold=[0.1]", "one threshold per cost"),
    (f"{SET} constraint.costs=[wall,wall]", "distinct non-empty names"),
    (f"{SET} constraint.costs=['']", "distinct non-empty names"),
    (f"{SET} constraint.costs=[wall] --set constraint.signal=hjr", "use cvf or cdf"),
    (f"{SET} constraint.costs=[wall,speed] --set constraint.threshold=[0.1,.nan]", "finite"),
    (f"{SET} constraint.costs=[wall,sped] --env statewise/DoubleIntegratorSpeedLimit-v0", "no cost 'sped'"),
    (f"{SET} constraint.costs=[wall]", "no cost 'wall'"),
    (f"{SET} multiplier.lam_init=500", "lam_init"),
    (f"{SET} label=a/b", "label"),
    (f"{SET} device=tpu", "device"),
    (f"{SET} compile=sometimes", "compile"),
    (f"{SET} threads=100000", "threads"),
    (f"{SET} seed=-1", "seed"),
    (f"{SET} sac.start_steps=10 --set sac.batch_size=256", "start_steps"),
    # 16 members of 2 layers of 65536: 1 TiB in parameters, refused before anything is allocated (without the estimate,
    # the first 256 GiB allocation fails on any machine that refuses to overcommit, Linux's default)
    ("train --steps 50 --seeds 0-15 --run-dir {tmp}/new --set sac.hidden=[65536,65536]",
     "sac.hidden=[65536, 65536] asks for"),
    (f"{SET} constraint.signal=rcrl", "choose from cvf, cdf, hjr, cbf"),
    (f"{SET} constraint.threshold=abc", "constraint.threshold"),
    (f"{SET} constraint.signal=cdf --set constraint.threshold=2", "(0, 1)"),
    (f"{SET} constraint.signal=cbf --set constraint.cbf_k=1.5", "cbf_k"),
    (f"{SET} multiplier.state_noise=-1", "state_noise must be >= 0"),
    ("train --steps 50 --algo sac-lag --set multiplier.state_noise=0.5 --run-dir {tmp}/new", "no state input"),
    (f"{SET} multiplier.state_noise=lots", "multiplier.state_noise"),
    (f"{SET} multiplier.activation=sigmoid", "unknown multiplier.activation 'sigmoid'; choose from relu, elu, tanh"),
    ("train --steps 0 --run-dir {tmp}/new", "steps"),
    ("train --steps 50 --algo banana --run-dir {tmp}/new", "unknown algorithm"),
    ("train --steps 50 --algo sac --set multiplier.kind=network --run-dir {tmp}/new", "unconstrained"),
    ("train --steps 50 --num-envs 0 --run-dir {tmp}/new", "num_envs"),
    ("train --steps 50 --num-envs 2 --vector-mode single --run-dir {tmp}/new", "vector_mode"),
    ("train --steps 50 --seed 1 --seeds 0-3 --run-dir {tmp}/new", "--seeds"),
    ("train --steps 50 --seeds 3-1 --run-dir {tmp}/new", "--seeds"),
    ("train --steps 50 --seeds 0,0 --run-dir {tmp}/new", "--seeds"),
    ("train --steps 50 --seeds x --run-dir {tmp}/new", "--seeds"),
    ("train --steps 50 --device cuda --run-dir {tmp}/new", "cuda"),
    ("train --steps 50 --bogus-flag", "bogus"),
    ("train --steps abc", "abc"),
    # environments
    ("train --steps 50 --env Nope-v0 --run-dir {tmp}/new", "unknown environment"),
    ("train --steps 50 --env statewise/DoubleIntegrater-v0 --run-dir {tmp}/new", "Did you mean"),
    ("train --steps 50 --env :Foo-v0 --run-dir {tmp}/new", "module:Name-v0"),
    ("train --steps 50 --env nosuchmodule_xyz:Foo-v0 --run-dir {tmp}/new", "cannot import module"),
    ("train --steps 50 --env _raising_module:Foo-v0 --run-dir {tmp}/new", "RuntimeError: boom"),
    ("train --steps 50 --env _broken_syntax:Foo-v0 --run-dir {tmp}/new", "SyntaxError"),
    ("train --steps 50 --env _toy_envs:ToyNoCost-v0 --set max_episode_steps=9 --run-dir {tmp}/new", "no cost"),
    ("train --steps 50 --env _toy_envs:ToyWrongShape-v0 --set max_episode_steps=9 --run-dir {tmp}/new", "shape"),
    ("train --steps 50 --env _toy_envs:ToyCost-v0 --set max_episode_steps=9 --set constraint.signal=hjr "
     "--run-dir {tmp}/new", "needs the signed constraint h(s)"),
    ("train --steps 50 --env CartPole-v1 --run-dir {tmp}/new", "CartPole"),
    ("train --steps 50 --env _toy_envs:ToyEmptyObs-v0 --run-dir {tmp}/new", "no dimension: its observation space"),
    ("train --steps 50 --env _toy_envs:ToyEmptyAction-v0 --run-dir {tmp}/new", "no dimension: its action space"),
    # config files
    ("train --steps 50 --config {tmp}/missing.yaml --run-dir {tmp}/new", "not found"),
    ("train --steps 50 --config {tmp}/list.yaml --run-dir {tmp}/new", "mapping"),
    ("train --steps 50 --config {tmp}/broken.yaml --run-dir {tmp}/new", "not valid YAML"),
    ("train --steps 50 --config {tmp}/selfref.yaml --run-dir {tmp}/new", "refers to itself"),
    ("train --steps 50 --config {tmp}/unknown.yaml --run-dir {tmp}/new", "unknown config key"),
    ("train --steps 50 --config {tmp}/dup.yaml --run-dir {tmp}/new", "dup.yaml gives key 'sac.batch_size' twice"),
    ("train --steps 50 --config {tmp}/dup_top.yaml --run-dir {tmp}/new", "gives key 'steps' twice (lines 1 and 3)"),
    # run directories
    ("train --steps 50 --run-dir {run}", "already exists"),
    ("train --steps 50 --run-dir {tmp}/afile/sub", "run directory"),
    ("train --steps 50 --run-dir {tmp}/" + "x" * 300, "run directory"),
    ("eval {tmp}/nowhere", "does not exist"),
    ("eval {tmp}", "no checkpoint"),
    ("eval {run} --episodes 0", "--episodes"),
    ("eval {run} --seed -5", "--seed"),
    ("eval {run} --video --video-episodes 5 --episodes 2", "--video-episodes"),
    ("eval {run}", "corrupt", "checkpoint.pt"),
    ("eval {run}", "config.yaml", "config.yaml"),
    ("eval {run}", "non-finite parameters", "nan-checkpoint"),
    ("eval {run}", "metadata is not a mapping", "meta-list"),
    ("plot {run}", "metadata is not a mapping", "meta-str"),
    ("export {run}", "metadata is not a mapping", "meta-list"),
    ("eval {run}", "does not match its config.yaml", "meta-step"),
    ("calibrate {tmp}/nowhere", "does not exist"),
    ("calibrate {run} --horizon 0", "horizon"),
    ("calibrate {run} --episodes 0", "episodes"),
    ("calibrate {run}", "non-finite parameters", "nan-checkpoint"),
    # plots and reports on corrupt files
    ("plot {tmp}/nowhere", "does not exist"),
    ("plot {run}", "config.yaml", "config.yaml"),
    ("plot {run}", "eval.csv", "eval.csv"),
    ("plot {run}", "metrics.csv", "metrics.csv"),
    ("plot {run} --cost-limit nan", "'--cost-limit': must be a finite number"),
    ("plot {run} --cost-limit inf", "'--cost-limit': must be a finite number"),
    ("bench --steps 50 --cost-limit nan --out {tmp}/grid", "'--cost-limit': must be a finite number"),
    ("report {tmp} --cost-limit -inf", "'--cost-limit': must be a finite number"),
    ("report {tmp}/grid", "summary.json", "summary.json"),
    ("report {tmp}/grid", "probe.npz", "probe.npz"),
    ("report {tmp}/grid", "eval.csv", "eval.csv"),
    ("report {tmp}/nowhere", "no benchmark runs"),
    # grids
    ("bench --out {tmp}/g", "--steps is required"),
    ("bench --steps 10 --workers 0 --out {tmp}/g", "--workers"),
    ("bench --steps 10 --seeds 0 --out {tmp}/g", "--seeds"),
    ("bench --steps 10 --algos banana --out {tmp}/g", "banana"),
    ("bench --grid {tmp}/missing.yaml --out {tmp}/g", "not found"),
    ("bench --grid {tmp}/grid_steps.yaml --out {tmp}/g", "steps must be a positive integer"),
    ("bench --grid {tmp}/grid_cost.yaml --out {tmp}/g", "cost_limit"),
    ("bench --grid {tmp}/grid_key.yaml --out {tmp}/g", "unknown key"),
    ("bench --grid {tmp}/grid_seeds.yaml --out {tmp}/g", "seeds"),
    ("bench --grid {tmp}/grid_config.yaml --out {tmp}/g", "config file"),
    ("bench --grid {tmp}/broken.yaml --out {tmp}/g", "not valid YAML"),
]

FILES = {
    "list.yaml": "- 1\n- 2\n",
    "broken.yaml": "a: [1, 2\n",
    "selfref.yaml": "a: &a\n  b: *a\n",
    "unknown.yaml": "sac:\n  bogus: 1\n",
    "dup.yaml": "sac:\n  batch_size: 32\n  gamma: 0.9\n  batch_size: 64\n",
    "dup_top.yaml": "steps: 10\nseed: 1\nsteps: 20\n",
    "afile": "not a directory\n",
    "grid_steps.yaml": "steps: abc\nalgos: [sac-lag]\n",
    "grid_cost.yaml": "steps: 10\ncost_limit: abc\nalgos: [sac-lag]\n",
    "grid_key.yaml": "steps: 10\nbogus: 1\n",
    "grid_seeds.yaml": "steps: 10\nseeds: 3\n",
    "grid_config.yaml": "steps: 10\nconfig: nowhere.yaml\n",
    "_raising_module.py": "raise RuntimeError('boom')\n",
    "_broken_syntax.py": "def f(:\n",
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import statewise

    root = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(root / "run", steps=150)
    statewise.train(cfg)
    return root / "run"


def _corrupt(run, what: str) -> None:
    import torch

    if what == "nan-checkpoint":
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        for value in ckpt["agent"].values():
            if value.is_floating_point():
                value.fill_(float("nan"))
        torch.save(ckpt, run / "checkpoint.pt")
    elif what.startswith("meta-"):  # a checkpoint whose metadata is not what statewise wrote
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        ckpt["meta"] = {"meta-list": [1, 2], "meta-str": "garbage",
                        "meta-step": {**ckpt["meta"], "step": "ten"}}[what]
        torch.save(ckpt, run / "checkpoint.pt")
    else:
        (run / what).write_text("garbage{[\n")


@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, finished_run, capsys, monkeypatch):
    command, fragment, *corrupt = case
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("_raising_module", "_broken_syntax"):
        sys.modules.pop(name, None)
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    grid = tmp_path / "grid" / "DoubleIntegrator-v0" / "sac-alam-s0"
    shutil.copytree(finished_run, grid)
    if corrupt:
        _corrupt(grid if command.startswith("report") else run, corrupt[0])
    before = sorted(p for p in tmp_path.rglob("*") if "plots" not in p.parts)
    argv = command.format(tmp=tmp_path, run=run).split()
    _refused_in_one_line(argv, fragment, capsys)
    after = sorted(p for p in tmp_path.rglob("*") if "plots" not in p.parts)
    assert after == before, set(after) ^ set(before)  # no run directory, no temporary file
    assert len(CASES) >= 60


def _refused_in_one_line(argv: list[str], fragment: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    assert exit_info.value.code == 2, (out.out, out.err)
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("statewise: error: "), out.err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("seeds", [[], ["--seeds", "0-1"]], ids=["one run", "population"])
def test_an_empty_run_dir_is_refused(seeds, tmp_path, capsys, monkeypatch):
    """--run-dir '' names no directory: refused, not replaced by a generated name under runs/."""
    monkeypatch.chdir(tmp_path)
    _refused_in_one_line(["train", "--steps", "50", "--run-dir", "", *seeds], "--run-dir", capsys)
    assert not list(tmp_path.iterdir())


def test_networks_the_allocator_refuses_are_one_line(tmp_path, capsys, monkeypatch):
    """Networks that pass the memory estimate but that the allocator still refuses (other processes took the memory):
    one line that names the setting and what it asks for, exit 2, no run directory."""
    import torch

    from statewise.method import sac

    real_empty = torch.empty

    def empty(*size, **kwargs):  # the CPU allocator's own words, for anything of 2**28 elements or more
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        n = 1
        for d in shape:
            n *= int(d)
        on_meta = str(getattr(torch, "get_default_device", lambda: "cpu")()) == "meta"  # counting, not allocating
        if n >= 2**28 and not on_meta and kwargs.get("device") != "meta":
            raise RuntimeError(f"[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               f"memory: you tried to allocate {4 * n} bytes. Error code 12 (Cannot allocate memory)")
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(sac, "available_memory", lambda: 2**50)
    _refused_in_one_line(["train", "--steps", "50", "--run-dir", str(tmp_path / "new"), "--set",
                          "sac.hidden=[32768,32768]"], "sac.hidden=[32768, 32768] asks for", capsys)
    assert not (tmp_path / "new").exists()


def test_plot_warns_about_a_probe_file_it_cannot_read(tmp_path, finished_run, capsys):
    """plot draws nothing from probe.npz, so a corrupt one does not stop it; but it is said, in one line (statewise
    report refuses the run)."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "probe.npz").write_bytes(b"garbage")
    main(["plot", str(run), "--out", str(tmp_path / "plots")])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("statewise: warning: "), out.err
    assert str(run / "probe.npz") in lines[0] and "corrupt" in lines[0]
    assert (tmp_path / "plots" / "learning_curves.png").is_file()


def test_steps_within_the_warm_up_are_said(tmp_path, capsys):
    """--steps below sac.start_steps trains nothing (random actions, no update): the run is kept, and one line says so,
    with the smallest --steps that trains."""
    tiny = ["--set", "sac.hidden=[8,8]", "--set", "multiplier.hidden=[8,8]", "--set", "sac.batch_size=32",
            "--set", "sac.start_steps=64", "--set", "eval_episodes=1", "--set", "final_eval_episodes=1",
            "--set", "max_episode_steps=20", "--no-progress"]
    main(["train", "--steps", "64", "--run-dir", str(tmp_path / "r"), *tiny])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("statewise: warning: "), out.err
    assert "sac.start_steps=64" in lines[0] and "--steps 65" in lines[0], lines[0]
    main(["train", "--steps", "65", "--run-dir", str(tmp_path / "r2"), *tiny])
    assert capsys.readouterr().err == ""
