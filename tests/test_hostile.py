"""Hostile input, room by room: rules, boards, layers, checkpoints (load and save), command-line
options and inference. Each case asserts the error's type and that its message names the bad
value; the checkpoint and CLI cases also assert that nothing outside the checkpoint folder (and
for loading: nothing at all) was touched."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import snapshot
from gzoo.ca import RuleError, as_uint8_boards, step
from gzoo.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_pretrained,
    save_checkpoint,
    sha256_file,
)
from gzoo.cli import main
from gzoo.infer import infer_rule, infer_rule_from_data
from gzoo.layers import P4Conv, P4LiftConv
from gzoo.models import build_model

HAS_CUDA = torch.cuda.is_available()


def assert_error(error, needle, call, *args, **kwargs):
    """``call(*args, **kwargs)`` raises ``error``, whose message names the bad value
    (contains ``needle``); returns the message."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    assert needle in str(info.value), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------------- rules
@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "None"), (5, "5"), ("", "''"), ("B9/S", "'B9/S'"), ("B3\0/S23", r"'B3\x00/S23'"),
     ("B３/S23", "'B３/S23'"), ("B3/S23/C4", "'B3/S23/C4'")],
)
def test_rules(value, shown):
    assert_error(RuleError, f"invalid rule {shown}", step, torch.zeros(4, 4, dtype=torch.uint8),
                 value)


# ---------------------------------------------------------------------------- boards
@pytest.mark.parametrize(
    ("board", "error", "needle"),
    [
        (np.zeros((4, 4)), TypeError, "got ndarray"),
        ([[0, 1], [1, 0]], TypeError, "got list"),
        (torch.zeros(1, 1, 4, 4), ValueError, "got shape (1, 1, 4, 4)"),
        (torch.zeros(0, 4), ValueError, "got shape (0, 4)"),
        (torch.full((4, 4), 2), ValueError, "got value 2"),
        (torch.full((4, 4), float("nan")), ValueError, "got value nan"),
        (torch.zeros(4, 4, dtype=torch.complex64), TypeError, "got dtype torch.complex64"),
    ],
)
def test_boards(board, error, needle):
    assert_error(error, needle, as_uint8_boards, board)


# ---------------------------------------------------------------------------- layers
@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (lambda: P4Conv(2, 3, kernel_size=4), ValueError, "kernel_size must be a positive odd"),
        (lambda: P4Conv(2, 3, kernel_size=0), ValueError, "kernel_size must be a positive int, "
         "got 0"),
        (lambda: P4Conv(2, 3, kernel_size=2.5), TypeError, "got float 2.5"),
        (lambda: P4Conv(2, 3, kernel_size=True), TypeError, "got bool True"),
        (lambda: P4Conv(0, 3, kernel_size=3), ValueError, "in_channels must be a positive int, "
         "got 0"),
        (lambda: P4Conv(2, 3, 3, stride=0), ValueError, "stride must be a positive int, got 0"),
        (lambda: P4Conv(2, 3, 3, padding_mode="mirror"), ValueError, "got 'mirror'"),
        (lambda: P4Conv(2, 3, 3)(torch.zeros(1, 2, 8, 8)), ValueError, "got shape [1, 2, 8, 8]"),
        (lambda: P4Conv(2, 3, 3)(torch.zeros(1, 3, 4, 8, 8)), ValueError,
         "got shape [1, 3, 4, 8, 8]"),
        (lambda: P4LiftConv(2, 3, 3)(torch.zeros(1, 2, 8, 8, dtype=torch.long)), TypeError,
         "got dtype torch.int64"),
    ],
)
def test_layers(make, error, needle):
    assert_error(error, needle, make)


# ---------------------------------------------------------------------------- inference
@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: infer_rule_from_data([[0, 1], [1, 0]]), TypeError, "got list"),
        (lambda: infer_rule_from_data(torch.zeros(1, 8, 8)), ValueError, "got shape [1, 8, 8]"),
        (lambda: infer_rule_from_data(torch.full((3, 8, 8), 2)), ValueError, "got value 2"),
        (lambda: infer_rule_from_data(torch.zeros(3, 8, 8), max_noise=0.7), ValueError,
         "got 0.7"),
        (lambda: infer_rule_from_data(torch.zeros(3, 8, 8), family="hex"), ValueError,
         "got 'hex'"),
        (lambda: infer_rule("b3s23_p4"), TypeError, "got str 'b3s23_p4'"),
        (lambda: infer_rule(torch.nn.Linear(3, 3)), ValueError, "Linear failed on boards"),
        (lambda: infer_rule(torch.nn.Identity(), "hex"), ValueError, "got 'hex'"),
    ],
)
def test_inference(call, error, needle):
    assert_error(error, needle, call)


# ---------------------------------------------------------------------------- checkpoints: load
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_checkpoint(build_model("p4"), tmp_path_factory.mktemp("ck") / "c", rule="B3/S23")


@pytest.fixture
def ckpt(saved, tmp_path):
    """A fresh copy of a good checkpoint, with a user's file beside it."""
    (tmp_path / "notes.txt").write_text("mine\n")
    return shutil.copytree(saved, tmp_path / "c")


def set_config(folder, text):
    (folder / CONFIG_FILE).write_text(text)


def edit(folder, **changes):
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    for key, value in changes.items():
        target = cfg
        *path, last = key.split(".")
        for k in path:
            target = target[k]
        target[last] = value
    set_config(folder, json.dumps(cfg))


def nested(folder):
    set_config(folder, "[" * 100_000 + "]" * 100_000)
    return "config.json: bad JSON: nested too deeply"


def long_number(folder):
    text = (folder / CONFIG_FILE).read_text().replace("{", '{"big": ' + "9" * 5000 + ", ", 1)
    set_config(folder, text)
    return "config.json: bad JSON: Exceeds the limit (4300 digits)"


def huge_width(folder):
    edit(folder, **{"model.kwargs.width": 1_000_000})
    return "GCNN(group='p4', width=1000000, depth=1, backend='gzoo', pool='max') would have"


def huge_depth(folder):
    edit(folder, **{"model.kwargs.depth": 1_000_000})
    return "depth must be an int in 0..64, got 1000000"


def string_width(folder):
    edit(folder, **{"model.kwargs.width": "4"})
    return "width must be a positive int, got str '4'"


def metrics_list(folder):
    edit(folder, metrics=[1, 2])
    return "'metrics' must be an object or null, got [1, 2]"


def certificate_string(folder):
    edit(folder, certificate="proved")
    return "'certificate' must be an object or null, got 'proved'"


def big_config(folder):
    with open(folder / CONFIG_FILE, "a") as f:
        f.write(" " * (4 << 20))
    return "bytes: too large for a gzoo config"


def not_utf8(folder):
    (folder / CONFIG_FILE).write_bytes(b"\xff\xfe{}")
    return "bad JSON: not UTF-8 text"


def truncated_weights(folder):
    data = (folder / WEIGHTS_FILE).read_bytes()[:40]
    (folder / WEIGHTS_FILE).write_bytes(data)
    edit(folder, weights_sha256=sha256_file(folder / WEIGHTS_FILE))
    return "model.safetensors: unreadable safetensors file"


def extra_tensor(folder):
    from safetensors.torch import load_file

    state = load_file(folder / WEIGHTS_FILE) | {"evil": torch.zeros(10)}
    save_file(state, folder / WEIGHTS_FILE)
    edit(folder, weights_sha256=sha256_file(folder / WEIGHTS_FILE))
    return "unexpected ['evil']"


def weights_folder(folder):
    (folder / WEIGHTS_FILE).unlink()
    (folder / WEIGHTS_FILE).mkdir()
    return "model.safetensors: missing file"


def wrong_group(folder):
    edit(folder, group="p8")
    return "inconsistent config: group is 'p8'"


def wrong_size(folder):
    edit(folder, n_params=10**40)
    return "inconsistent config: n_params is 10000000000000000000000000000000000000000"


@pytest.mark.parametrize("spoil", [nested, long_number, huge_width, huge_depth, string_width,
                                   metrics_list, certificate_string, big_config, not_utf8,
                                   truncated_weights, extra_tensor, weights_folder, wrong_group,
                                   wrong_size])
def test_load(ckpt, spoil):
    """Each spoiled checkpoint is one CheckpointError naming the file and the bad value, at
    once (no terabyte allocation, no hang), and loading changes nothing."""
    needle = spoil(ckpt)
    before = snapshot(ckpt.parent)
    assert str(ckpt) in assert_error(CheckpointError, needle, load_pretrained, ckpt)
    assert snapshot(ckpt.parent) == before


@pytest.mark.parametrize(
    ("device", "needle"),
    [("banana", "got 'banana'"), ("cuda:99", "'cuda:99'"), ("tpu", "got 'tpu'"),
     (5, "got int 5")] + ([] if HAS_CUDA else [("cuda", "'cuda' requested but CUDA is not")]),
)
def test_load_onto_a_device_that_is_not_here(ckpt, device, needle):
    assert str(ckpt) in assert_error(CheckpointError, needle, load_pretrained, ckpt,
                                     device=device)


@pytest.mark.parametrize(
    ("name", "error", "needle"),
    [(5, TypeError, "got int 5"), ("", ValueError, "got ''"), ("a\0b", ValueError, r"'a\x00b'"),
     ("x" * 5000, CheckpointError, "File name too long")],
)
def test_load_names(name, error, needle):
    assert_error(error, needle, load_pretrained, name)


# ---------------------------------------------------------------------------- checkpoints: save
@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda f: save_checkpoint(torch.nn.Linear(2, 2), f / "c", rule="B3/S23"),
         CheckpointError, "got Linear"),
        (lambda f: save_checkpoint(build_model("p4"), f / "c", rule="B9/S"), RuleError, "'B9/S'"),
        (lambda f: save_checkpoint(build_model("p4"), 5, rule="B3/S23"), TypeError, "got int 5"),
        (lambda f: save_checkpoint(build_model("p4"), "", rule="B3/S23"), ValueError, "got ''"),
        (lambda f: save_checkpoint(build_model("p4"), f / "c", rule="B3/S23",
                                   extra_files={"../escape": f / "notes.txt"}),
         CheckpointError, "bad extra file name '../escape'"),
        (lambda f: save_checkpoint(build_model("p4"), f / "c", rule="B3/S23",
                                   extra_files={"log.txt": f / "missing.txt"}),
         CheckpointError, "no such file"),
        (lambda f: save_checkpoint(build_model("p4"), f / "notes.txt", rule="B3/S23",
                                   overwrite=True), CheckpointError, "exists and is not a folder"),
        (lambda f: save_checkpoint(build_model("p4"), f, rule="B3/S23", overwrite=True),
         CheckpointError, "working directory or one of its parents"),
        (lambda f: save_checkpoint(build_model("p4"), f / ("x" * 300), rule="B3/S23"),
         CheckpointError, "File name too long"),
    ],
)
def test_save(user_files, monkeypatch, call, error, needle):
    monkeypatch.chdir(user_files)
    before = snapshot(user_files)
    assert_error(error, needle, call, user_files)
    assert snapshot(user_files) == before


@pytest.mark.parametrize(
    ("plant", "needle"),
    [(lambda lock, f: lock.symlink_to(f / "notes.txt"),
      "cannot lock it: Too many levels of symbolic links"),
     (lambda lock, f: lock.write_text("my data\n"), ".c.lock exists and is not a gzoo lock")],
)
def test_a_planted_lock_file_is_never_written_through(user_files, plant, needle):
    plant(user_files / ".c.lock", user_files)
    before = snapshot(user_files)
    assert_error(CheckpointError, needle, save_checkpoint, build_model("p4"), user_files / "c",
                 rule="B3/S23")
    assert snapshot(user_files) == before


# ---------------------------------------------------------------------------- CLI options
NO_CUDA = [] if HAS_CUDA else [
    (["eval", "b3s23_p4", "--device", "cuda"], ["'cuda' requested but CUDA is not available"]),
    (["simulate", "--device", "cuda:0", "--out", "x.png"], ["'cuda:0'"]),
]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["simulate", "--fps", "0", "--out", "x.gif"], ["--fps", "got 0"]),
        (["simulate", "--fps", "-5", "--out", "x.gif"], ["--fps", "got -5"]),
        (["simulate", "--fps", "1000", "--out", "x.gif"], ["--fps", "1..100, got 1000"]),
        (["simulate", "--frames", "-2", "--out", "x.png"], ["--frames", "got -2"]),
        (["simulate", "--frames", "1e3", "--out", "x.png"], ["--frames", "got '1e3'"]),
        (["simulate", "--seed", str(2**70), "--out", "x.png"], ["--seed", f"got {2**70}"]),
        (["simulate", "--seed", "-1", "--out", "x.png"], ["--seed", "got -1"]),
        (["simulate", "--density", "1.5", "--out", "x.png"], ["--density", "got 1.5"]),
        (["simulate", "--density", "nan", "--out", "x.png"], ["--density", "got nan"]),
        (["simulate", "--size", "0", "--out", "x.png"], ["--size", "got 0"]),
        (["simulate", "--size", "ten", "--out", "x.png"], ["--size", "got 'ten'"]),
        (["simulate", "--steps", "-1", "--out", "x.png"], ["--steps", "got -1"]),
        (["simulate", "--out", "x.jpg"], ["--out", "got 'x.jpg'"]),
        (["simulate", "--out", "folder.png"], ["'folder.png' is a folder"]),
        (["simulate", "--out", "notes.txt/x.png"], ["'notes.txt/x.png'", "cannot write into"]),
        (["simulate", "--rule", "B9/S", "--out", "x.png"], ["'B9/S'"]),
        (["simulate", "--model", "nope", "--out", "x.png"], ["nope", "not an installed zoo name"]),
        (["eval", "b3s23_p4", "--device", "banana"], ["got 'banana'"]),
        (["eval", "b3s23_p4", "--boards", "0"], ["--boards", "got 0"]),
        (["eval", "b3s23_p4", "--rule", "B3/S9"], ["'B3/S9'"]),
        (["eval", "repo"], ["repo", "config.json: missing file"]),
        (["demo", "--model", "nope"], ["nope", "not an installed zoo name"]),
        (["demo", "--density", "2"], ["--density", "got 2.0"]),
        (["demo", "--out", "demo.svg"], ["--out", "got 'demo.svg'"]),
        (["show", "b3s23_p4", "--out", "x.gif"], ["--out", "got 'x.gif'"]),
        (["infer-rule", "b3s23_p4", "--steps", "-1"], ["--steps", "got -1"]),
        (["infer-rule", "b3s23_p4", "--neighbourhood", "hex"], ["'hex'"]),
        (["infer-rule", "b3s23_p4", "--family", "hex"], ["'hex'"]),
        (["symmetry", "--rule", "B3/S23", "--boards", "0"], ["--boards", "got 0"]),
        (["symmetry", "--rule", "B3/S23", "--steps", "0"], ["--steps", "got 0"]),
        (["symmetry", "b3s23_p4", "--device", "banana"], ["got 'banana'"]),
        (["symmetry", "--data", "notes.txt"], [".npy or .pt", "'notes.txt'"]),
        (["simulate", "--pattern", "nope.rle", "--out", "x.png"], ["nope.rle"]),
        (["equivariance", "--seed", "-1"], ["--seed", "got -1"]),
        (["train", "--out", "o", "--lr", "inf"], ["lr must be a finite number > 0, got inf"]),
        (["train", "--out", "o", "--lr", "nan"], ["lr must be a finite number > 0, got nan"]),
        (["train", "--out", "o", "--l1", "-1"], ["l1 must be a finite number ≥ 0, got -1.0"]),
        (["train", "--out", "o", "--seed", str(2**64)], ["seed must be an int in 0.."]),
        (["train", "--out", "o", "--batch-size", "0"], ["batch_size must be a positive int, "
                                                        "got 0"]),
        (["train", "--out", "o", "--threads", "0"], ["threads must be a positive int, got 0"]),
        (["train", "--out", "o", "--restarts", "-1"], ["restarts must be an int in 0..1000000"]),
        (["train", "--out", "o", "--width", "0"], ["width must be a positive int, got 0"]),
        (["train", "--out", "o", "--width", "1000000"], ["width=1000000", "would have"]),
        (["train", "--out", "o", "--depth", "1000000"], ["depth must be an int in 0..64"]),
        (["train", "--out", "o", "--device", "cuda:99"], ["'cuda:99'"]),
        (["train", "--out", "o", "--model", "hexnet"], ["unknown model 'hexnet'"]),
        (["train", "--out", "o", "--population", "100000000"],
         ["population must be an int in 1..1024, got 100000000"]),
        (["train", "--out", "o", "--margin", "-1"], ["margin must be a finite number ≥ 0"]),
        (["train", "--out", "o", "--hinge", "nan"], ["hinge must be a finite number ≥ 0"]),
        (["train", "--out", "o", "--data", "bogus"], ["data must be one of", "'bogus'"]),
        (["train", "--out", "o", "--model", "small", "--data", "patterns"],
         ["data='patterns' needs", "small has: receptive field bound 5 > 3"]),
        (["atlas", "--out", "a", "--rules", str(10**20)], ["--rules", "1..1000000"]),
        (["atlas", "--out", "a", "--in-flight", "2000"], ["2000 × 4 nets", "at most 4096"]),
        (["atlas", "--out", "a", "--groups", "p6"], ["--groups", "'p6'"]),
        (["atlas", "--out", "notes.txt"], ["notes.txt exists and is not a folder"]),
        (["atlas", "--out", "repo"], ["holds other files and no atlas.json"]),
        (["train", "--out", "repo", "--overwrite"], ["repo", "not a gzoo checkpoint folder"]),
        (["train", "--out", "notes.txt"], ["notes.txt", "exists and is not a folder"]),
        (["train", "--out", "."], ["working directory"]),
        (["train", "--out", ""], ["got ''"]),
        *NO_CUDA,
    ],
)
def test_cli_options(user_files, monkeypatch, capsys, argv, needles):
    """One line on stderr, exit status 2, the bad value named — and nothing written."""
    (user_files / "folder.png").mkdir()
    monkeypatch.chdir(user_files)
    before = snapshot(user_files)
    try:
        code = main(argv)
    except SystemExit as e:  # a usage error, from argparse
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.match(rf"gzoo {argv[0]}: error: ", lines[0]), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert snapshot(user_files) == before
    assert os.getcwd() == str(user_files)
