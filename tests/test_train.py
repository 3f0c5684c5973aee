"""Training: the recipe, the L1 term, determinism, early stop at exactness, restarts, files,
the progress bar, and two-process DistributedDataParallel under torchrun."""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import snapshot
from gzoo.ca import RuleError, step
from gzoo.checkpoint import CheckpointError, load_checkpoint
from gzoo.models import build_model, resolve_model
from gzoo.train import TrainConfig, l1_penalty, train, weights_digest
from gzoo.verify import verify_exact

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # training is reproducible per thread count


def tiny(**kw):
    """A few-second recipe: small data, a small p4 model."""
    base = dict(rule="B3/S23", model="p4", model_kwargs={"width": 2}, steps=12, batch_size=4,
                n_boards=6, board_size=12, pairs_per_board=2, holdout_boards=2, check_every=6,
                restarts=0)
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------------------- the recipe
def test_config_defaults_and_json_round_trip():
    cfg = TrainConfig(rule="b36s23", model="p4m", model_kwargs={"width": 5}, seed=7)
    assert cfg.rule == "B36/S23"  # canonical
    assert (cfg.lr, cfg.l1, cfg.batch_size, cfg.board_size) == (1e-2, 1e-5, 16, 32)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict({**d, "seed_used": 1007}) == cfg


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"rule": "B9/S"}, RuleError, "invalid rule"),
        ({"model": "hexnet"}, ValueError, "unknown model"),
        ({"steps": 0}, ValueError, "steps must be a positive int"),
        ({"restarts": -1}, ValueError, r"restarts must be an int in 0\.\.1000000, got -1"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
        ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0, got inf"),
        ({"l1": float("nan")}, ValueError, "l1 must be a finite number ≥ 0, got nan"),
        ({"data_seed": -2}, ValueError, "data_seed"),
        ({"seed": 2**64}, ValueError, r"seed must be an int in 0\.\."),
        ({"density": (0.5, 1.5)}, ValueError, r"density\[1\] must be .* got 1\.5"),
        ({"density": (0.9, 0.1)}, ValueError, r"lo ≤ hi, got \(0\.9, 0\.1\)"),
        ({"noise": -0.1}, ValueError, "noise must be .* got -0.1"),
        ({"threads": 0}, ValueError, "threads must be a positive int, got 0"),
        ({"device": "banana"}, ValueError, "device must be .* got 'banana'"),
        ({"data": "boards"}, ValueError, "data must be one of"),
        ({"population": 0}, ValueError, r"population must be an int in 1\.\.1024, got 0"),
        ({"population": 1025}, ValueError, r"population must be an int in 1\.\.1024, got 1025"),
        ({"patience": 1.5}, TypeError, "patience must be a positive int"),
        ({"margin": -1.0}, ValueError, "margin must be a finite number ≥ 0, got -1.0"),
        ({"hinge": "1"}, TypeError, "hinge must be a real number, got str '1'"),
    ],
)
def test_config_checks(kw, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kw)


def test_command_reproduces_the_recipe():
    from gzoo.cli import build_parser

    cfg = TrainConfig(rule="B36/S23", model="p8", model_kwargs={"width": 5, "depth": 2},
                      steps=1500, seed=4, restarts=3, lr=3e-3)
    cmd = cfg.command("runs/x", seed=1004)
    args = build_parser().parse_args(shlex.split(cmd)[1:])
    assert (args.rule, args.model, args.width, args.depth) == ("B36/S23", "p8", 5, 2)
    assert (args.steps, args.seed, args.data_seed, args.restarts) == (1500, 1004, 4, 0)
    assert (args.lr, args.out, args.batch_size) == (3e-3, "runs/x", None)
    odd = TrainConfig(model="tiny", model_kwargs={"kernel_size": 3}).command()
    assert odd.endswith("# and model arguments {'kernel_size': 3} (not settable from the "
                        "command line)")


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(model="GCNN", model_kwargs={"group": "p4m", "width": 3}, lr=3e-3,
                    data_seed=7),
        TrainConfig(model="GCNN", steps=5),  # the class's default group: --model p8
        TrainConfig(model="small", model_kwargs={"width": 6}, batch_size=8, check_every=50,
                    l1=0.0, restarts=0, device="auto"),
        TrainConfig(model="SimpleCNN", model_kwargs={"width": 3, "kernel_size": 3}),  # no preset
    ],
)
def test_command_round_trips_through_the_parser(cfg):
    """The recorded command, parsed by the CLI, asks for the same recipe and the same model."""
    from gzoo.cli import build_parser, train_config_from_args

    cmd = cfg.command("out")
    settable, _, rest = cmd.partition("  # ")
    again = train_config_from_args(build_parser().parse_args(shlex.split(settable)[1:]))
    built = build_model(cfg.model, **cfg.model_kwargs).describe()
    _, fixed = resolve_model(again.model)  # --model p4m fixes group='p4m'
    lost = {k: v for k, v in cfg.model_kwargs.items()
            if k not in again.model_kwargs and k not in fixed}
    rebuilt = build_model(again.model, **again.model_kwargs, **lost).describe()
    assert rebuilt == built
    assert (rest == "") == (not lost)  # what the command line cannot set is said
    assert dataclasses.replace(again, model=cfg.model, model_kwargs=cfg.model_kwargs) == cfg


def test_cli_options_take_their_defaults_and_help_from_the_config(capsys):
    from gzoo.cli import build_parser, main, train_config_from_args

    assert train_config_from_args(build_parser().parse_args(["train", "--out", "x"])) == \
        TrainConfig()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in TrainConfig.cli_fields():
        assert f"--{f.name.replace('_', '-')}" in text
        if f.default is not None:
            assert f"{f.metadata['cli_help']} (default {f.default})" in text, f.name


def test_weights_digest():
    a, b = build_model("multiscale"), build_model("multiscale")  # has 0-dim int buffers
    assert weights_digest(a) == weights_digest(a) != weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.stem[0].bias[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)


def test_l1_penalty_sums_weights_only():
    m = build_model("p4", width=2)
    expected = sum(p.abs().sum() for n, p in m.named_parameters() if n.endswith("weight"))
    assert torch.allclose(l1_penalty(m), expected)
    with torch.no_grad():
        m.readout.bias.fill_(100.0)
    assert torch.allclose(l1_penalty(m), expected)  # biases are not penalised


# ---------------------------------------------------------------------------- training
def test_deterministic_per_seed():
    a = train(tiny(seed=3))
    b = train(tiny(seed=3))
    c = train(tiny(seed=4))
    assert weights_digest(a.model) == weights_digest(b.model)
    assert [r.loss for r in a.history] == [r.loss for r in b.history]
    assert weights_digest(a.model) != weights_digest(c.model)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [("tiny", {}), ("small", {}), ("multiscale", {}), ("p8", {"backend": "e2cnn", "width": 2})],
)
def test_every_model_kind_trains(model, kwargs):
    res = train(tiny(model=model, model_kwargs=kwargs, steps=4, check_every=2))
    assert res.total_steps == 4 and len(res.history) == 4
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in res.history)
    assert res.history[0].l1 > 0  # e2cnn's parameters are named "weights": still penalised
    assert not res.model.training
    checks = [r for r in res.history if r.checked]
    assert [r.step for r in checks] == [2, 4]
    if res.model.receptive_field > 3:  # the pattern check is skipped below 100 % accuracy
        assert all(r.n_wrong is None for r in checks if r.acc < 1)
        assert res.verify.method == "evidence"


def test_restarts_use_new_seeds_and_keep_the_best():
    res = train(tiny(steps=6, check_every=3, restarts=2, seed=5, data="soups"))
    assert res.data == "soups"
    assert not res.exact
    assert [r.restart for r in res.history] == [0] * 6 + [1] * 6 + [2] * 6
    assert sorted({r.seed for r in res.history}) == [5, 1005, 2005]
    assert res.total_steps == 18 and res.steps_run == 6 and res.attempts_run == 3
    assert res.metrics()["attempts_run"] == 3
    assert res.seed_used == 5 + 1000 * res.restarts_used
    finals = {r.restart: r for r in res.history if r.step == 6}
    best = min(finals.values(), key=lambda r: (r.n_wrong, -r.acc))
    assert res.restarts_used == best.restart
    assert res.n_wrong == verify_exact(res.model, "B3/S23").n_wrong == best.n_wrong


def test_learns_highlife_exactly_and_stops_early(tmp_path):
    """The default recipe (patterns, a population of nets): p8 learns B36/S23 exactly in a few
    hundred steps, training stops at the first step whose net is proved exact, and the proof
    carries over to a large board."""
    cfg = TrainConfig(rule="B36/S23", model="p8", seed=0, steps=1500, restarts=0)
    res = train(cfg, tmp_path / "run")
    assert res.data == "patterns" and res.verify.method == "exhaustive"
    assert res.exact and res.n_wrong == 0 and res.accuracy == 1.0
    assert res.steps_run < cfg.steps and res.total_steps == len(res.history)
    assert res.seed_used in {1000 * d for d in range(cfg.population)}
    assert res.history[-1].exact is True
    assert all(not r.exact for r in res.history[:-1])
    g = torch.Generator().manual_seed(9)
    board = torch.rand(2, 57, 43, generator=g) < 0.35
    for _ in range(5):
        nxt = res.model.step(board)
        assert torch.equal(nxt, step(board, "B36/S23"))
        board = nxt
    assert res.rollout is not None and res.rollout.identical

    folder = tmp_path / "run"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "metrics.jsonl", "model.safetensors", "training_curve.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .partial left
    lines = [json.loads(s) for s in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == res.total_steps
    assert {"step", "loss", "ce", "l1", "restart", "seed"} <= set(lines[0])
    assert lines[-1]["exact"] is True and "acc" in lines[cfg.check_every - 1]
    assert (folder / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_checkpoint(folder)
    assert weights_digest(loaded) == weights_digest(res.model)
    cfg_json = loaded.checkpoint.config
    assert cfg_json["metrics"]["exact"] is True and cfg_json["metrics"]["n_wrong"] == 0
    assert cfg_json["train"]["seed_used"] == res.seed_used
    assert cfg_json["train"]["rule"] == "B36/S23" and cfg_json["train"]["data_used"] == "patterns"
    assert "--seed 0" in cfg_json["train"]["command"]  # the whole population run reruns
    cert = cfg_json["certificate"]
    assert cert["method"] == "exhaustive" and cert["exact"] and cert["gzoo_version"]
    assert "proved exact by gzoo" in (folder / "README.md").read_text()

    with pytest.raises(CheckpointError, match="already exists"):
        train(cfg, folder)


def test_overwrite_and_quiet_without_terminal(tmp_path, capsys):
    folder = tmp_path / "run"
    train(tiny(), folder)
    before = (folder / "config.json").read_text()
    train(tiny(seed=1), folder, overwrite=True)
    assert (folder / "config.json").read_text() != before
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize("kw", [{"lr": 1e30}, {"l1": 1e38}])
def test_a_diverging_loss_stops_at_once_and_saves_nothing(user_files, kw):
    before = snapshot(user_files)
    for data, what in (("soups", "attempt"), ("patterns", "net")):
        with pytest.raises(FloatingPointError, match=(
                rf"training diverged: the loss is (nan|inf) at step \d+ of {what} 1 "
                r".*Nothing was saved")):
            train(tiny(steps=50, restarts=2, data=data, **kw), user_files / "run")
        assert snapshot(user_files) == before  # no checkpoint, no staging folder, no lock file


def test_the_output_is_checked_and_locked_before_any_work(user_files, monkeypatch):
    """A folder that is not a checkpoint, or one another process is writing, is refused
    before the first data set is made."""
    import fcntl

    tr = sys.modules["gzoo.train"]  # gzoo.train is also the name of the function

    def no_data(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(tr, "make_dataset", no_data)
    before = snapshot(user_files)
    with pytest.raises(CheckpointError, match="not a gzoo checkpoint folder"):
        train(tiny(), user_files / "repo", overwrite=True)
    with pytest.raises(CheckpointError, match="exists and is not a folder"):
        train(tiny(), user_files / "notes.txt", overwrite=True)
    fd = os.open(user_files / ".run.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = snapshot(user_files)
        with pytest.raises(CheckpointError, match="another process is writing"):
            train(tiny(), user_files / "run")
        assert snapshot(user_files) == before
    finally:
        os.close(fd)


def test_a_failed_run_leaves_nothing_behind(user_files, monkeypatch):
    tr = sys.modules["gzoo.train"]  # gzoo.train is also the name of the function

    def boom(self, *a, **k):
        names = [p.name for p in (user_files / "runs").iterdir()]
        assert ".run.lock" in names and any(n.startswith(".run.partial-") for n in names)
        raise RuntimeError("power cut")

    monkeypatch.setattr(tr._Run, "_attempt", boom)
    monkeypatch.setattr(tr._Run, "_population", boom)
    before = snapshot(user_files)
    for data in ("soups", "patterns"):
        with pytest.raises(RuntimeError, match="power cut"):
            train(tiny(data=data), user_files / "runs" / "run")
        assert snapshot(user_files) == before


def test_threads_are_set_recorded_and_restored(tmp_path):
    torch.set_num_threads(2)
    res = train(tiny(threads=1), tmp_path / "run")
    assert torch.get_num_threads() == 2 and res.threads == 1
    rec = load_checkpoint(tmp_path / "run").checkpoint.train
    assert rec["torch_threads"] == 1 and rec["threads"] == 1 and rec["cpu"]
    assert "--threads 1" in rec["command"]
    assert "Trained with 1 torch thread (`--threads 1`)" in (tmp_path / "run" /
                                                              "README.md").read_text()


def test_progress_without_a_terminal(monkeypatch, capsys):
    """Under a pipe or nohup: plain lines (here every update, GZOO_PROGRESS_SECONDS=0), for
    the data and for each attempt; none with progress=False."""
    monkeypatch.setenv("GZOO_PROGRESS_SECONDS", "0")
    train(tiny(restarts=1, steps=4, check_every=2, data="soups"))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(r"^data B3/S23: \d+/\d+ \(\d+ %\) steps of 6 boards 12×12", err, re.M)
    assert re.search(r"^attempt 1/2: 2/4 \(50 %\) loss [\d.e-]+ acc [\d.]+% wrong \d+/512 "
                     r"\[\d+ s\]$", err, re.M)
    assert re.search(r"^attempt 2/2: done", err, re.M)
    train(tiny(restarts=1, steps=4, check_every=2, data="patterns"))
    err = capsys.readouterr().err
    assert re.search(r"^patterns: \d/4 \(\d+ %\) net [1-5]/5 loss [\d.e-]+( acc [\d.]+% "
                     r"wrong \d+/512)? \[\d+ s\]$", err, re.M)
    train(tiny(steps=2), progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- distributed
def test_torchrun_two_processes(tmp_path):
    """Two CPU ranks (gloo): identical final weights on both, one checkpoint written."""
    out = tmp_path / "ckpt"
    hashes = tmp_path / "hash"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "gzoo", "train", "--rule", "B3/S23", "--model", "p4", "--width", "2",
        "--steps", "20", "--check-every", "10", "--restarts", "0", "--batch-size", "4",
        "--device", "cpu", "--quiet", "--out", str(out), "--weights-hash-file", str(hashes),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    h0 = (tmp_path / "hash.rank0").read_text()
    h1 = (tmp_path / "hash.rank1").read_text()
    assert len(h0.strip()) == 64 and h0 == h1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "hash.rank0", "hash.rank1"]
    model = load_checkpoint(out)
    assert weights_digest(model) == h0.strip()
    assert model.checkpoint.config["metrics"]["world_size"] == 2
    assert proc.stdout.count("B3/S23 · p4") == 1  # rank 0 alone reports


def test_data_follows_the_certified_receptive_field():
    from gzoo.train import resolve_data

    assert resolve_data(TrainConfig(model="p4")) == "patterns"
    assert resolve_data(TrainConfig(model="p8", model_kwargs={"backend": "e2cnn"})) == \
        "patterns"
    assert resolve_data(TrainConfig(model="small")) == "soups"
    assert resolve_data(TrainConfig(model="tiny", model_kwargs={"kernel_size": 3})) == \
        "patterns"  # a 3×3 plain CNN is local on the torus too
    assert resolve_data(TrainConfig(model="p4", data="soups")) == "soups"
    with pytest.raises(ValueError, match="receptive field bound 5 > 3"):
        resolve_data(TrainConfig(model="small", data="patterns"))
    with pytest.raises(ValueError, match="receptive field bound 5 > 3"):
        train(TrainConfig(model="small", data="patterns"))


def test_population_run_under_patterns_records_its_nets(tmp_path):
    cfg = tiny(model_kwargs={"width": 2}, steps=30, check_every=10, population=3, restarts=1,
               patience=10)
    res = train(cfg, tmp_path / "run")
    assert res.data == "patterns" and res.total_steps == len(res.history)
    draws = {r.restart for r in res.history}
    assert draws <= set(range(cfg.population + cfg.restarts))
    assert {r.seed for r in res.history} <= {1000 * d for d in range(4)}
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
             if s]
    assert [x["global_step"] for x in lines] == list(range(1, res.total_steps + 1))
    assert all("acc" in x for x in lines if x["global_step"] % 10 == 0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"][
        "data_used"] == "patterns"
