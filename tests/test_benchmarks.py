"""Smoke tests of the scripts in benchmarks/: each ``main([...tiny flags...])`` runs in-process
and writes JSON with the expected keys and sane values, so the scripts cannot rot."""

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import CUDA

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    """Import ``benchmarks/<name>.py`` as the scripts see it (``common`` importable)."""
    sys.path.insert(0, str(BENCH))
    try:
        if name == "common":
            return importlib.import_module("common")
        key = f"gzoo_bench_{name}"
        if key not in sys.modules:
            spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # dataclasses look their module up while it executes
            spec.loader.exec_module(module)
        return sys.modules[key]
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(autouse=True)
def _keep_threads():
    """The scripts set torch's thread count; put it back for the rest of the suite."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- common
def test_common_timer_and_json(tmp_path):
    common = load("common")
    calls = {"a": 0, "b": 0}

    def fast():
        calls["a"] += 1

    def slow():
        calls["b"] += 1
        time.sleep(0.002)

    t = common.bench({"a": fast, "b": slow}, repeats=3, warmup=1, min_sample=0.001)
    assert set(t) == {"a", "b"}
    assert len(t["a"].times) == len(t["b"].times) == 3
    assert t["a"].number > 1 and t["b"].number == 1  # fast candidate batched within a sample
    assert calls["b"] == 1 + 3
    assert t["b"].q1 <= t["b"].median <= t["b"].q3 and t["b"].median >= 0.002
    ratio = common.paired_ratio(t["b"], t["a"])
    assert ratio["median"] > 1 and math.isfinite(ratio["of_medians"])

    info = common.machine_info("cpu")
    for key in ("platform", "cpu_model", "cpu_count", "torch", "e2cnn", "numpy", "git"):
        assert key in info
    assert set(info["git"]) >= {"commit", "dirty"}
    path = common.write_json(tmp_path / "x.json", {
        "nan": float("nan"), "path": tmp_path, "tensor": torch.arange(3), "timing": t["a"],
        "dtype": torch.float32, 1: (1, 2),
    })
    data = json.loads(path.read_text())
    assert data["nan"] is None and data["tensor"] == [0, 1, 2] and data["1"] == [1, 2]
    assert data["timing"]["number"] == t["a"].number and data["dtype"] == "torch.float32"


# ---------------------------------------------------------------------- equivariance
def test_rotation_helpers():
    eq = load("equivariance")
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(eq.rotate(x, 90), torch.rot90(x, 1, (-2, -1)))
    assert eq.check_rotation_convention(3) < 1e-9
    # group maps: 45° also rolls the C8 axis by one
    g = torch.randn(1, 2, 8, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(eq.rotate_map(g, 90, "group", 3),
                               torch.rot90(torch.roll(g, 2, dims=-3), 1, (-2, -1)))
    smooth = eq.smooth_images((2, 1, 33, 33), 8.0)
    mask = eq.disk_mask(33, 11)
    back = eq.rotate(eq.rotate(smooth, 45), -45)
    assert float(eq.disk_error(back, smooth, mask).max()) < 1e-2


def test_equivariance_script(tmp_path):
    eq = load("equivariance")
    payload = eq.main([
        "--out", str(tmp_path), "--inputs", "2", "--stencils", "3", "--size", "9",
        "--rot-size", "33", "--bands", "8", "white", "--threads", "1",
        "--rot-kernel-sizes", "5", "--rot-seeds", "1",
    ])
    data = json.loads((tmp_path / "equivariance.json").read_text())
    assert (tmp_path / "equivariance.png").stat().st_size > 0
    assert set(data) >= {"machine", "args", "exact", "rot45", "stencil", "tables"}
    assert data["args"]["threads"] == 1 and payload["args"]["threads"] == 1

    exact = data["exact"]
    assert len(exact) == (6 * 2 + 2) * 2  # (layers × implementations + harmonic p8) × dtypes
    for row in exact:
        tol = 1e-5 if row["dtype"] == "float32" else 1e-12
        assert row["max_exact"] < tol, row
        order = {"p4": 4, "p4m": 8, "p8": 8}[row["group"]]
        assert len(row["elements"]) == order
        if row["group"] == "p8":  # whole-image ring rotation is approximate by design
            assert row["max_ring"] > 1e-3
        else:
            assert row["max_ring"] is None

    rot = data["rot45"]
    impls = ("hand", "harmonic", "e2cnn", "harmonic=e2cnn")
    assert {(r["layer"], r["impl"], r["kernel_size"]) for r in rot} == {
        (layer, impl, 5) for layer in ("P8LiftConv", "P8Conv") for impl in impls}
    for r in rot:
        assert 0 <= r["floor_in_mean"] and 0 < r["interp45_mean"] < 2
        if r["band_wavelength"] == 8:  # smooth: the interpolation floor is well below
            assert r["floor_in_mean"] < 1e-2 and r["floor_in_mean"] < r["interp45_mean"]
    smooth = {(r["layer"], r["impl"]): r["interp45_mean"] for r in rot
              if r["band_wavelength"] == 8}
    for layer in ("P8LiftConv", "P8Conv"):  # band-limited filters win on smooth images
        assert smooth[(layer, "e2cnn")] < 0.2 * smooth[(layer, "hand")]
        assert smooth[(layer, "harmonic")] < 0.2 * smooth[(layer, "hand")]
        # with e2cnn's weights the harmonic layer is e2cnn's layer
        assert smooth[(layer, "harmonic=e2cnn")] == pytest.approx(smooth[(layer, "e2cnn")],
                                                                   rel=1e-4)
    same = data["targets"]["harmonic ≤ e2cnn at 45°, smooth images, k = 5, 7, 9 (same weights)"]
    assert same["met"] and len(same["ratios"]) == 2

    assert {r["impl"] for r in data["stencil"]} == {"hand", "harmonic", "e2cnn"}
    for r in data["stencil"]:  # exact by design for the ring-rotation layers
        tol = 1e-5 if r["dtype"] == "float32" else 1e-12
        assert r["rot90_max"] < tol
        if r["impl"] == "hand":
            assert r["ring45_max"] < tol
        else:
            assert r["ring45_mean"] > 1e-3


# ---------------------------------------------------------------------- speed
def check_speed_payload(data, devices, layers):
    assert set(data) >= {"machine", "args", "settings", "runs", "construction", "targets"}
    runs = data["runs"]
    assert {(r["device"], r["layer"]) for r in runs} == {(d, n) for d in devices for n in layers}
    for r in runs:
        p8 = r["layer"].startswith("P8")
        assert ("harmonic fwd+bwd" in r["timings"]) == p8  # the band-limited p8 variant
        if p8:
            assert 0 < r["ratios"]["harmonic/floor fwd+bwd"]["median"] < math.inf
            assert r["params_harmonic"] < r["params_hand"]
        for name in ("floor", "hand", "e2cnn"):
            for mode in ("fwd+bwd", "fwd", "eval"):
                t = r["timings"][f"{name} {mode}"]
                assert t["median"] > 0 and len(t["times"]) == data["settings"][r["device"]][
                    "repeats"]
        for name in ("hand/floor fwd+bwd", "e2cnn/hand fwd+bwd", "hand/floor eval"):
            assert 0 < r["ratios"][name]["median"] < math.inf
        assert r["bank"][0] == r["output"][1] * r["output"][2]
    for c in data["construction"]:
        assert c["hand"]["median"] > 0 and c["e2cnn"]["median"] > 0
        assert ("harmonic" in c) == c["layer"].startswith("P8")
    assert any(k.startswith("construction") for k in data["targets"])


def test_speed_script_cpu(tmp_path):
    speed = load("speed")
    layers = ["P4Conv", "P8LiftConv"]
    speed.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--layers", *layers,
                "--threads", "1", "--system-malloc"])  # keep this process's malloc as it is
    data = json.loads((tmp_path / "speed.json").read_text())
    assert (tmp_path / "speed.png").stat().st_size > 0
    check_speed_payload(data, ["cpu"], layers)
    assert data["args"]["threads"] == 1 and data["machine"]["torch_threads"] == 1
    assert data["settings"]["cpu"]["sizes"] == [{"name": "tiny", "batch": 2, "hw": 16,
                                                 "fields": 2}]
    assert data["malloc"] == {"applied": False, "reason": "--system-malloc"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_in_a_subprocess():
    code = "import common, json; print(json.dumps(common.keep_freed_memory()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True,
                         text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["applied"] in (True, False) and ("reason" in result or result["applied"])


def test_speed_sizes():
    speed = load("speed")
    assert speed.parse_size("ca") == speed.Size("ca", 64, 64, 4)
    assert speed.parse_size("8x32x16").fields == 16
    assert speed.parse_size("image").kind == "image" and speed.parse_size("ca").kind == "ca"
    with pytest.raises(Exception, match="BxHxC"):
        speed.parse_size("64x64")


@pytest.mark.cuda
@CUDA
def test_speed_script_cuda(tmp_path):
    speed = load("speed")
    speed.main(["--quick", "--device", "cuda", "--cuda-graphs", "--out", str(tmp_path),
                "--layers", "P4Conv", "--no-plot"])
    data = json.loads((tmp_path / "speed.json").read_text())
    check_speed_payload(data, ["cuda"], ["P4Conv"])
    assert data["machine"]["cuda_device"]
    assert "graph hand fwd+bwd" in data["runs"][0]["timings"]


# ---------------------------------------------------------------------- train_zoo
def test_reproduce_compares_what_carries_across_machines(tmp_path, monkeypatch, capsys):
    """Bit-for-bit weights are expected only on the recorded CPU model and thread count;
    exactness and rollouts are compared everywhere, against what the config records."""
    from gzoo.train import TrainConfig, train

    tz = load("train_zoo")
    monkeypatch.setattr(tz, "ROLLOUT", {"size": 16, "steps": 8, "densities": (0.3,)})
    torch.set_num_threads(1)
    zoo = tmp_path / "zoo"
    cfg = TrainConfig(rule="B3/S23", model="p4", model_kwargs={"width": 2}, steps=8,
                      batch_size=4, n_boards=6, board_size=12, holdout_boards=2, check_every=4,
                      restarts=0)
    train(cfg, zoo / "b3s23_p4")
    here = tz.reproduce(zoo / "b3s23_p4")
    assert here["bit_for_bit_expected"] and here["same_weights"] and tz.reproduced(here)
    assert here["exact"] is False and here["exact_as_recorded"]  # 8 steps: not exact, as said

    monkeypatch.setattr(tz, "cpu_model", lambda: "Another CPU")
    elsewhere = tz.reproduce(zoo / "b3s23_p4")
    assert not elsewhere["bit_for_bit_expected"] and tz.reproduced(elsewhere)
    assert tz.main(["--reproduce", "--out-dir", str(zoo)]) == 0
    out = capsys.readouterr().out
    assert "this machine: Another CPU, 1 torch thread(s)" in out and "as recorded" in out

    config = json.loads((zoo / "b3s23_p4" / "config.json").read_text())
    config["metrics"]["exact"] = True  # a config claiming what the recipe does not give
    (zoo / "b3s23_p4" / "config.json").write_text(json.dumps(config))
    assert tz.main(["--reproduce", "--out-dir", str(zoo)]) == 1
    assert "exact False (NOT as recorded)" in capsys.readouterr().out


# ---------------------------------------------------------------------- atlas
def test_atlas_ablation_and_report(tmp_path, capsys):
    atlas = load("atlas")
    atlas.main(["ablation", "--rules", "1", "--groups", "p4", "--only", "+ population",
                "--tag", "smoke", "--out", str(tmp_path / "out"), "--records", str(tmp_path)])
    payload = json.loads((tmp_path / "atlas_ablation_smoke.json").read_text())
    assert payload["machine"]["git"]["commit"] is not None and payload["recipe"]["population"]
    [row] = payload["rows"]
    assert row["name"].startswith("+ population") and row["groups"]["p4"]["n"] == 1
    [res] = row["groups"]["p4"]["results"]
    assert res["rule"] == payload["rules"][0] and res["cpu_seconds"] > 0
    atlas.main(["report", "--records", str(tmp_path)])
    assert "| + population of 4 nets (the default) | p4 |" in capsys.readouterr().out


# ---------------------------------------------------------------------- simulate
def test_simulate_script_cpu(tmp_path):
    sim = load("simulate")
    sim.main(["--settings", "9x70x2", "5x6x64", "--rules", "B3/S23", "random-map",
              "--repeats", "1", "--steps", "3", "--no-lifelib", "--no-plot", "--out",
              str(tmp_path)])
    data = json.loads((tmp_path / "simulate.json").read_text())
    assert data["args"]["threads"] == 1 and data["machine"]["torch_threads"] == 1
    rows = data["rows"]
    groups = {(r["setting"], r["rule"]) for r in rows}
    assert groups == {(s, r) for s in ("2×9×70", "64×5×6") for r in ("B3/S23", "random-map")}
    for setting, rule in groups:
        methods = {r["method"]: r for r in rows if (r["setting"], r["rule"]) == (setting, rule)}
        assert {"bytes step", "bits step", "bits simulate", "bits engine", "bits step (eager)",
                "bits engine (eager)", "copy floor (bytes)"} <= set(methods)
        assert methods["bytes step"]["x_bytes_step"] == 1.0
        cells = {"2×9×70": 2 * 9 * 70, "64×5×6": 64 * 5 * 6}[setting]
        for r in methods.values():
            assert r["cell_updates"] == cells * 3 and r["steps"] == 3
            assert r["cell_updates_per_s"] > 0 and r["timing"]["median"] > 0
