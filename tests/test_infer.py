"""Rule inference from networks and from data."""

import pytest
import torch
from torch import nn

from gzoo.ca import RULES, Rule, make_dataset, simulate, step
from gzoo.infer import infer_rule, infer_rule_from_data, pattern_counts
from gzoo.verify import all_patterns


def _soups(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    density = torch.rand(n, 1, 1, generator=g) * 0.9 + 0.05
    return (torch.rand(n, size, size, generator=g) < density).to(torch.uint8)


# ---------------------------------------------------------------------- from data
@pytest.mark.parametrize("rule", list(RULES.values()), ids=str)
def test_data_recovers_each_rule(rule):
    history = simulate(_soups(), rule, 6)
    res = infer_rule_from_data(history)
    assert res.rule == rule
    assert res.unknown == [] and res.noise == 0.0
    assert res.neighbourhood == rule.neighbourhood
    assert all(c.support > 0 and c.confidence == 1.0 for c in res.classes)
    assert str(rule) in res.summary()


@pytest.mark.parametrize("rule", ["B36/S23", "B2/S013V", "B3678/S34678"])
def test_data_with_label_noise(rule):
    """Each observed next state flipped with probability p: the likelihood choice still wins."""
    rule = Rule.parse(rule)
    x = _soups(32, 32, seed=1)
    y = step(x, rule)
    g = torch.Generator().manual_seed(2)
    flips = (torch.rand(y.shape, generator=g) < 0.1).to(torch.uint8)
    history = torch.stack([x, y ^ flips])  # [2, B, H, W]: one noisy transition per board
    res = infer_rule_from_data(history)
    assert res.rule == rule
    assert 0.08 < res.noise < 0.12
    assert res.fits[rule.neighbourhood]["bic"] < min(f["bic"] for f in res.fits.values()) + 1e-9


def test_data_unseen_classes_are_unknown():
    """Seeds (B2/S) after burn-in never shows a live cell with 7 or 8 neighbours."""
    ds = make_dataset("B2/S", n_boards=16, size=32, steps=4, fresh=False, seed=0)
    history = torch.stack([ds.x, ds.y])
    res = infer_rule_from_data(history)
    assert res.rule is None
    assert {"S7", "S8"} <= set(res.unknown)
    assert res.birth == frozenset({2})
    assert all(c.decision is None for c in res.classes if c.name in res.unknown)
    assert "unknown" in res.summary()


def test_data_accepts_numpy_and_rejects_bad_input():
    hist = simulate(_soups(16, 16), "B3/S23", 3).numpy()  # [T+1, B, H, W] as numpy
    assert infer_rule_from_data(hist).rule == Rule.parse("B3/S23")
    one = infer_rule_from_data(hist[:, 0])  # [T+1, H, W]: one small board, classes may be unseen
    assert one.birth <= {3} and one.survival <= {2, 3} and one.noise == 0.0
    with pytest.raises(ValueError, match=r"\[1, 8, 8\]"):
        infer_rule_from_data(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        infer_rule_from_data(torch.full((3, 8, 8), 2))
    with pytest.raises(TypeError, match="list"):
        infer_rule_from_data([[0]])


# ---------------------------------------------------------------------- from a network
class RuleNet(nn.Module):
    """A 'network' that computes a rule exactly through a lookup on the 3×3 patch (rf 3)."""

    receptive_field = 3

    def __init__(self, rule, corrupt=None):
        super().__init__()
        self.rule = Rule.parse(rule)
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.corrupt = corrupt

    def forward(self, x):
        alive = x[:, 1].round().to(torch.uint8)
        nxt = step(alive, self.rule).float()
        if self.corrupt is not None:
            nxt = self.corrupt(alive, nxt)
        logit = self.scale * (2 * nxt - 1)
        return torch.stack([-logit, logit], 1) / 2


@pytest.mark.parametrize("rule", ["B36/S23", "B2/S", "B13/S012V", "B2/S013V"])
def test_network_rule_is_read_back(rule):
    res = infer_rule(RuleNet(rule), check_steps=8)
    assert res.consistent and res.rule == Rule.parse(rule)
    assert res.misfit[res.neighbourhood] == 0
    assert res.method == "exhaustive"
    assert all(c.margin_min > 0.99 for c in res.classes)
    assert res.check is not None and res.check.identical


def test_von_neumann_network_is_not_moore():
    res = infer_rule(RuleNet("B13/S012V"), check=False)
    assert res.neighbourhood == "von_neumann"
    assert res.misfit["moore"] > 0  # the corners matter to Moore counts, not to this rule
    forced = infer_rule(RuleNet("B13/S012V"), "moore", check=False)
    assert not forced.consistent and forced.rule is None and forced.disagreeing


def test_non_totalistic_network_is_reported_inconsistent():
    def north_only(alive, nxt):  # alive next iff the north neighbour is alive: not totalistic
        return alive.roll(1, -2).float()

    res = infer_rule(RuleNet("B3/S23", corrupt=north_only), check=False)
    assert not res.consistent and res.rule is None
    assert res.misfit["moore"] > 0 and res.misfit["von_neumann"] > 0
    assert res.disagreeing
    assert "not outer-totalistic" in res.summary()


def test_pattern_counts():
    p = all_patterns()
    assert pattern_counts(p, "moore").max() == 8 and pattern_counts(p, "von_neumann").max() == 4
    assert int((pattern_counts(p, "von_neumann") == 4).sum()) == 2 * 16  # corners × centre
    with pytest.raises(ValueError, match="'hex'"):
        pattern_counts(p, "hex")
    with pytest.raises(ValueError, match="'hex'"):
        infer_rule(RuleNet("B3/S23"), "hex")


def test_larger_receptive_field_uses_contexts():
    net = RuleNet("B36/S23")
    net.receptive_field = 5  # declared larger: each pattern is probed in random contexts
    res = infer_rule(net, n_contexts=8, check=False)
    assert res.method == "contexts" and res.n_contexts == 8
    assert res.rule == Rule.parse("B36/S23")
    assert all(c.context_agreement == 1.0 for c in res.classes)

    def peek(alive, nxt):  # also looks two cells to the right: outside the 3×3 window
        return nxt * (1 - alive.roll(-2, -1).float() * (torch.rand(alive.shape) < 0.5))

    noisy = RuleNet("B36/S23", corrupt=peek)
    noisy.receptive_field = 5
    res = infer_rule(noisy, n_contexts=16, check=False)
    assert any(c.context_agreement < 1.0 for c in res.classes)


@pytest.mark.parametrize("name", __import__("gzoo.zoo").zoo.available("ca"))
def test_every_zoo_checkpoint_reads_back_its_rule(name):
    import gzoo

    model = gzoo.load_pretrained(name)
    res = infer_rule(model, check_steps=16, check_size=32)
    assert res.consistent and res.rule == model.rule
    assert res.neighbourhood == model.rule.neighbourhood
    assert res.check.identical
