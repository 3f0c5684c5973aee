"""Rule inference from networks and from data."""

import pytest
import torch
from torch import nn

from gzoo.ca import RULES, Rule, make_dataset, simulate, step
from gzoo.checkpoint import TASK_CA, zoo_entries
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
    assert res.family == rule.family
    assert res.fits[res.family]["bic"] < min(f["bic"] for f in res.fits.values()) + 1e-9


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
    assert res.misfit[res.family] == 0 and res.family == Rule.parse(rule).family
    assert res.method == "exhaustive"
    assert all(c.margin_min > 0.99 for c in res.classes)
    assert res.check is not None and res.check.identical


def test_von_neumann_network_is_not_moore():
    res = infer_rule(RuleNet("B13/S012V"), check=False)
    assert res.neighbourhood == "von_neumann"
    assert res.misfit["outer_totalistic"] > 0  # the corners change Moore counts, not this rule
    forced = infer_rule(RuleNet("B13/S012V"), "moore", check=False)
    assert not forced.consistent and forced.rule is None and forced.disagreeing


def test_non_totalistic_network_is_read_in_the_smallest_family_that_fits():
    def north_only(alive, nxt):  # alive next iff the north neighbour is alive: not totalistic
        return alive.roll(1, -2).float()

    net = RuleNet("B3/S23", corrupt=north_only)
    res = infer_rule(net, check_steps=8)
    expected = Rule.from_table(sum(1 << n for n in range(512) if (n >> 1) & 1))  # N = bit 1
    assert res.rule == expected and res.family == "map"
    assert res.misfit["outer_totalistic"] > 0 and res.misfit["isotropic"] > 0
    assert res.check is not None and res.check.identical
    forced = infer_rule(net, "moore", check=False)
    assert not forced.consistent and forced.rule is None and forced.disagreeing
    assert "not outer-totalistic" in forced.summary()


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


@pytest.mark.parametrize("name", [r["name"] for r in zoo_entries(TASK_CA)])
def test_every_zoo_checkpoint_reads_back_its_rule(name):
    import gzoo

    model = gzoo.load_pretrained(name)
    res = infer_rule(model, check_steps=16, check_size=32)
    assert res.consistent and res.rule == model.checkpoint.rule
    assert res.neighbourhood == model.checkpoint.rule.neighbourhood
    assert res.check.identical


# ---------------------------------------------------------------------- families and "no rule"
def _random_rule(family: str, seed: int) -> Rule:
    import random

    from gzoo.ca import get_family

    rng = random.Random(seed)
    fam = get_family(family)
    while True:  # a member of the family that no smaller family holds
        rule = Rule.from_table(fam.table([rng.randint(0, 1) for _ in range(fam.n_classes)]))
        if rule.family == family:
            return rule


@pytest.mark.parametrize("family", ["isotropic", "rotational", "map", "von_neumann"])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_data_from_each_family_comes_back_in_that_family(family, noise):
    rule = _random_rule(family, seed=len(family))
    x = _soups(32, 32, seed=3)
    y = step(x, rule)
    g = torch.Generator().manual_seed(4)
    y = y ^ (torch.rand(y.shape, generator=g) < noise).to(torch.uint8)
    res = infer_rule_from_data(torch.stack([x, y]))
    assert res.rule == rule and res.family == family, res.summary()
    assert res.conflicting == [] and res.reason is None
    assert abs(res.noise - noise) < 0.005
    if family == "isotropic":
        assert "/" in str(res.rule) and not str(res.rule).startswith("MAP")


def test_isotropic_data_gives_the_hensel_string():
    history = simulate(_soups(), "B3/S2-i34q", 6)
    res = infer_rule_from_data(history)
    assert str(res.rule) == "B3/S2-i34q" and res.family == "isotropic"
    assert res.fits["outer_totalistic"]["unexplained"] > 0  # no B/S rule explains tlife


def test_no_rule_for_coin_flips_reversed_and_shuffled_histories():
    g = torch.Generator().manual_seed(0)
    coin = (torch.rand(7, 16, 32, 32, generator=g) < 0.5).to(torch.uint8)
    life = simulate(_soups(), "B3/S23", 6)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    for name, history in (("coin", coin), ("reversed", life.flip(0)),
                          ("shuffled", life[perm])):
        res = infer_rule_from_data(history)
        assert res.rule is None, (name, res.summary())
        assert res.reason and "no rule" in res.summary(), name
    coin_res = infer_rule_from_data(coin)
    assert coin_res.noise > 0.4 and ("contradicted" in coin_res.reason
                                     or "max_noise" in coin_res.reason)
    rev = infer_rule_from_data(life.flip(0))
    assert rev.conflicting and "contradicted" in rev.reason


def test_one_sided_noise_is_still_noise():
    rule = Rule.parse("B36/S23")
    x = _soups(32, 32, seed=5)
    y = step(x, rule)
    g = torch.Generator().manual_seed(6)
    y = y | (torch.rand(y.shape, generator=g) < 0.03).to(torch.uint8)  # dead → alive only
    res = infer_rule_from_data(torch.stack([x, y]))
    assert res.rule == rule, res.summary()


def test_data_inference_arguments_are_checked():
    hist = simulate(_soups(4, 16), "B3/S23", 2)
    for kwargs, match in (({"max_noise": 0.5}, "max_noise"), ({"min_confidence": 0.2},
                          "min_confidence"), ({"family": "hex"}, "'hex'")):
        with pytest.raises(ValueError, match=match):
            infer_rule_from_data(hist, **kwargs)
    restricted = infer_rule_from_data(simulate(_soups(), "B3/S2-i34q", 4),
                                      family="outer_totalistic")
    assert restricted.rule is None and restricted.family == "outer_totalistic"


def test_stochastic_and_context_reading_networks_have_no_rule():
    class Coin(nn.Module):
        receptive_field = 3

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return torch.randn(x.shape[0], 2, *x.shape[2:]) + self.w

    res = infer_rule(Coin(), check=False)
    assert res.rule is None and "stochastic" in res.reason

    def peek(alive, nxt):  # depends on a cell two columns away
        return alive.roll(-2, -1).float()

    far = RuleNet("B3/S23", corrupt=peek)
    far.receptive_field = 5
    res = infer_rule(far, n_contexts=8, check=False)
    assert res.rule is None and "outside the 3×3 block" in res.reason


# ---------------------------------------------------------------------- symmetry
@pytest.mark.parametrize(
    ("elements", "name", "recommended"),
    [((0, 1, 2, 3), "C4", "p4"), ((0, 4), "D1 (|)", "plain CNN"), ((0,), "1", "plain CNN"),
     ((0, 2, 5, 7), "D2 (/ \\)", "plain CNN"), (tuple(range(8)), "D4", "p4m")],
)
def test_symmetry_discovered_from_noisy_data(elements, name, recommended):
    import random

    from gzoo.ca.stencil import orbit_labels
    from gzoo.infer import infer_symmetry
    labels = orbit_labels("p4m", elements).tolist()
    rng = random.Random(len(elements))
    while True:
        value = {lab: rng.randint(0, 1) for lab in set(labels)}
        rule = Rule.from_table(sum(value[lab] << p for p, lab in enumerate(labels)))
        if rule.symmetry.elements == elements and not rule.symmetry.ring:
            break
    x = _soups(32, 32, seed=7)
    y = step(x, rule) ^ (torch.rand(x.shape, generator=torch.Generator().manual_seed(8))
                         < 0.01).to(torch.uint8)
    sym = infer_symmetry(torch.stack([x, y]))
    assert sym.symmetry.name == name and sym.recommended == recommended, sym.table()
    assert all(sym.disagreement[sym.names[g]] == 0 for g in elements)
    assert all(sym.disagreement[sym.names[g]] > 0 for g in range(8) if g not in elements)
    assert sym.compared["ring 45°"] > 0


def test_symmetry_of_outer_totalistic_and_von_neumann_rules():
    from gzoo.infer import infer_symmetry

    life = infer_symmetry(simulate(_soups(), "B3/S23", 4))
    assert life.symmetry.name == "D4" and life.symmetry.ring and life.recommended == "p8"
    vn = infer_symmetry(RuleNet("B13/S012V"))
    assert vn.source == "model" and vn.symmetry.name == "D4" and not vn.symmetry.ring
    assert vn.recommended == "p4m" and vn.disagreement["ring 45°"] > 0
