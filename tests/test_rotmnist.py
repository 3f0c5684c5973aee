"""Rotated MNIST: the loaders, the protocol, the image models, the training loop, image
checkpoints, ``gzoo eval --data``, the zoo's image entries and the benchmark script — on a few
hundred generated digits (no network, no MNIST files needed)."""

import gzip
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

import gzoo.zoo
from gzoo import GCNN, CheckpointError, load_pretrained, mnist, save_checkpoint
from gzoo.checkpoint import (
    CONFIG_FILE,
    README_FILE,
    TASK_CA,
    TASK_ROTMNIST,
    WEIGHTS_FILE,
    model_card,
    zoo_entries,
)
from gzoo.images import Recipe, error_rate, fit, invariance, to_pixels
from gzoo.mnist import (
    MNISTError,
    RotMNISTProtocol,
    build_rotmnist,
    idx_bytes,
    load_mnist,
    read_idx,
    rotate_images,
)
from gzoo.models import MAX_PARAMS, RotMNISTNet

N_TRAIN, N_TEST = 300, 100


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Digit-like arrays: random strokes in the central 20×20 box, labels 0..9."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        x = np.zeros((n, 28, 28), np.uint8)
        x[:, 4:24, 4:24] = rng.integers(0, 256, (n, 20, 20)) * (rng.random((n, 20, 20)) < 0.2)
        return x

    return {
        "train_images": images(N_TRAIN), "train_labels": rng.integers(0, 10, N_TRAIN, np.uint8),
        "test_images": images(N_TEST), "test_labels": rng.integers(0, 10, N_TEST, np.uint8),
    }


def write_idx(folder, arrays, *, gz=False, dotted=False, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for key, std in mnist.STANDARD_FILES.items():
        if key in skip:
            continue
        name = std.name.replace("-idx", ".idx", 1) if dotted else std.name
        data = idx_bytes(arrays[key])
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def as_standard(monkeypatch, arrays):
    """Make ``arrays`` the 'standard' data, so verification passes on them."""
    table = {
        k: mnist.StandardFile(s.name, arrays[k].shape, hashlib.sha256(idx_bytes(arrays[k]))
                              .hexdigest(), s.gz_sha256, s.gz_md5)
        for k, s in mnist.STANDARD_FILES.items()
    }
    monkeypatch.setattr(mnist, "STANDARD_FILES", table)


# ---------------------------------------------------------------------- loaders
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("where", ["", "MNIST/raw"])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_folder_round_trip(tmp_path, gz, where, dotted):
    arrays = fake_arrays()
    write_idx(tmp_path / where if where else tmp_path, arrays, gz=gz, dotted=dotted)
    data = load_mnist(tmp_path, verify=False)
    for key in arrays:
        assert np.array_equal(getattr(data, key).numpy(), arrays[key])
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.source["format"] == "idx" and data.source["standard"] is False
    # the identity is the decompressed IDX file, whatever the container
    want = hashlib.sha256(idx_bytes(arrays["test_images"])).hexdigest()
    assert data.source["idx_sha256"]["test_images"] == want


def test_verification_against_the_standard_checksums(tmp_path, monkeypatch):
    arrays = fake_arrays()
    write_idx(tmp_path, arrays, gz=True)
    with pytest.raises(MNISTError, match="not the standard MNIST data: train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    as_standard(monkeypatch, arrays)
    assert load_mnist(tmp_path).source["standard"] is True
    arrays["test_labels"][0] = (arrays["test_labels"][0] + 1) % 10  # one label changed
    write_idx(tmp_path, arrays, gz=True)
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte has sha256"):
        load_mnist(tmp_path)


def test_the_standard_table_is_self_consistent():
    # the four files of the standard distribution, with the sizes their IDX headers imply
    names = [s.name for s in mnist.STANDARD_FILES.values()]
    assert names == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for s in mnist.STANDARD_FILES.values():
        assert len(s.sha256) == len(s.gz_sha256) == 64 and len(s.gz_md5) == 32


def test_classic_pickle(tmp_path):
    arrays = fake_arrays()

    def flat(x):
        return (x.reshape(len(x), -1) / np.float32(256)).astype(np.float32)  # k/256 as there

    n_fit = N_TRAIN - 50
    parts = ((flat(arrays["train_images"][:n_fit]), arrays["train_labels"][:n_fit].astype(int)),
             (flat(arrays["train_images"][n_fit:]), arrays["train_labels"][n_fit:].astype(int)),
             (flat(arrays["test_images"]), arrays["test_labels"].astype(int)))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=2)))
    for where in (path, tmp_path):
        data = load_mnist(where, verify=False)
        assert data.source["format"] == "pkl"
        for key in arrays:
            assert np.array_equal(getattr(data, key).numpy(), arrays[key].astype(
                getattr(data, key).numpy().dtype))
    # same data in either container → the same identity
    write_idx(tmp_path / "idx", arrays)
    assert load_mnist(tmp_path / "idx", verify=False).source["idx_sha256"] == \
        load_mnist(path, verify=False).source["idx_sha256"]


class _Evil:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(_Evil())))
    with pytest.raises(MNISTError, match="refusing to unpickle"):
        load_mnist(path, verify=False)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-7], "truncated or corrupt"),
    (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "data type 0x0d"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_corrupt_idx_files(tmp_path, damage, message):
    arrays = fake_arrays()
    write_idx(tmp_path, arrays)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MNISTError, match=message) as e:
        load_mnist(tmp_path, verify=False)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(MNISTError, match="no such file or folder"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(MNISTError, match="no MNIST files here"):
        load_mnist(tmp_path)
    write_idx(tmp_path, fake_arrays(), skip=("test_labels",))
    with pytest.raises(MNISTError, match=r"missing MNIST file.*t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, verify=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(MNISTError, match="corrupt gzip file"):
        load_mnist(tmp_path, verify=False)


def test_inconsistent_arrays(tmp_path):
    arrays = fake_arrays()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    write_idx(tmp_path / "a", arrays)
    with pytest.raises(MNISTError, match="100 images but labels of shape \\[99\\]"):
        load_mnist(tmp_path / "a", verify=False)
    arrays = fake_arrays()
    arrays["train_labels"][3] = 12
    write_idx(tmp_path / "b", arrays)
    with pytest.raises(MNISTError, match="labels hold 12"):
        load_mnist(tmp_path / "b", verify=False)
    arrays = fake_arrays()
    arrays["test_images"] = arrays["test_images"][:, :, :27].copy()
    write_idx(tmp_path / "c", arrays)
    with pytest.raises(MNISTError, match=r"shape \[100, 28, 27\]"):
        load_mnist(tmp_path / "c", verify=False)


def test_read_idx_inverts_idx_bytes():
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    assert np.array_equal(read_idx(idx_bytes(x)), x)
    with pytest.raises(TypeError, match="uint8"):
        idx_bytes(x.astype(np.int16))


# ---------------------------------------------------------------------- rotation, protocol
def test_rotation_convention():
    x = torch.rand(4, 28, 28, dtype=torch.float64)
    for k in range(4):
        turned = rotate_images(x, torch.full((4,), 90.0 * k))
        torch.testing.assert_close(turned, torch.rot90(x, k, (-2, -1)), atol=1e-9, rtol=0)
    # counter-clockwise as displayed: a dot right of the centre goes above it (odd size: a
    # centre pixel)
    dot = torch.zeros(1, 9, 9, dtype=torch.float64)
    dot[0, 4, 7] = 1.0
    up = rotate_images(dot, torch.tensor([90.0]))
    assert up[0, 1, 4] == pytest.approx(1.0) and up.sum() == pytest.approx(1.0)
    # bilinear with zero fill: a 45° turn of a constant image keeps the inside, zeros the corners
    ones = torch.ones(1, 28, 28, dtype=torch.float64)
    r45 = rotate_images(ones, torch.tensor([45.0]))
    assert r45[0, 14, 14] == pytest.approx(1.0) and r45[0, 0, 0] == 0.0
    u8 = rotate_images(torch.full((2, 28, 28), 200, dtype=torch.uint8), torch.tensor([0.0, 30.0]))
    assert u8.dtype == torch.uint8 and int(u8[0, 5, 5]) == 200


def test_rotation_bad_input():
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        rotate_images(torch.zeros(28, 28), torch.zeros(28))
    with pytest.raises(ValueError, match="one angle per image"):
        rotate_images(torch.zeros(3, 28, 28), torch.zeros(2))


def fake_mnist(tmp_path, seed=0):
    write_idx(tmp_path, fake_arrays(seed))
    return load_mnist(tmp_path, verify=False)


def test_protocol_is_seeded_and_documented(tmp_path):
    data = fake_mnist(tmp_path)
    proto = RotMNISTProtocol(n_train=200, n_val=40, n_test=80, seed=3)
    a, b = build_rotmnist(data, proto), build_rotmnist(data, proto)
    assert a.record["rotated_sha256"] == b.record["rotated_sha256"]
    c = build_rotmnist(data, RotMNISTProtocol(200, 40, 80, seed=4))
    assert c.record["rotated_sha256"] != a.record["rotated_sha256"]
    # rebuild it from the recipe in the module docstring
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(N_TRAIN, generator=g)[:200]
    deg = 360 * torch.rand(200, generator=g, dtype=torch.float64)
    test_deg = 360 * torch.rand(80, generator=g, dtype=torch.float64)
    assert torch.equal(a.train_index, order) and torch.equal(a.train_degrees, deg)
    assert torch.equal(a.test_degrees, test_deg)
    assert float(deg.min()) >= 0 and float(deg.max()) < 360
    want = rotate_images(data.train_images[order[:5]].double(), deg[:5]).round().to(torch.uint8)
    assert torch.equal(a.train_images[:5], want)
    assert torch.equal(a.train_labels, data.train_labels[order])
    assert [a.split(s)[0].shape[0] for s in ("fit", "val", "train", "test")] == [160, 40, 200, 80]
    assert a.record["source"]["idx_sha256"] == data.source["idx_sha256"]
    with pytest.raises(ValueError, match="split must be one of"):
        a.split("all")


def test_protocol_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"n_val must be an int in 1\.\.99"):
        RotMNISTProtocol(n_train=100, n_val=100)
    with pytest.raises(TypeError, match="seed"):
        RotMNISTProtocol(seed=1.5)
    with pytest.raises(ValueError, match="wants 12000 training"):
        build_rotmnist(fake_mnist(tmp_path))  # only 300 training digits


# ---------------------------------------------------------------------- models
VARIANTS = [(None, "gzoo", "ring"), ("p4", "gzoo", "ring"), ("p4m", "gzoo", "ring"),
            ("p8", "gzoo", "ring"), ("p8", "gzoo", "harmonic"), ("p4", "e2cnn", "ring"),
            ("p4m", "e2cnn", "ring"), ("p8", "e2cnn", "ring")]
EXACT = {"p4": [(k, False) for k in range(4)],
         "p4m": [(k, m) for k in range(4) for m in (False, True)],
         "p8": [(k, False) for k in range(4)]}  # p8: the 90° subgroup acts exactly on images


def turn(x, k, mirror):
    return torch.rot90(x.flip(-1) if mirror else x, k, (-2, -1))


@pytest.mark.parametrize("group, backend, rotation", VARIANTS)
def test_image_models_are_invariant(group, backend, rotation):
    torch.manual_seed(1)
    model = RotMNISTNet(group, width=3, backend=backend, rotation=rotation)
    # move the batch-norm statistics off their defaults, then evaluate
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 28, 28))
    model.eval()
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        base = model(x)
        assert base.shape == (5, 10)
        if group is None:  # the plain CNN is not invariant: the check can fail
            assert (model(turn(x, 1, False)) - base).abs().max() > 1e-6
            return
        for k, mirror in EXACT[group]:
            torch.testing.assert_close(model(turn(x, k, mirror)), base, atol=1e-10, rtol=1e-10)
        if group == "p4":  # p4 does not see mirrors
            assert (model(turn(x, 0, True)) - base).abs().max() > 1e-6


@pytest.mark.parametrize("group, order", [(None, 1), ("p4", 4), ("p4m", 8), ("p8", 8)])
def test_parameter_count_formula(group, order):
    # the module docstring: 25w + w + 5(9|G|w² + w) + 12w + 10w + 10
    w = 5
    model = RotMNISTNet(group, width=w)
    assert model.n_params == 26 * w + 5 * (9 * order * w * w + w) + 12 * w + 10 * w + 10
    if group is not None:  # band-limited filters learn fewer coefficients
        assert RotMNISTNet(group, width=w, backend="e2cnn").n_params < model.n_params


def test_harmonic_p8_has_the_c8_twins_parameters():
    # the same band-limited basis as e2cnn's C8 (J = 11 for 5×5, 6 for 3×3): 24,400 at w = 10
    harmonic = RotMNISTNet("p8", width=10, rotation="harmonic")
    assert harmonic.n_params == RotMNISTNet("p8", width=10, backend="e2cnn").n_params == 24_400
    assert harmonic.name == "p8-harmonic" and harmonic.convs[1].rotation == "harmonic"


def test_size_is_bounded_before_allocation():
    # a width whose weights would need terabytes fails at once, naming the budget
    with pytest.raises(ValueError, match=f"at most {MAX_PARAMS:,}"):
        RotMNISTNet("p8", width=10**6)
    w = 370  # just under the budget for the plain CNN, just over for p4
    assert RotMNISTNet(None, width=w).n_params <= MAX_PARAMS
    with pytest.raises(ValueError, match=r"gzoo\.models\.MAX_PARAMS"):
        RotMNISTNet("p4", width=w)


def test_image_model_bad_input():
    model = RotMNISTNet("p4", width=2)
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\], got shape \[2, 28, 28\]"):
        model(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match=r"got shape \[2, 1, 32, 32\]"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    raw = torch.linspace(0, 255, 2 * 28 * 28).view(2, 1, 28, 28)  # forgot to divide by 255
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\], got values in \[0, 255\]"):
        model(raw)
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        model(torch.full((1, 1, 28, 28), float("nan")))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model(np.zeros((1, 1, 28, 28), np.float32))


def test_image_model_bad_arguments():
    with pytest.raises(ValueError, match="group must be one of"):
        RotMNISTNet("p6")
    with pytest.raises(ValueError, match="no e2cnn backend"):
        RotMNISTNet(None, backend="e2cnn")
    with pytest.raises(ValueError, match="dropout"):
        RotMNISTNet("p4", dropout=1.0)
    with pytest.raises(ValueError, match="applies to gzoo's p8 layers only"):
        RotMNISTNet("p4", rotation="harmonic")
    with pytest.raises(ValueError, match="applies to gzoo's p8 layers only"):
        RotMNISTNet("p8", backend="e2cnn", rotation="harmonic")
    with pytest.raises(ValueError, match="rotation must be one of"):
        RotMNISTNet("p8", rotation="bilinear")
    with pytest.raises(TypeError, match="width"):
        RotMNISTNet("p4", width=2.0)
    with pytest.raises(TypeError, match="group must be a str or None"):
        RotMNISTNet(4)


def test_rebuild_from_init_kwargs():
    model = RotMNISTNet("p4m", width=3, dropout=0.2).eval()
    twin = RotMNISTNet(**model.init_kwargs())
    twin.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(twin.eval()(x), model(x))
    assert json.loads(json.dumps(model.init_kwargs())) == model.init_kwargs()


# ---------------------------------------------------------------------- training
def discs_and_rings(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a filled disc, class 1: a ring, at random radii: rotation-invariant classes."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    r = ((yy - 13.5) ** 2 + (xx - 13.5) ** 2).sqrt()
    labels = torch.randint(0, 2, (n,), generator=g)
    radius = 5 + 5 * torch.rand(n, 1, 1, generator=g)
    disc = r < radius
    ring = disc & (r > radius - 2)
    images = torch.where(labels.view(-1, 1, 1) == 0, disc, ring).to(torch.uint8) * 255
    return images, labels


def test_fit_lowers_the_loss(one_thread):
    torch.manual_seed(0)
    model = RotMNISTNet("p4", width=4)
    x, y = discs_and_rings(256)
    hist = fit(model, x, y, Recipe(epochs=3, batch_size=32, lr=1e-2, augment=0.5), seed=0)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    assert error_rate(model, *discs_and_rings(200, seed=1)) < 0.2
    assert not model.training


def test_fit_resumes_bit_for_bit(tmp_path, one_thread):
    x, y = discs_and_rings(96)
    recipe = Recipe(epochs=3, batch_size=32, lr=5e-3)
    torch.manual_seed(0)
    whole = RotMNISTNet("p4", width=2, dropout=0.2)
    fit(whole, x, y, recipe, seed=7)

    class Stop(Exception):
        pass

    def stop_after_one(row):
        if row["epoch"] == 1:
            raise Stop

    state = tmp_path / "state.pt"
    torch.manual_seed(0)
    part = RotMNISTNet("p4", width=2, dropout=0.2)
    with pytest.raises(Stop):
        fit(part, x, y, recipe, seed=7, state_path=state, on_epoch=stop_after_one)
    assert state.is_file()
    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG
    resumed = RotMNISTNet("p4", width=2, dropout=0.2)
    hist = fit(resumed, x, y, recipe, seed=7, state_path=state)
    assert len(hist) == 3
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="another recipe, seed or data"):
        fit(resumed, x, y, Recipe(epochs=4, batch_size=32, lr=5e-3), seed=7, state_path=state)


def test_recipe_and_fit_bad_arguments():
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        Recipe(epochs=0)
    with pytest.raises(ValueError, match="augment"):
        Recipe(augment=1.5)
    with pytest.raises(ValueError, match="lr"):
        Recipe(lr=0.0)
    model = RotMNISTNet("p4", width=2)
    with pytest.raises(ValueError, match="uint8"):
        fit(model, torch.rand(4, 28, 28), torch.zeros(4, dtype=torch.long), Recipe(), seed=0)
    with pytest.raises(ValueError, match="4 images but labels"):
        fit(model, torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long),
            Recipe(), seed=0)
    with pytest.raises(TypeError, match="uint8"):
        to_pixels(torch.rand(2, 28, 28))


def test_invariance_measure():
    x, _ = discs_and_rings(20)
    p4 = RotMNISTNet("p4", width=2).eval()
    inv = invariance(p4, x)
    assert inv["rot90_rel"] < 1e-5 and inv["rot90_flips"] == 0.0
    cnn = RotMNISTNet(None, width=3).eval()
    assert invariance(cnn, torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8))[
        "rot90_rel"] > 1e-4


# ---------------------------------------------------------------------- benchmark script
def test_benchmark_script_is_resumable(tmp_path, capsys, monkeypatch):
    from test_benchmarks import load

    bench = load("rotmnist")
    write_idx(tmp_path / "data", fake_arrays())
    argv = ["--data", str(tmp_path / "data"), "--unverified", "--n-train", "60", "--n-val",
            "20", "--n-test", "40", "--epochs", "1", "--only", "p4", "cnn", "--threads", "1",
            "--records", str(tmp_path / "rec"), "--runs", str(tmp_path / "runs")]
    assert bench.main(argv) == 0
    recs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "rec").glob("*.json")}
    assert sorted(recs) == ["cnn_s0.json", "p4_s0.json"]
    r = recs["p4_s0.json"]
    assert r["n_params"] == RotMNISTNet(**r["kwargs"]).n_params
    assert r["split"] == {"fit": "train", "eval": "test", "n_fit": 60, "n_eval": 40}
    assert 0.0 <= r["test_error"] <= 1.0 and r["invariance"]["rot90_rel"] < 1e-4
    assert r["data"]["source"]["standard"] is False and r["machine"]["git"]["commit"]
    assert (tmp_path / "runs" / "p4_s0" / "model.safetensors").is_file()
    mtime = (tmp_path / "rec" / "p4_s0.json").stat().st_mtime_ns
    capsys.readouterr()
    assert bench.main(argv) == 0  # everything recorded: nothing runs again
    out = capsys.readouterr().out
    assert "epoch  1" not in out and "| p4 " in out and "| cnn " in out
    assert (tmp_path / "rec" / "p4_s0.json").stat().st_mtime_ns == mtime
    # the standard checksums are enforced unless --unverified
    assert bench.main([a for a in argv if a != "--unverified"]) == 2
    assert "not the standard MNIST data" in capsys.readouterr().err

    # --speed times the models interleaved; the table takes its columns from it
    speed_argv = ["--speed", "--only", "p4", "cnn", "--speed-repeats", "2", "--threads", "1",
                  "--records", str(tmp_path / "rec")]
    assert bench.main(speed_argv) == 0
    sp = json.loads((tmp_path / "rec" / "speed_1t.json").read_text())
    assert sorted(sp["models"]) == ["cnn", "p4"] and sp["steps_per_epoch"] == 94
    assert sp["models"]["p4"]["epoch_time_vs_p4"]["median"] == 1.0
    assert sp["models"]["cnn"]["seconds_per_epoch"] > 0
    capsys.readouterr()
    assert bench.main(["--table", "--records", str(tmp_path / "rec")]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| cnn"))
    assert f"{sp['models']['cnn']['seconds_per_epoch']:.1f}" in row

    # --zoo ships the seed-0 runs that exist and writes the zoo README's "Images" section
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "README.md").write_text("# The zoo\n\ntable\n\n## Why p8\n\ntext\n")
    zoo_argv = ["--zoo", "--records", str(tmp_path / "rec"), "--zoo-dir", str(zoo)]
    for _ in range(2):  # the second time replaces the section
        assert bench.main(zoo_argv) == 0
        out = capsys.readouterr().out
        assert "rotmnist_p4m: no finished run of p4m" in out
        readme = (zoo / "README.md").read_text()
        assert readme.count("## Images") == 1 and readme.index("## Images") < readme.index(
            "## Why p8") and "| `rotmnist_p4` | p4 |" in readme
    entry = load_pretrained(zoo / "rotmnist_p4")
    assert entry.checkpoint.task == TASK_ROTMNIST and entry.checkpoint.rule is None
    assert entry.checkpoint.metrics["test_error"] == r["test_error"]
    assert entry.checkpoint.data == r["data"]
    assert entry.checkpoint.train["command"].startswith("python benchmarks/rotmnist.py")
    from gzoo.cli import main

    monkeypatch.setattr(gzoo.zoo, "ZOO_DIR", zoo)
    assert [e["name"] for e in zoo_entries(TASK_ROTMNIST)] == ["rotmnist_p4"]
    assert zoo_entries(TASK_CA) == []
    assert main(["zoo"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("rotmnist_p4"))
    assert line.split()[1:3] == [TASK_ROTMNIST, "-"]
    assert line.endswith(f"{100 * r['test_error']:.2f} %")


def test_benchmark_runs_are_claimed_once(tmp_path):
    import os

    from test_benchmarks import load

    claim = load("rotmnist")._claim
    run = tmp_path / "p4_s0"
    assert claim(run) and (run / "lock").read_text() == str(os.getpid())
    assert not claim(run)  # held by a live process (this one)
    (run / "lock").write_text("999999999")  # a process that is gone
    assert claim(run)


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture
def record(tmp_path):
    """The data record of a 200/80-digit protocol on generated digits (and where they are)."""
    write_idx(tmp_path / "data", fake_arrays())
    data = build_rotmnist(load_mnist(tmp_path / "data", verify=False),
                          RotMNISTProtocol(200, 40, 80, seed=1))
    return data


@pytest.fixture
def image_checkpoint(tmp_path, record):
    """A small p4m checkpoint (trained in name only) with its test error on ``record``."""
    torch.manual_seed(0)
    model = RotMNISTNet("p4m", width=2).eval()
    err = error_rate(model, *record.split("test"))
    folder = save_checkpoint(
        model, tmp_path / "ckpt", data=record.record,
        train_config={"seed": 0, "recipe": Recipe(epochs=1).as_dict(), "command": "make it"},
        metrics={"test_error": err, "invariance": invariance(model, record.split("test")[0]),
                 "invariance_digits": 80})
    return folder, model, err


def test_image_checkpoint_round_trip(image_checkpoint):
    folder, model, err = image_checkpoint
    loaded = load_pretrained(folder)
    info = loaded.checkpoint
    assert isinstance(loaded, RotMNISTNet) and not loaded.training
    assert (info.task, info.rule, info.path) == (TASK_ROTMNIST, None, folder)
    assert info.config["rule"] is None and info.data["protocol"]["n_test"] == 80
    assert info.config["files"] == sorted([CONFIG_FILE, README_FILE, WEIGHTS_FILE])
    assert sorted(p.name for p in folder.iterdir()) == info.config["files"]
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    card = (folder / "README.md").read_text()
    for needle in ("rotated MNIST", f"{100 * err:.2f} % of the 80 rotated test digits",
                   "200 of the 60,000", "seed 1", "training seed 0", "make it",
                   info.data["rotated_sha256"]["test"], info.data["source"]["idx_sha256"][
                       "test_images"], info.config["weights_sha256"], "gzoo eval",
                   "**not** the standard files", "exact 90° turns and mirrors"):
        assert needle in card, needle


def test_image_card_snippet_runs_from_anywhere(image_checkpoint, tmp_path, monkeypatch, capsys):
    import re

    folder, _, _ = image_checkpoint
    (snippet,) = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert repr(str(folder.resolve())) in snippet
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    exec(compile(snippet, "card", "exec"), {})
    assert capsys.readouterr().out.startswith("tensor([")
    assert list(elsewhere.iterdir()) == []


def test_image_checkpoints_go_through_the_safe_path(image_checkpoint, record, tmp_path):
    folder, model, _ = image_checkpoint
    before = (folder / WEIGHTS_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(model, folder, data=record.record)
    assert (folder / WEIGHTS_FILE).read_bytes() == before
    # a folder that is not a checkpoint is never replaced, even with overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(CheckpointError, match="not a gzoo checkpoint folder"):
        save_checkpoint(model, mine, data=record.record, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep"
    # weights that diverged are refused, and nothing is written
    broken = RotMNISTNet("p4m", width=2)
    with torch.no_grad():
        broken.norms[2].weight[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN or inf: norms\.2\.weight"):
        save_checkpoint(broken, tmp_path / "nan", data=record.record)
    assert not (tmp_path / "nan").exists()
    # overwrite replaces a checkpoint atomically
    other = RotMNISTNet("p4m", width=2).eval()
    save_checkpoint(other, folder, data=record.record, overwrite=True)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(load_pretrained(folder)(x), other(x), atol=0, rtol=0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_image_checkpoint_arguments(tmp_path, record):
    model = RotMNISTNet("p4", width=2)
    with pytest.raises(CheckpointError, match=r"an image model .* takes no rule"):
        save_checkpoint(model, tmp_path / "a", rule="B3/S23", data=record.record)
    with pytest.raises(CheckpointError, match="needs its data record"):
        save_checkpoint(model, tmp_path / "b")
    with pytest.raises(CheckpointError, match="needs its rule"):
        save_checkpoint(GCNN(), tmp_path / "c")
    with pytest.raises(CheckpointError, match="data= is the record of an image model"):
        save_checkpoint(GCNN(), tmp_path / "d", rule="B3/S23", data=record.record)
    bad = dict(record.record, rotated_sha256={"test": "abc"})
    with pytest.raises(CheckpointError, match=r"bad data record: .*rotated_sha256"):
        save_checkpoint(model, tmp_path / "e", data=bad)
    assert not any(tmp_path.glob("[a-e]"))


def edit_config(folder, **changes):
    path = folder / CONFIG_FILE
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))
    return cfg


@pytest.mark.parametrize("changes, message", [
    ({"rule": "B3/S23"}, "task 'rotmnist' has no rule"),
    ({"data": None}, "data record must be an object"),
    ({"data": {"protocol": {"n_train": 5}}}, "protocol must be an object with keys"),
    ({"model": {"class": "GCNN", "kwargs": {}}}, "task 'rotmnist' needs a RotMNISTNet model"),
    ({"model": {"class": "RotMNISTNet", "kwargs": {"group": "p4m", "width": 10**6}}},
     "at most 10,000,000"),
    ({"model": {"class": "RotMNISTNet", "kwargs": {"group": "p8", "width": 2}}},
     "group is 'p4m' but RotMNISTNet"),
    ({"task": "segmentation"}, "unknown task 'segmentation'"),
])
def test_bad_image_configs(image_checkpoint, changes, message):
    folder, _, _ = image_checkpoint
    edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message) as e:
        load_pretrained(folder)
    assert "\n" not in str(e.value)


def test_a_ca_config_cannot_name_an_image_model(tmp_path):
    folder = save_checkpoint(GCNN("p4", width=2), tmp_path / "ca", rule="B3/S23")
    edit_config(folder, model={"class": "RotMNISTNet", "kwargs": {"group": "p4", "width": 2}})
    with pytest.raises(CheckpointError, match="'cellular-automaton' needs a CAModel model"):
        load_pretrained(folder)


# ---------------------------------------------------------------------- gzoo eval --data
def one_line_error(err, *needles):
    assert err.count("\n") == 1 and err.startswith("gzoo eval: error:"), err
    for needle in needles:
        assert needle in err, (needle, err)


def test_cli_eval_of_an_image_checkpoint(image_checkpoint, tmp_path, capsys):
    from gzoo.cli import main

    folder, _, err = image_checkpoint
    data = str(tmp_path / "data")
    assert main(["eval", str(folder), "--data", data, "--unverified"]) == 0
    out = capsys.readouterr().out
    assert f"test error: {100 * err:.2f} % of 80 rotated test digits" in out
    assert "the digits it was tested on, byte for byte" in out
    assert f"recorded:   {100 * err:.2f} %" in out
    for argv, needles in [
        ([], ["is an image checkpoint: give --data PATH"]),
        (["--data", data], ["not the standard MNIST data", "--unverified"]),
        (["--data", str(tmp_path / "nowhere")], ["no such file or folder"]),
        (["--data", str(folder / CONFIG_FILE)], ["not a readable mnist.pkl"]),
        (["--data", data, "--size", "8"], ["--size apply to cellular-automaton checkpoints"]),
        (["--data", data, "--rule", "B3/S23", "--seed", "1"], ["--rule, --seed apply to"]),
    ]:
        assert main(["eval", str(folder), *argv]) == 2, argv
        one_line_error(capsys.readouterr().err, *needles)


def test_cli_eval_refuses_bad_data(image_checkpoint, tmp_path, capsys):
    from gzoo.cli import main

    folder, _, _ = image_checkpoint
    arrays = fake_arrays()
    arrays["test_images"] = arrays["test_images"][:, :, :27].copy()  # wrong shape
    write_idx(tmp_path / "narrow", arrays)
    write_idx(tmp_path / "cut", fake_arrays())
    cut = tmp_path / "cut" / "t10k-images-idx3-ubyte"
    cut.write_bytes(cut.read_bytes()[:-100])  # truncated
    for where, needle in [("narrow", "expected [N, 28, 28]"), ("cut", "truncated or corrupt")]:
        code = main(["eval", str(folder), "--data", str(tmp_path / where), "--unverified"])
        assert code == 2
        one_line_error(capsys.readouterr().err, needle)


def test_cli_eval_of_a_ca_checkpoint_refuses_image_options(tmp_path, capsys):
    from gzoo.cli import main

    folder = save_checkpoint(GCNN("p4", width=2), tmp_path / "ca", rule="B3/S23")
    assert main(["eval", str(folder), "--data", str(tmp_path), "--unverified"]) == 2
    one_line_error(capsys.readouterr().err, "--data and --unverified apply to image checkpoints")


def test_cli_eval_checks_memory_first(image_checkpoint, tmp_path, capsys, monkeypatch):
    import gzoo._checks
    from gzoo.cli import main

    folder, _, _ = image_checkpoint
    monkeypatch.setattr(gzoo._checks, "available_memory", lambda device=None: 10**6)
    assert main(["eval", str(folder), "--data", str(tmp_path / "data"), "--unverified"]) == 2
    one_line_error(capsys.readouterr().err, "rebuilding and scoring 80 rotated test digits",
                   "needs about")


# ---------------------------------------------------------------------- the zoo's entries
IMAGE_ENTRIES = [e["name"] for e in zoo_entries(TASK_ROTMNIST)]


def test_the_three_image_entries_are_shipped():
    assert IMAGE_ENTRIES == ["rotmnist_p4", "rotmnist_p4m", "rotmnist_p8"]


@pytest.mark.parametrize("name", IMAGE_ENTRIES)
def test_image_zoo_entry(name):
    model = load_pretrained(name)
    info = model.checkpoint
    folder = gzoo.zoo.path_of(name)
    assert (info.task, info.rule, info.path) == (TASK_ROTMNIST, None, folder)
    assert (folder / WEIGHTS_FILE).stat().st_size < 1_000_000
    assert name == f"rotmnist_{model.group}"
    # invariant by construction: exact 90° turns, and mirrors for p4m (float32 rounding)
    x = to_pixels(torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        base = model(x)
        assert base.shape == (6, 10)
        for k, mirror in EXACT[model.group]:
            torch.testing.assert_close(model(turn(x, k, mirror)), base, atol=1e-4, rtol=1e-4)
        if model.group != "p4m":  # not invariant to mirrors: the check above can fail
            assert (model(turn(x, 0, True)) - base).abs().max() > 1e-3
    cfg = info.config
    assert info.data["source"]["standard"] is True
    assert info.data["source"]["idx_sha256"] == {
        k: s.sha256 for k, s in mnist.STANDARD_FILES.items()}
    assert info.data["protocol"] == RotMNISTProtocol().as_dict()
    card = (folder / README_FILE).read_text()
    assert card == model_card(cfg, name, folder=folder)  # generated, as the CA cards
    for needle in (f"{100 * info.metrics['test_error']:.2f} %", cfg["train"]["command"],
                   mnist.STANDARD_FILES["train_images"].sha256, "12000 of the 60,000",
                   f"training seed {cfg['train']['seed']}", f"gzoo eval {name} --data PATH",
                   f"load_pretrained({name!r})"):
        assert needle in card, needle
    assert f"`{name}`" in (folder.parent / README_FILE).read_text()
