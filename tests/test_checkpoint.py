"""Checkpoint folders: round trips, the model card, zoo names, and every loading failure."""

import dataclasses
import json
import os
import re
import stat

import pytest
import torch
from safetensors.torch import save_file

import gzoo.zoo
from conftest import snapshot
from gzoo.ca import Rule
from gzoo.checkpoint import (
    CONFIG_FILE,
    README_FILE,
    TASK_CA,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
    sha256_file,
    zoo_entries,
)
from gzoo.models import build_model


def boards(seed=0, shape=(3, 12, 10)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, shape, generator=g, dtype=torch.uint8)


def randomised(model):
    """Non-default weights and batch-norm statistics, so a round trip has something to keep."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.copy_(torch.rand_like(b) + 0.5)
    return model.eval()


def save(model, folder, rule="B36/S23", **kw):
    kw.setdefault("metrics", {"exact": True, "n_wrong": 0, "accuracy": 1.0, "seconds": 1.5,
                              "steps_run": 200, "method": "exhaustive"})
    kw.setdefault("train_config", {"seed": 3, "seed_used": 3, "device": "cpu",
                                   "command": "gzoo train --rule B36/S23 --model p8 --out X"})
    return save_checkpoint(model, folder, rule=rule, **kw)


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [("p8", {}), ("p4", {"width": 3, "depth": 2}), ("tiny", {}), ("multiscale", {}),
     ("p4m", {"backend": "e2cnn", "width": 2})],
)
def test_round_trip_identical_outputs(tmp_path, kind, kwargs):
    model = randomised(build_model(kind, **kwargs))
    folder = save(model, tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CONFIG_FILE, README_FILE, WEIGHTS_FILE])
    loaded = load_pretrained(str(folder))
    assert type(loaded) is type(model) and not loaded.training
    x = boards()
    torch.testing.assert_close(
        loaded(torch.nn.functional.one_hot(x.long(), 2).permute(0, 3, 1, 2).float()),
        model(torch.nn.functional.one_hot(x.long(), 2).permute(0, 3, 1, 2).float()),
        rtol=0, atol=0,
    )
    assert torch.equal(loaded.step(x), model.step(x))
    assert loaded.checkpoint.rule == Rule.parse("B36/S23")
    assert loaded.checkpoint.config["model"] == {"class": type(model).__name__,
                                      "kwargs": model.init_kwargs()}


def test_checkpoint_record_travels_beside_the_weights(tmp_path):
    """The loaded model carries one read-only record; the module's weights are untouched."""
    model = randomised(build_model("p4"))
    assert model.checkpoint is None  # built in code
    folder = save(model, tmp_path / "b36s23_p4")
    loaded = load_pretrained(folder)
    info = loaded.checkpoint
    assert isinstance(info, CheckpointInfo)
    assert (info.path, info.name, info.task) == (folder, "b36s23_p4", TASK_CA)
    assert info.rule == Rule.parse("B36/S23")
    assert info.metrics["exact"] is True and info.train["seed_used"] == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.rule = Rule.parse("B3/S23")  # type: ignore[misc]
    info.config["rule"] = "B3/S23"  # a copy: the record does not change
    assert info.config["rule"] == "B36/S23" and info.rule == Rule.parse("B36/S23")
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_task_defaults_to_cellular_automaton_and_unknown_tasks_fail(ckpt):
    cfg = json.loads((ckpt / CONFIG_FILE).read_text())
    assert cfg["task"] == TASK_CA
    del cfg["task"]  # configs written before tasks existed (the shipped zoo's)
    (ckpt / CONFIG_FILE).write_text(json.dumps(cfg))
    assert load_pretrained(ckpt).checkpoint.task == TASK_CA
    edit_config(ckpt, task="protein-folding")
    with pytest.raises(CheckpointError, match="unknown task 'protein-folding'"):
        load_pretrained(ckpt)


def test_config_contents(tmp_path):
    import gzoo

    model = randomised(build_model("p8"))
    folder = save(model, tmp_path / "c")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["format"] == "gzoo-checkpoint" and cfg["format_version"] == 1
    assert cfg["gzoo_version"] == gzoo.__version__
    assert cfg["rule"] == "B36/S23" and cfg["group"] == "p8" and cfg["n_params"] == 218
    assert cfg["weights_sha256"] == sha256_file(folder / WEIGHTS_FILE)
    assert cfg["metrics"]["exact"] is True and cfg["train"]["seed_used"] == 3
    from safetensors import safe_open

    with safe_open(folder / WEIGHTS_FILE, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert set(f.keys()) == set(model.state_dict())
    loaded = load_checkpoint(folder)
    assert loaded.checkpoint.config == cfg


def test_card_of_a_model_that_is_not_exact(tmp_path):
    folder = save(randomised(build_model("p8")), tmp_path / "x", metrics={
        "exact": False, "n_wrong": 17, "accuracy": 0.97, "method": "exhaustive",
        "seconds": 2.0, "steps_run": 40, "total_steps": 120, "restarts_used": 2,
        "attempts_run": 3})
    card = (folder / README_FILE).read_text()
    assert "**no** — 17/512 neighbourhoods wrong (exhaustive check of all 512" in card
    assert "exact on every board" not in card
    assert "40 steps (120 over all attempts)" in card and "attempt 3 of 3" in card


def test_card_snippet_runs_from_anywhere(tmp_path, monkeypatch, capsys):
    folder = save(randomised(build_model("p4")), tmp_path / "runs" / "mine")
    card = (folder / README_FILE).read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", card, re.S)
    assert repr(str(folder.resolve())) in snippet
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    exec(compile(snippet, "card", "exec"), {})
    assert capsys.readouterr().out.strip().isdigit()  # the number of wrong neighbourhoods


def test_model_card(tmp_path):
    folder = save(randomised(build_model("p8")), tmp_path / "b36s23_p8")
    card = (folder / README_FILE).read_text()
    assert card.startswith("# b36s23_p8 — B36/S23 (HighLife), p8")
    for text in ("| parameters | 218 |", "**yes** — 0/512", "100.00 %", "200 steps in 1.5 s",
                 "gzoo train --rule B36/S23 --model p8 --out X", "Moore neighbourhood"):
        assert text in card, text


def test_never_overwrites_unless_asked(tmp_path):
    first = randomised(build_model("p4"))
    folder = save(first, tmp_path / "c")
    second = randomised(build_model("p4"))
    with pytest.raises(CheckpointError, match="already exists") as info:
        save(second, folder)
    assert info.value.path == folder and str(folder) in str(info.value)
    assert torch.equal(load_checkpoint(folder).lift.weight, first.lift.weight)
    save(second, folder, overwrite=True)
    assert torch.equal(load_checkpoint(folder).lift.weight, second.lift.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temp folders left


def test_overwrite_never_replaces_a_folder_that_is_not_a_checkpoint(user_files):
    """A git checkout, a folder with a foreign config.json, and a checkpoint someone added a
    file to: overwrite=True leaves each of them, and everything around, as it was."""
    model = randomised(build_model("p4"))
    (user_files / "other").mkdir()
    (user_files / "other" / CONFIG_FILE).write_text('{"format": "something-else"}')
    ckpt = save(randomised(build_model("p4")), user_files / "ckpt")
    (ckpt / "my_notes.md").write_text("keep me\n")
    before = snapshot(user_files)
    for folder, why in [(user_files / "repo", "it has no config.json"),
                        (user_files / "other", "not a gzoo checkpoint config"),
                        (ckpt, "it holds my_notes.md, which a gzoo checkpoint does not")]:
        with pytest.raises(CheckpointError, match=re.escape(why)) as info:
            save(model, folder, overwrite=True)
        assert info.value.path == folder and "left alone" in str(info.value)
    assert snapshot(user_files) == before


def test_overwrite_is_atomic(user_files, monkeypatch):
    """The new folder fails to move in: the old checkpoint is back, nothing else changed."""
    import gzoo.checkpoint as ck

    first = randomised(build_model("p4"))
    folder = save(first, user_files / "c")
    before = snapshot(user_files)
    real, calls = os.replace, []

    def no_space(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old → aside worked; new → folder fails
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", no_space)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint: No space left"):
        save(randomised(build_model("p4")), folder, overwrite=True)
    monkeypatch.undo()
    assert len(calls) == 3  # aside, in (failed), back
    assert snapshot(user_files) == before
    assert torch.equal(load_checkpoint(folder).lift.weight, first.lift.weight)


@pytest.mark.parametrize("case", ["cwd", "parent of cwd", "file", "symlink", "under a file",
                                  "not writable"])
def test_output_checks(user_files, monkeypatch, case):
    """Every unusable target is refused before anything is written, and nothing changes."""
    import gzoo.checkpoint as ck

    (user_files / "file.txt").write_text("x")
    (user_files / "a" / "b").mkdir(parents=True)
    (user_files / "link").symlink_to(user_files / "repo")
    target, why = {
        "cwd": (user_files / "a" / "b", "working directory or one of its parents"),
        "parent of cwd": (user_files / "a", "working directory or one of its parents"),
        "file": (user_files / "file.txt", "exists and is not a folder"),
        "symlink": (user_files / "link", "is a symbolic link"),
        "under a file": (user_files / "file.txt" / "c", "file.txt is not a folder"),
        "not writable": (user_files / "a" / "new", "is not writable"),
    }[case]
    monkeypatch.chdir(user_files / "a" / "b")
    if case == "not writable":  # root may write anywhere: ask os.access to say no
        monkeypatch.setattr(ck.os, "access", lambda *a, **k: False)
    before = snapshot(user_files)
    with pytest.raises(CheckpointError, match=re.escape(why)) as info:
        save(build_model("p4"), target, overwrite=True)
    assert info.value.path == target
    assert snapshot(user_files) == before
    if case == "cwd":
        with pytest.raises(CheckpointError, match="working directory"):
            save(build_model("p4"), ".", overwrite=True)


def test_a_locked_folder_is_refused_at_once(user_files):
    """Another process holds the lock (an flock on .<name>.lock): saving refuses, and the
    holder's lock file stays."""
    import fcntl

    lock = user_files / ".c.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = snapshot(user_files)
        with pytest.raises(CheckpointError, match=r"another process \(process 4242\) is writing"):
            save(build_model("p4"), user_files / "c")
        assert snapshot(user_files) == before
    finally:
        os.close(fd)
    folder = save(build_model("p4"), user_files / "c")  # released: it saves, and tidies up
    assert folder.is_dir() and not lock.exists()


def test_parents_it_created_go_when_saving_fails(tmp_path, monkeypatch):
    import gzoo.checkpoint as ck

    monkeypatch.setattr(ck, "model_card", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save(build_model("p4"), tmp_path / "runs" / "day1" / "c")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert save(build_model("p4"), tmp_path / "runs" / "day1" / "c").is_dir()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_permissions_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        folder = save(build_model("p4"), tmp_path / "c")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    for p in folder.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p.name


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   FileExistsError(17, "File exists"),
                                   FileNotFoundError(2, "No such file or directory")])
def test_save_os_errors_are_one_checkpoint_error(user_files, monkeypatch, error):
    import safetensors.torch

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    before = snapshot(user_files)
    with pytest.raises(CheckpointError, match=f"cannot write the checkpoint: {error.strerror}"):
        save(build_model("p4"), user_files / "c")
    assert snapshot(user_files) == before


def test_refuses_to_save_non_finite_weights(tmp_path):
    model = build_model("p4")
    with torch.no_grad():
        model.readout.bias[1] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN or inf: readout\.bias"):
        save(model, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_config_lists_the_files(tmp_path):
    src = tmp_path / "extra.txt"
    src.write_text("x")
    folder = save(build_model("p4"), tmp_path / "c", extra_files={"extra.txt": src})
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["files"] == sorted(p.name for p in folder.iterdir())
    save(build_model("p4"), folder, overwrite=True, extra_files={"extra.txt": src})


def test_crash_while_saving_leaves_nothing(tmp_path, monkeypatch):
    import gzoo.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ck, "model_card", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save(build_model("p4"), tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_extra_files_are_copied(tmp_path):
    src = tmp_path / "metrics.jsonl"
    src.write_text('{"step": 1}\n')
    folder = save(build_model("p4"), tmp_path / "c", extra_files={"metrics.jsonl": src})
    assert (folder / "metrics.jsonl").read_text() == '{"step": 1}\n'
    with pytest.raises(CheckpointError, match="bad extra file name"):
        save(build_model("p4"), tmp_path / "d", extra_files={"config.json": src})
    assert not (tmp_path / "d").exists()


def test_only_gzoo_models_are_saved(tmp_path):
    with pytest.raises(CheckpointError, match="can only save gzoo models"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "c", rule="B3/S23")


@pytest.fixture
def ckpt(tmp_path):
    return save(randomised(build_model("p8")), tmp_path / "ckpt")


def edit_config(folder, **changes):
    path = folder / CONFIG_FILE
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            a, b = key.split(".")
            cfg[a][b] = value
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))


def test_error_missing_config(ckpt):
    (ckpt / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing file") as info:
        load_pretrained(ckpt)
    assert info.value.path == ckpt / CONFIG_FILE


def test_error_missing_weights(ckpt):
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing file"):
        load_pretrained(ckpt)


def test_error_bad_json(ckpt):
    (ckpt / CONFIG_FILE).write_text('{"format": "gzoo-checkpoint",')
    with pytest.raises(CheckpointError, match=r"config\.json: bad JSON"):
        load_pretrained(ckpt)


def test_error_sha_mismatch(ckpt):
    data = bytearray((ckpt / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last weight
    (ckpt / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch") as info:
        load_pretrained(ckpt)
    assert info.value.path == ckpt / WEIGHTS_FILE


def test_error_weights_do_not_fit_config(ckpt):
    edit_config(ckpt, **{"model.kwargs": {"group": "p8", "width": 5, "depth": 1,
                                          "backend": "gzoo", "pool": "max"}})
    with pytest.raises(CheckpointError, match=r"weights do not fit GCNN.*shape mismatch"):
        load_pretrained(ckpt)
    edit_config(ckpt, **{"model.kwargs": {"group": "p8", "width": 4, "depth": 2}})
    with pytest.raises(CheckpointError, match=r"missing \['convs.1.bias'"):
        load_pretrained(ckpt)


def test_error_group_swapped_in_config(ckpt):
    """p4m and p8 weights have the same shapes: a config naming the other group is caught."""
    edit_config(ckpt, **{"model.kwargs": {"group": "p4m", "width": 4, "depth": 1,
                                          "backend": "gzoo", "pool": "max"}})
    with pytest.raises(CheckpointError, match=r"inconsistent config: group is 'p8'.*'p4m'"):
        load_pretrained(ckpt)


def test_error_unknown_class_and_bad_kwargs(ckpt):
    edit_config(ckpt, **{"model.class": "HexNet"})
    with pytest.raises(CheckpointError, match=r"unknown model class 'HexNet'.*GCNN"):
        load_pretrained(ckpt)
    edit_config(ckpt, **{"model.class": "GCNN", "model.kwargs": {"group": "p5"}})
    with pytest.raises(CheckpointError, match="do not fit GCNN: unknown group 'p5'"):
        load_pretrained(ckpt)


def test_error_bad_rule_format_and_version(ckpt):
    edit_config(ckpt, rule="B9/S")
    with pytest.raises(CheckpointError, match="bad rule"):
        load_pretrained(ckpt)
    edit_config(ckpt, rule="B3/S23", format_version=2)
    with pytest.raises(CheckpointError, match="unsupported format_version 2"):
        load_pretrained(ckpt)
    edit_config(ckpt, format="something-else", format_version=1)
    with pytest.raises(CheckpointError, match="not a gzoo checkpoint config"):
        load_pretrained(ckpt)


def test_error_no_such_path_or_name(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_pretrained(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match=r"not an installed zoo name \(available: "):
        load_pretrained("b99s99_p8")
    with pytest.raises(CheckpointError, match="not a folder"):
        (tmp_path / "file").write_text("x")
        load_pretrained(str(tmp_path / "file"))


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    monkeypatch.setattr(gzoo.zoo, "ZOO_DIR", zoo_dir)
    return zoo_dir


def test_zoo_names(fake_zoo):
    assert zoo_entries() == []
    model = randomised(build_model("p4m"))
    save(model, fake_zoo / "b3s23_p4m", rule="B3/S23")
    loaded = load_pretrained("b3s23_p4m")
    assert torch.equal(loaded.step(boards(1)), model.step(boards(1)))
    assert loaded.checkpoint.rule == Rule.parse("B3/S23")
    (rows,) = zoo_entries()
    assert rows == {"name": "b3s23_p4m", "task": TASK_CA, "rule": "B3/S23", "group": "p4m",
                    "model": "GCNN", "n_params": 218, "exact": True, "accuracy": 1.0}
    with pytest.raises(CheckpointError, match=r"available: b3s23_p4m\)"):
        load_pretrained("b3s23_p8")


def rewrite_weights(folder, state):
    """Replace the weights file, with the sha256 in config.json updated to match."""
    save_file(state, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    edit_config(folder, weights_sha256=sha256_file(folder / WEIGHTS_FILE))


def test_error_non_finite_weights(ckpt):
    state = dict(load_checkpoint(ckpt).state_dict())
    state["readout.bias"] = torch.tensor([0.0, float("inf")])
    rewrite_weights(ckpt, state)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights hold NaN or inf.*"
                                              r"readout\.bias"):
        load_pretrained(ckpt)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.uint8])
def test_error_weights_that_are_not_floating_point(ckpt, dtype):
    """bool or integer tensors are never cast into a float model."""
    state = dict(load_checkpoint(ckpt).state_dict())
    state["lift.weight"] = (state["lift.weight"] > 0).to(dtype)
    rewrite_weights(ckpt, state)
    with pytest.raises(CheckpointError, match=r"wrong dtype \(gzoo does not cast them\): "
                                              r"lift\.weight is (BOOL|I32|U8), expected a "
                                              r"floating dtype"):
        load_pretrained(ckpt)


def test_float64_weights_load_in_float64(ckpt):
    model = load_checkpoint(ckpt)
    rewrite_weights(ckpt, {k: v.double() for k, v in model.state_dict().items()})
    loaded = load_pretrained(ckpt)
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert torch.equal(loaded.step(boards()), model.step(boards()))
    state = {k: v.double() for k, v in model.state_dict().items()}
    state["readout.bias"] = state["readout.bias"].half()
    rewrite_weights(ckpt, state)
    with pytest.raises(CheckpointError, match="floating weights mix dtypes"):
        load_pretrained(ckpt)


def test_device_argument(ckpt):
    m = load_pretrained(ckpt, device="cpu")
    assert next(m.parameters()).device.type == "cpu"
