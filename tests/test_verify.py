"""verify_exact, dataset_accuracy and rollout_agreement, against hand-built oracle models."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import devices
from gzoo.ca import RULES, Rule, make_dataset, step
from gzoo.models import boards_to_onehot, build_model
from gzoo.verify import (
    ExactResult,
    all_patterns,
    dataset_accuracy,
    probe_patterns,
    rollout_agreement,
    verify_exact,
)


class Oracle(nn.Module):
    """Applies a rule's lookup table exactly (with ``flip`` entries inverted), as logits.

    ``spy`` > 0 makes the answer also depend on the cell ``spy`` rows below (a hidden receptive
    field larger than 3): the output is inverted where that cell is alive and the centre has
    ``spy_count`` live neighbours and is dead.
    """

    def __init__(self, rule, flip=(), receptive_field=3, spy=0, spy_count=0):
        super().__init__()
        rule = Rule.parse(rule)
        lut = rule.lookup_table().clone()
        for s, n in flip:
            lut[s, n] ^= 1
        self.register_buffer("lut", lut.long())
        k = torch.ones(3, 3) if rule.neighbourhood == "moore" else torch.tensor(
            [[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])
        k[1, 1] = 0
        self.register_buffer("kernel", k.view(1, 1, 3, 3))
        self.receptive_field = receptive_field
        self.spy, self.spy_count = spy, spy_count
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        alive = x[:, 1:2]
        n = F.conv2d(F.pad(alive, (1, 1, 1, 1), mode="circular"), self.kernel)[:, 0]
        n, s = n.round().long(), alive[:, 0].round().long()
        nxt = self.lut[s, n]
        if self.spy:
            far = torch.roll(alive[:, 0], -self.spy, dims=-2).round().long()
            nxt = nxt ^ (far & (n == self.spy_count) & (s == 0))
        nxt = nxt.to(x.dtype) + 0 * self.dummy
        return torch.stack([1 - nxt, nxt], 1)


def test_pattern_numbering():
    p = all_patterns()
    assert p.shape == (512, 3, 3) and p.dtype == torch.uint8
    assert len({tuple(q.flatten().tolist()) for q in p}) == 512
    for n in (1, 16, 137, 511):
        for r in range(3):
            for c in range(3):
                assert p[n, r, c] == (n >> (3 * r + c)) & 1
    assert p[16].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]  # bit 4 is the centre


@pytest.mark.parametrize("rule", list(RULES))
def test_oracle_is_exact(rule):
    res = verify_exact(Oracle(rule), rule)
    assert res.exact and res.n_wrong == 0 and res.wrong == []
    assert res.n_patterns == 512 and res.agreement == 1.0
    # a hand-built module's layers cannot be read: no error found is evidence, never a proof
    assert res.method == "evidence" and res.receptive_field is None
    assert res.summary().startswith("no error found: 0/512")
    assert all(c.passed for c in res.checks)


def test_missing_birth_on_6_is_found():
    """HighLife without birth on 6 (Life's rule) is wrong exactly on the C(8,6) = 28 patterns
    of a dead cell with six live neighbours."""
    res = verify_exact(Oracle("B3/S23"), "B36/S23")
    assert res.n_wrong == 28 and not res.exact
    assert res.wrong_classes() == {(0, 6): 28}
    assert all(w.state == 0 and w.count == 6 and w.expected == 1 for w in res.wrong)
    pats = all_patterns()
    for w in res.wrong:
        assert torch.equal(pats[w.index], torch.tensor(w.cells, dtype=torch.uint8))
    assert abs(res.agreement - (1 - 28 / 512)) < 1e-12
    assert "dead·6: 28" in res.summary()
    assert "dead, 6 neighbours" in str(res.wrong[0])


def test_each_flipped_table_entry_costs_its_pattern_count():
    from math import comb

    for s, n in [(0, 0), (1, 8), (1, 2), (0, 4)]:
        res = verify_exact(Oracle("B3/S23", flip=[(s, n)]), "B3/S23")
        assert res.n_wrong == comb(8, n), (s, n)
        assert res.wrong_classes() == {(s, n): comb(8, n)}


def test_von_neumann_neighbourhood():
    """A Moore-count model of a V rule is caught; the V oracle is exact. Counts of wrong
    patterns are reported under the rule's own (von Neumann) neighbourhood."""
    rule = "B13/S012V"
    assert verify_exact(Oracle(rule), rule).exact
    moore = Oracle(Rule(frozenset({1, 3}), frozenset({0, 1, 2})))
    res = verify_exact(moore, rule)
    assert res.n_wrong > 0
    assert max(w.count for w in res.wrong) <= 4


def test_evidence_for_unreadable_models():
    good = verify_exact(Oracle("B3/S23", receptive_field=5), "B3/S23", n_contexts=8)
    assert good.method == "evidence" and good.exact and good.n_contexts == 8
    assert "not a proof" in good.note
    # a model that peeks three rows down looks exact on 3×3 tori (that cell is the centre
    # itself); whatever receptive field it or the caller states, contexts and the locality
    # check catch it
    spy = Oracle("B3/S23", receptive_field=3, spy=3, spy_count=3)
    for stated in (None, 3):
        res = verify_exact(spy, "B3/S23", receptive_field=stated, n_contexts=16)
        assert not res.exact and res.method == "evidence"
        assert res.wrong_classes() == {(0, 3): 56}
        assert "locality" in [c.name for c in res.failures]
        assert 0 < res.agreement < 1


def test_unknown_receptive_field_uses_contexts():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.oracle = Oracle("B3/S23")

        def forward(self, x):
            return self.oracle(x)

    res = verify_exact(Bare(), "B3/S23", n_contexts=4)
    assert res.method == "evidence" and res.receptive_field is None and res.exact
    assert "cannot be read" in res.note and "11×11 boards" in res.note


def test_exhaustive_result_transfers_to_any_board():
    """The exhaustive check's claim: a 3×3 model's errors on real boards are exactly its
    wrong patterns. Compare a random GCNN cell by cell on a 20×17 board."""
    m = build_model("p4m", width=3).eval()
    res = verify_exact(m, "B36/S23")
    wrong = {w.index for w in res.wrong}
    g = torch.Generator().manual_seed(0)
    board = (torch.rand(4, 20, 17, generator=g) < 0.4).to(torch.uint8)
    pred, true = m.step(board), step(board, "B36/S23")
    # pattern index of every cell's 3×3 neighbourhood
    idx = torch.zeros_like(board, dtype=torch.long)
    for r in range(3):
        for c in range(3):
            idx += torch.roll(board, (1 - r, 1 - c), dims=(-2, -1)).long() << (3 * r + c)
    cell_is_wrong_pattern = torch.tensor([i in wrong for i in range(512)])[idx]
    assert torch.equal(pred != true, cell_is_wrong_pattern)


def test_restores_train_mode_and_uses_eval_for_batchnorm():
    m = build_model("multiscale")
    m.train()
    m.stem[1].eval()
    running = m.stem[1].running_mean.clone()
    verify_exact(m, "B3/S23", n_contexts=2)
    assert m.training and not m.stem[1].training and m.conv_3x3.training
    assert torch.equal(m.stem[1].running_mean, running)  # eval mode: statistics untouched


def test_probe_patterns():
    exhaustive = probe_patterns(Oracle("B3/S23"))
    assert exhaustive.p_alive.shape == (512, 1) and exhaustive.method == "exhaustive"
    expected = step(all_patterns(), "B3/S23")[:, 1, 1].bool()
    assert torch.equal(exhaustive.alive[:, 0], expected)
    # logits 0/1 → p(alive) = σ(±1) exactly
    assert torch.allclose(exhaustive.p_alive.max(), torch.sigmoid(torch.tensor(1.0)).double())
    ctx = probe_patterns(Oracle("B3/S23", receptive_field=5), n_contexts=3)
    assert ctx.p_alive.shape == (512, 3) and ctx.method == "contexts"
    assert torch.equal(ctx.alive, expected[:, None].expand(512, 3))


def test_result_to_dict_is_json():
    res = verify_exact(Oracle("B3/S23"), "B36/S23")
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n_wrong"] == 28 and d["exact"] is False and len(d["wrong"]) == 28
    assert isinstance(res, ExactResult)


def test_bad_arguments():
    with pytest.raises(ValueError, match="receptive_field must be a positive int"):
        verify_exact(Oracle("B3/S23"), "B3/S23", receptive_field=0)
    with pytest.raises(ValueError, match="n_contexts"):
        verify_exact(Oracle("B3/S23"), "B3/S23", receptive_field=5, n_contexts=0)
    with pytest.raises(ValueError, match="invalid rule"):
        verify_exact(Oracle("B3/S23"), "B9/S")


def test_dataset_accuracy():
    ds = make_dataset("B36/S23", 4, 16, 4, seed=1)
    assert dataset_accuracy(Oracle("B36/S23"), ds.x, ds.y) == 1.0
    acc = dataset_accuracy(Oracle("B36/S23", flip=[(0, 3)]), ds.x, ds.y)
    wrong = ((ds.x == 0) & (torch.nn.functional.conv2d(
        F.pad(ds.x[:, None].float(), (1, 1, 1, 1), mode="circular"),
        torch.tensor([[1.0, 1, 1], [1, 0, 1], [1, 1, 1]]).view(1, 1, 3, 3))[:, 0] == 3))
    assert abs(acc - (1 - wrong.float().mean().item())) < 1e-9
    with pytest.raises(ValueError, match="equal shape"):
        dataset_accuracy(Oracle("B3/S23"), ds.x, ds.y[:2])


def test_rollout_agreement():
    ok = rollout_agreement(Oracle("B36/S23"), "B36/S23", size=24, steps=12)
    assert ok.identical and ok.mean == 1.0 and ok.first_divergence == [None] * 3
    bad = rollout_agreement(Oracle("B3/S23"), "B36/S23", size=24, steps=12,
                            densities=(0.5,), seed=2)
    assert not bad.identical and bad.first_divergence[0] >= 1 and bad.mean < 1
    assert json.loads(json.dumps(bad.to_dict()))["identical"] is False


@pytest.mark.parametrize("device", devices())
def test_runs_on_model_device(device):
    m = Oracle("B3/S23").to(device)
    res = verify_exact(m, "B3/S23")
    assert res.exact
    x = boards_to_onehot(all_patterns()).to(device)
    assert m(x).device.type == torch.device(device).type
