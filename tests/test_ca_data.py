"""Data sets (gzoo.ca.data): recipe, determinism, class coverage, safetensors round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gzoo.ca import (
    RULES,
    CADataset,
    Rule,
    class_counts,
    format_class_table,
    load_dataset,
    make_dataset,
    missing_classes,
    neighbour_counts,
    save_dataset,
    simulate,
    step,
)


def test_shapes_pairs_and_recipe():
    ds = make_dataset("B3/S23", n_boards=5, size=(12, 20), steps=4, burn_in=3, seed=1)
    assert len(ds) == 20
    assert ds.x.shape == ds.y.shape == (20, 12, 20)
    assert ds.x.dtype == ds.y.dtype == torch.uint8
    assert ds.rule == Rule.parse("B3/S23")
    assert torch.equal(ds.y, step(ds.x, "B3/S23"))
    x0, y0 = ds[0]
    assert torch.equal(y0, step(x0, "B3/S23"))
    assert ds.recipe == {
        "rule": "B3/S23",
        "n_boards": 5,
        "size": [12, 20],
        "steps": 4,
        "density": [0.05, 0.95],
        "burn_in": 3,
        "fresh": True,
        "noise": 0.0,
        "seed": 1,
    }
    json.dumps(ds.recipe)  # JSON-able


def test_pairs_follow_trajectories():
    """Board b's rows: the fresh soup (t = 0), then t = burn_in + 1, burn_in + 2, ..."""
    steps, burn_in = 4, 5
    fresh = make_dataset("B36/S23", 3, 16, steps, burn_in=burn_in, seed=2)
    plain = make_dataset("B36/S23", 3, 16, steps, burn_in=burn_in, seed=2, fresh=False)
    for b in range(3):
        soup = fresh.x[b * steps]
        hist = simulate(soup, "B36/S23", burn_in + steps)
        want = [0] + [burn_in + k for k in range(1, steps)]
        assert torch.equal(fresh.x[b * steps : (b + 1) * steps], hist[want])
        assert torch.equal(plain.x[b * steps : (b + 1) * steps], hist[burn_in : burn_in + steps])


def test_density_is_drawn_per_board_within_range():
    ds = make_dataset("B3/S23", 40, 32, 1, density=(0.2, 0.8), seed=3)
    dens = ds.x.float().mean(dim=(1, 2))
    assert dens.min() > 0.15 and dens.max() < 0.85
    assert dens.max() - dens.min() > 0.3  # not one shared density
    dense = make_dataset("B3/S23", 4, 32, 1, density=(0.9, 0.9), seed=3)
    assert (dense.x.float().mean(dim=(1, 2)) - 0.9).abs().max() < 0.05


def test_deterministic_per_seed_and_rebuildable():
    a = make_dataset("B2/S013V", 6, (10, 14), 3, noise=0.05, seed=7)
    b = make_dataset("B2/S013V", 6, (10, 14), 3, noise=0.05, seed=7)
    c = make_dataset("B2/S013V", 6, (10, 14), 3, noise=0.05, seed=8)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    again = make_dataset(**a.recipe)
    assert torch.equal(again.x, a.x) and torch.equal(again.y, a.y)


def test_noise_only_adds_live_cells_and_pairs_stay_exact():
    clean = make_dataset("B234/S", 8, 24, 3, seed=4)
    noisy = make_dataset("B234/S", 8, 24, 3, seed=4, noise=0.1)
    assert bool((noisy.x >= clean.x).all())
    added = (noisy.x.sum() - clean.x.sum()).item() / (clean.x == 0).sum().item()
    assert 0.07 < added < 0.13
    assert torch.equal(noisy.y, step(noisy.x, "B234/S"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boards": 0}, "n_boards"),
        ({"steps": 0}, "steps"),
        ({"size": (4, 0)}, "size"),
        ({"size": "big"}, "size"),
        ({"density": (0.8, 0.2)}, "density"),
        ({"density": (0.1, 1.5)}, "density"),
        ({"density": 0.5}, "density"),
        ({"noise": -0.1}, "noise"),
        ({"burn_in": -1}, "burn_in"),
        ({"rule": "B3/S23:T8,8"}, "invalid rule"),
    ],
)
def test_bad_recipes_are_errors(kwargs, match):
    args = {"rule": "B3/S23", "n_boards": 2, "size": 8, "steps": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        make_dataset(**args)


def test_class_counts_match_neighbour_counts():
    ds = make_dataset("B35678/S5678", 4, (9, 11), 2, seed=5)
    counts = class_counts(ds)
    assert counts.shape == (2, 9) and counts.dtype == torch.int64
    assert int(counts.sum()) == ds.x.numel()
    n = neighbour_counts(ds.x, "moore").long()
    for s in (0, 1):
        for k in range(9):
            assert counts[s, k] == int(((ds.x == s) & (n == k)).sum())
    assert torch.equal(ds.class_counts(), counts)
    assert torch.equal(class_counts(ds.x, ds.rule, chunk=3), counts)  # chunking is invisible
    vn = class_counts(torch.ones(5, 5, dtype=torch.bool), "B2/S013V")
    assert vn.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 25]]
    with pytest.raises(ValueError, match="needs a rule"):
        class_counts(ds.x)


def test_evolved_states_miss_classes_for_seeds_and_serviettes():
    """The skew the default recipe exists for: no live cell with 7 or 8 neighbours after burn-in."""
    for rule in ("B2/S", "B234/S"):
        evolved = make_dataset(rule, 64, 32, 8, fresh=False, seed=0)
        missing = evolved.missing_classes()
        assert (1, 7) in missing and (1, 8) in missing, (rule, missing)


@pytest.mark.parametrize("rule", list(RULES))
def test_default_recipe_covers_every_class(rule):
    ds = make_dataset(rule, n_boards=64, size=32, steps=8, seed=0)
    counts = ds.class_counts()
    assert counts.shape == (2, Rule.parse(rule).max_count + 1)
    assert missing_classes(counts) == [], format_class_table(ds)
    assert int(counts.min()) >= 10, format_class_table(ds)


def test_format_class_table():
    ds = make_dataset("B2/S", 16, 16, 4, fresh=False, seed=0)
    text = format_class_table(ds)
    lines = text.splitlines()
    assert lines[0].startswith("B2/S (Seeds): 16,384 cells")
    assert lines[1].split() == ["count", *map(str, range(9))]
    assert lines[2].split()[0] == "dead" and lines[3].split()[0] == "alive"
    assert [int(v.replace(",", "")) for v in lines[3].split()[1:]] == ds.class_counts()[1].tolist()
    assert lines[-1].startswith("missing: ") and "alive·8" in lines[-1]
    full = format_class_table(torch.ones(2, 5, dtype=torch.int64), title="t")
    assert full.splitlines()[-1] == "missing: none"


def test_save_load_round_trip(tmp_path):
    ds = make_dataset("B13/S012V", 3, (6, 9), 2, noise=0.02, seed=11)
    path = tmp_path / "d.safetensors"
    save_dataset(ds, path)
    back = load_dataset(path)
    assert torch.equal(back.x, ds.x) and torch.equal(back.y, ds.y)
    assert back.rule == ds.rule and back.recipe == ds.recipe
    assert torch.equal(make_dataset(**back.recipe).x, ds.x)
    handmade = CADataset(ds.x[:1], ds.y[:1], "B13/S012V")
    save_dataset(handmade, tmp_path / "h.safetensors")
    assert load_dataset(tmp_path / "h.safetensors").recipe == {}


def _write(path, metadata, tensors=None):
    if tensors is None:
        tensors = {k: torch.zeros(1, 4, 4, dtype=torch.uint8) for k in ("x", "y")}
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize(
    ("metadata", "tensors", "match"),
    [
        (None, None, "no metadata"),
        ({"rule": "B3/S23"}, None, "'format'"),
        ({"format": "gzoo.ca.dataset/1", "recipe": "{}"}, None, "lacks 'rule'"),
        ({"format": "gzoo.ca.dataset/1", "rule": "B3/S23"}, None, "lacks 'recipe'"),
        ({"format": "gzoo.ca.dataset/1", "rule": "B3/S23", "recipe": "{oops"}, None, "JSON"),
        ({"format": "gzoo.ca.dataset/1", "rule": "B3/S23", "recipe": "[1]"}, None, "object"),
        ({"format": "gzoo.ca.dataset/1", "rule": "B9/S23", "recipe": "{}"}, None, "bad rule"),
        (
            {"format": "gzoo.ca.dataset/1", "rule": "B3/S23", "recipe": "{}"},
            {"x": torch.zeros(1, 4, 4, dtype=torch.uint8)},
            "'x' and 'y'",
        ),
        (
            {"format": "gzoo.ca.dataset/1", "rule": "B3/S23", "recipe": "{}"},
            {"x": torch.zeros(1, 4, 4), "y": torch.zeros(1, 4, 4)},
            "uint8",
        ),
    ],
)
def test_load_rejects_malformed_files(tmp_path, metadata, tensors, match):
    path = tmp_path / "bad.safetensors"
    _write(path, metadata, tensors)
    with pytest.raises(ValueError, match=match) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_load_rejects_non_safetensors_and_missing_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file") as info:
        load_dataset(junk)
    assert str(junk) in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_dataset(tmp_path / "nope.safetensors")
