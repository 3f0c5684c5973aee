"""The ``gzoo`` command line: simulate, train, eval, zoo, demo, and one-line errors."""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gzoo.zoo
from conftest import snapshot
from gzoo.checkpoint import load_checkpoint, save_checkpoint
from gzoo.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # training is reproducible per thread count


def run(capsys, *argv):
    """Exit status, stdout and stderr of ``gzoo argv`` (usage errors exit from argparse)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------------------- simulate
def test_simulate_png(tmp_path, capsys):
    out = tmp_path / "run.png"
    code, text, _ = run(capsys, "simulate", "--rule", "B36/S23", "--size", 24, "--steps", 10,
                        "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "B36/S23 (HighLife): 24×24, 10 steps" in text


def test_simulate_gif(tmp_path, capsys):
    out = tmp_path / "run.gif"
    code, _, _ = run(capsys, "simulate", "--rule", "B3/S23", "--size", 16, "--steps", 4,
                     "--out", out)
    assert code == 0 and out.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--rule", "B9/S23"], ["gzoo simulate: error:", "'B9/S23'", "out of range"]),
        (["--out", "run.jpg"], ["must end in .png or .gif"]),
        (["--size", "0"], ["--size"]),
    ],
)
def test_simulate_errors_are_one_line(tmp_path, capsys, args, needles):
    argv = ["simulate", "--out", tmp_path / "x.png", *args]
    code, _, err = run(capsys, *argv)
    assert code == 2
    one_line_error(err, *needles)
    assert not (tmp_path / "x.png").exists()


def test_every_option_has_help_text():
    """Walk the parser: every subcommand and every option of each says what it is."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values())
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:  # a test hook, hidden
                continue
            assert action.help and action.help.strip(), (name, action.option_strings)


def test_simulate_refuses_what_does_not_fit_in_memory(tmp_path, capsys, monkeypatch):
    import gzoo._checks

    monkeypatch.setattr(gzoo._checks, "available_memory", lambda device=None: 10**6)
    out = tmp_path / "big.png"
    code, _, err = run(capsys, "simulate", "--size", 2000, "--out", out)
    assert code == 2
    one_line_error(err, "simulating a 2000×2000 board needs about",
                   "MB of memory, but only 1.0 MB is available", "lower --size")
    need = float(re.search(r"needs about ([\d.]+) MB", err)[1])
    assert 2000**2 / 1e6 <= need < 2000**2 * 30 / 1e6  # about the board, not 100 frames of it
    assert not out.exists()


@pytest.mark.parametrize("argv", [["demo", "--size", 500],
                                  ["show", "b3s23_p4", "--out", "x.png", "--size", 500],
                                  ["eval", "b3s23_p4", "--size", 500]])
def test_rollouts_and_evaluations_check_memory_first(tmp_path, capsys, monkeypatch, argv):
    import gzoo._checks

    monkeypatch.setattr(gzoo._checks, "available_memory", lambda device=None: 10**6)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    one_line_error(err, "500×500", "needs about", "but only 1.0 MB is available", "lower --size")
    assert list(tmp_path.iterdir()) == []


def test_simulate_keeps_pooled_pictures_of_a_large_board(tmp_path, capsys):
    out = tmp_path / "big.png"
    code, text, _ = run(capsys, "simulate", "--size", 600, "--steps", 2, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "note: pictures max-pooled 2×2 to 300×300 (at most 512 cells a side)" in text
    assert re.search(r"600×600, 2 steps, final density 0\.\d{3}", text)


def test_gif_frames_are_capped_and_said(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import gzoo.plots

    monkeypatch.setattr(gzoo.plots, "MAX_GIF_FRAMES", 5)
    out = tmp_path / "run.gif"
    code, text, _ = run(capsys, "simulate", "--size", 12, "--steps", 20, "--out", out)
    assert code == 0
    assert "note: GIF of 5 of the 21 steps, evenly spaced (at most 5 frames)" in text
    with Image.open(out) as gif:
        assert gif.n_frames == 5


def test_progress_lines_under_a_pipe(tmp_path, capsys, monkeypatch):
    """stderr is not a terminal here: plain progress lines (every update with
    GZOO_PROGRESS_SECONDS=0) for the simulation and the GIF; none with --quiet."""
    monkeypatch.setenv("GZOO_PROGRESS_SECONDS", "0")
    code, _, err = run(capsys, "simulate", "--size", 16, "--steps", 6, "--out",
                       tmp_path / "a.gif")
    assert code == 0 and "\r" not in err
    assert "simulate 16×16: 6/6 (100 %) steps" in err
    assert re.search(r"^gif: 7/7 \(100 %\) frames → a\.gif", err, re.M)
    code, _, err = run(capsys, "simulate", "--size", 16, "--steps", 6, "--quiet", "--out",
                       tmp_path / "b.gif")
    assert code == 0 and err == ""


def test_unexpected_errors_are_one_line_with_a_way_to_the_traceback(capsys, monkeypatch):
    import gzoo.cli

    def broken(args):
        raise KeyError("surprise")

    monkeypatch.setattr(gzoo.cli, "_zoo", broken)
    code, _, err = run(capsys, "zoo")
    assert code == 2
    one_line_error(err, "gzoo zoo: internal error: KeyError: 'surprise'", "GZOO_TRACEBACK=1")
    monkeypatch.setenv("GZOO_TRACEBACK", "1")
    with pytest.raises(KeyError, match="surprise"):
        main(["zoo"])


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--rule", "B3/S23"])
    assert info.value.code == 2
    one_line_error(capsys.readouterr().err, "--out", "--help")


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "gzoo", "eval", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    one_line_error(proc.stderr, "gzoo eval: error:", str(tmp_path / "missing"),
                   "no such checkpoint")


# ---------------------------------------------------------------------------- train / eval
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A p8 model of B36/S23 trained through the CLI (a seed that gets exact quickly)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("cli") / "b36s23_p8"
    code = main(["train", "--rule", "B36/S23", "--model", "p8", "--steps", "1500", "--seed",
                 "0", "--restarts", "0", "--out", str(folder), "--quiet"])
    assert code == 0
    return folder


def test_train_writes_an_exact_checkpoint(trained):
    model = load_checkpoint(trained)
    assert model.checkpoint.config["metrics"]["exact"] is True
    assert model.checkpoint.config["train"]["model"] == "p8" and model.n_params == 218
    assert "gzoo train --rule B36/S23 --model p8" in (trained / "README.md").read_text()


def test_train_refuses_existing_folder(trained, capsys):
    code, _, err = run(capsys, "train", "--out", trained, "--steps", 5)
    assert code == 2
    one_line_error(err, str(trained), "already exists", "--overwrite")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--model", "hexnet"], ["unknown model 'hexnet'"]),
        (["--model", "multiscale", "--width", "3"], ["takes no argument(s) ['width']"]),
        (["--rule", "B3/S23/C4"], ["Generations"]),
        (["--steps", "0"], ["steps must be a positive int"]),
    ],
)
def test_train_argument_errors(tmp_path, capsys, args, needles):
    code, _, err = run(capsys, "train", "--out", tmp_path / "o", *args)
    assert code == 2
    one_line_error(err, "gzoo train: error:", *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_train_on_missing_cuda_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--device", "cuda", "--steps", 2, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_train_never_replaces_a_folder_that_is_not_a_checkpoint(user_files, capsys):
    before = snapshot(user_files)
    code, _, err = run(capsys, "train", "--out", user_files / "repo", "--overwrite", "--steps",
                       5)
    assert code == 2
    one_line_error(err, "gzoo train: error:", str(user_files / "repo"),
                   "not a gzoo checkpoint folder", "left alone")
    assert snapshot(user_files) == before


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_is_refused(user_files, tmp_path_factory,
                                                           capsys):
    """A real second process: it trains into runs/x; this one is refused at once; an
    interrupted run leaves nothing behind (no checkpoint, staging folder or lock)."""
    out = user_files / "runs" / "x"
    log = tmp_path_factory.mktemp("log") / "stderr.txt"
    before = snapshot(user_files)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "GZOO_PROGRESS_SECONDS": "0.5"}
    with open(log, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gzoo", "train", "--rule", "B3/S23", "--model", "p4",
             "--width", "2", "--data", "soups", "--steps", "1000000", "--check-every", "1000000",
             "--restarts", "0", "--out", str(out)],
            env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline = time.monotonic() + 180
        while "attempt 1/1: " not in log.read_text():  # training has started
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.2)
        t0 = time.monotonic()
        code, _, err = run(capsys, "train", "--rule", "B3/S23", "--out", out, "--steps", 5)
        assert code == 2 and time.monotonic() - t0 < 30  # at once, not after training
        one_line_error(err, str(out), f"another process (process {proc.pid}) is writing")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    stderr = log.read_text()
    assert proc.returncode == 130 and "gzoo train: interrupted" in stderr, stderr[-2000:]
    assert snapshot(user_files) == before


def test_train_summary_counts_attempts(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--rule", "B3/S23", "--model", "p4", "--width", 2,
                       "--steps", 4, "--check-every", 2, "--restarts", 2, "--seed", 1,
                       "--out", tmp_path / "t", "--quiet")
    assert code == 0
    used = load_checkpoint(tmp_path / "t").checkpoint.metrics["restarts_used"]
    assert f"seed {1 + 1000 * used} (net {used + 1} of " in out  # the patterns recipe
    code, out, _ = run(capsys, "train", "--rule", "B3/S23", "--model", "p4", "--width", 2,
                       "--data", "soups", "--steps", 4, "--check-every", 2, "--restarts", 2,
                       "--seed", 1, "--out", tmp_path / "s", "--quiet")
    assert code == 0
    used = load_checkpoint(tmp_path / "s").checkpoint.metrics["restarts_used"]
    assert f"seed {1 + 1000 * used} (attempt {used + 1} of 3)" in out


def test_train_summary_line(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--rule", "B3/S23", "--model", "p4", "--width", 2,
                       "--steps", 4, "--check-every", 2, "--restarts", 0, "--out",
                       tmp_path / "t", "--quiet")
    assert code == 0
    assert re.match(r"B3/S23 · p4 \(\d+ params\): (NOT )?exact — \d+/512 neighbourhoods wrong", out)
    assert str(tmp_path / "t") in out and (tmp_path / "t" / "config.json").is_file()


def test_eval(trained, capsys):
    code, out, _ = run(capsys, "eval", trained, "--size", 32, "--steps", 16, "--boards", 4)
    assert code == 0
    lines = out.splitlines()
    assert "GCNN(group='p8'" in lines[0] and "rule B36/S23 (HighLife)" in lines[0]
    assert lines[1] == "exactness:         exact: 0/512 patterns wrong (exhaustive)"
    assert lines[2].startswith("held-out accuracy: 100.0000 %")
    assert lines[3].startswith("rollout agreement: 100.00 %") and "identical" in lines[3]


def test_eval_against_another_rule(trained, capsys):
    code, out, _ = run(capsys, "eval", trained, "--rule", "B3/S23", "--size", 16, "--steps",
                       4, "--boards", 2)
    assert code == 0
    assert "not exact: 28/512 patterns wrong (exhaustive); by (state·count): dead·6: 28" in out


# ---------------------------------------------------------------------------- zoo / demo
def test_zoo_empty_and_listed(tmp_path, monkeypatch, capsys, trained):
    import shutil

    monkeypatch.setattr(gzoo.zoo, "ZOO_DIR", tmp_path)
    code, out, _ = run(capsys, "zoo")
    assert code == 0 and out.strip() == "no checkpoints installed in gzoo.zoo"
    shutil.copytree(trained, tmp_path / "b36s23_p8")
    code, out, _ = run(capsys, "zoo")
    head, row = out.strip().splitlines()
    assert head.split() == ["name", "task", "rule", "group", "params", "exact", "accuracy",
                            "test", "error"]
    assert row.split() == ["b36s23_p8", "cellular-automaton", "B36/S23", "p8", "218", "yes",
                           "100.00", "%", "-"]
    code, out, _ = run(capsys, "eval", "b36s23_p8", "--size", 16, "--steps", 2, "--boards", 2)
    assert code == 0 and "exact: 0/512" in out


def test_simulate_with_a_model(trained, tmp_path, capsys):
    out = tmp_path / "m.png"
    code, text, _ = run(capsys, "simulate", "--model", trained, "--size", 16, "--steps", 3,
                        "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG and "model of B36/S23" in text


def test_equivariance_table(capsys):
    code, out, _ = run(capsys, "equivariance")
    assert code == 0 and "P8Conv" in out and "float64" in out


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("trained", ["identical at every step", "rule read back from the network: rule B36/S23",
                     "45° ring rotation of a 3×3 stencil"]),
        ("b3s23_small", ["identical at every step", "rule read back from the network: rule B3/S23",
                         "lifting layer: does not apply (SimpleCNNSmall has no lifting",
                         "whole network: does not apply (SimpleCNNSmall declares no symmetry"]),
    ],
)
def test_demo(model, expected, request, tmp_path, capsys):
    """The demo on a freshly trained HighLife p8 checkpoint (the zoo's own is tested in
    test_zoo.py), and on b3s23_small, a shipped plain CNN: rollout agreement, the rule read
    back, the equivariance probes that apply (and which do not), a PNG."""
    source = request.getfixturevalue("trained") if model == "trained" else model
    out = tmp_path / "demo.png"
    code, text, err = run(capsys, "demo", "--model", source, "--size", 24, "--steps", 20,
                          "--out", out)
    assert code == 0, text + err
    for needle in expected:
        assert needle in text, needle
    assert out.read_bytes()[:8] == PNG


def test_infer_rule_and_show(trained, tmp_path, capsys):
    code, text, _ = run(capsys, "infer-rule", trained, "--steps", 4)
    assert code == 0 and "rule B36/S23" in text and "matches the rule it was trained on" in text
    assert "margin min" in text and "    B6 " in text
    code, text, _ = run(capsys, "infer-rule", trained, "--neighbourhood", "von_neumann")
    assert code == 1 and "not outer-totalistic" in text
    fig = tmp_path / "show.png"
    code, text, _ = run(capsys, "show", trained, "--out", fig, "--size", 16, "--steps", 4)
    assert code == 0 and fig.read_bytes()[:8] == PNG


def test_infer_rule_says_when_there_is_no_rule(tmp_path, capsys):
    """A 5×5 network that copies the cell two up and two left: no B/S rule, and why."""
    from gzoo.models import build_model

    model = build_model("tiny")  # 5×5 conv → ReLU → 1×1 readout
    first, readout = model.net[0], model.net[-1]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        first.weight[0, 1, 0, 0] = 1.0  # h = [corner cell alive]
        readout.weight[1, 0] = 2.0  # logit alive = 2h, logit dead = 1
        readout.bias[0] = 1.0
    folder = save_checkpoint(model, tmp_path / "corner", rule="B3/S23")
    code, text, _ = run(capsys, "infer-rule", folder, "--steps", 2)
    assert code == 1
    assert "no rule: the answer on" in text and "depends on cells outside the 3×3 block" in text
    assert "no rule inferred (the answer on" in text
    assert "the checkpoint says it was trained on B3/S23" in text


def test_infer_rule_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "infer-rule", tmp_path / "nope")
    assert code == 2
    one_line_error(err, "nope")


# ---------------------------------------------------------------------- rule families (issue 13)
def test_symmetry_command_for_a_rule_a_checkpoint_and_saved_data(tmp_path, capsys):
    import numpy as np

    from gzoo.ca import simulate

    assert main(["symmetry", "--rule", "B3/S2-i34q", "--boards", "4", "--size", "24"]) == 0
    out = capsys.readouterr().out
    assert "symmetry D4 but not the 45° ring" in out and "recommended model: p4m" in out
    assert main(["symmetry", "b13s012v_p4m"]) == 0
    assert "from model" in capsys.readouterr().out
    soups = torch.rand(4, 24, 24, generator=torch.Generator().manual_seed(0)) < 0.4
    np.save(tmp_path / "h.npy", simulate(soups, "B3/S23", 3).numpy())
    assert main(["symmetry", "--data", str(tmp_path / "h.npy")]) == 0
    assert "recommended model: p8" in capsys.readouterr().out
    assert main(["symmetry"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["symmetry", "--data", str(tmp_path / "nope.csv")]) == 2
    assert ".npy or .pt" in capsys.readouterr().err


def test_simulate_runs_an_rle_pattern(tmp_path, capsys):
    rle = tmp_path / "blinker.rle"
    rle.write_text("x = 3, y = 1, rule = B3/S23\n3o!\n")
    out = tmp_path / "b.png"
    assert main(["simulate", "--pattern", str(rle), "--steps", "4", "--size", "9",
                 "--out", str(out)]) == 0
    assert out.is_file() and "9×9" in capsys.readouterr().out
    assert main(["simulate", "--pattern", "replicator", "--rule", "B3/S23", "--steps", "2",
                 "--out", str(tmp_path / "r.png")]) == 0
    assert "the pattern's own rule is B36/S23" in capsys.readouterr().out
    bad = tmp_path / "bad.rle"
    bad.write_text("x = 2, y = 1\n5o!\n")
    assert main(["simulate", "--pattern", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "line 2, column 2" in capsys.readouterr().err


def test_train_says_when_the_group_cannot_represent_the_rule(tmp_path, capsys):
    """A chiral rule (rotations only) on p4m: the floor is said before training and in the
    summary; the same rule on p4, whose symmetries it has, gets no such note."""
    import random

    from gzoo.ca import Rule, get_family
    from gzoo.verify import symmetry_floor

    fam = get_family("rotational")
    rng = random.Random(3)
    rule = Rule.from_table(fam.table([rng.getrandbits(1) for _ in range(fam.n_classes)]))
    floor = symmetry_floor(rule, "p4m")
    assert floor > 0 and symmetry_floor(rule, "p4") == 0
    args = ["train", "--rule", str(rule), "--width", 2, "--steps", 4, "--restarts", 0, "--quiet"]
    code, out, err = run(capsys, *args, "--model", "p4m", "--out", tmp_path / "m")
    assert code == 0
    assert f"no p4m network can be exact on {rule}: its symmetry floor is {floor}/512" in err
    assert f"(symmetry floor {floor}/512: no p4m net can do better)" in out
    code, out, err = run(capsys, *args, "--model", "p4", "--out", tmp_path / "r")
    assert code == 0 and "floor" not in err + out
