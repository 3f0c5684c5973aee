"""The patterns recipe: the covering torus, class-balanced weights, the batched population, its
per-slot Adam, re-draws on plateaus and several rules in flight."""

import pytest
import torch

from gzoo.ca import Rule, get_family, step
from gzoo.ca.covering import covering_torus, pattern_multiplicity, search_covering_torus
from gzoo.ca.stencil import pattern_index
from gzoo.models import boards_to_onehot, build_model
from gzoo.population import PatternData, Population, SlotAdam, train_population
from gzoo.verify import verify_exact

pytestmark = pytest.mark.usefixtures("one_thread")


def test_covering_torus_holds_every_pattern():
    board = covering_torus()
    assert board.shape == (24, 32) and board.dtype == torch.uint8
    m = pattern_multiplicity(board)
    assert m.shape == (512,) and bool((m > 0).all()) and int(m.sum()) == 24 * 32
    assert search_covering_torus(12, 12, flips=2000) is None  # 144 windows < 512 patterns


@pytest.mark.parametrize(("rule", "family"), [
    ("B36/S23", None), ("B13/S012V", None), ("B3/S2-i34q", None), ("B36/S23", "map")])
def test_pattern_data_balances_the_classes(rule, family):
    data = PatternData.build(rule, family=family)
    r = Rule.parse(rule)
    fam = get_family(r.family if family is None else family)
    assert data.family == fam.name
    board = covering_torus()
    assert torch.equal(data.y, step(board, r).long())
    assert torch.equal(data.index, pattern_index(board))
    assert torch.equal(data.x, boards_to_onehot(board[None]))
    per_class = torch.zeros(fam.n_classes, dtype=torch.float64).index_add_(
        0, fam.classes[data.index.flatten()], data.weight.flatten().double())
    torch.testing.assert_close(per_class, torch.full_like(per_class, 1 / fam.n_classes))


def test_wrong_patterns_counts_a_pattern_once():
    data = PatternData.build("B3/S23")
    margins = torch.ones(2, 24, 32)
    margins[1, 0, 0] = margins[1, 5, 7] = -1.0
    wrong = data.wrong_patterns(margins)
    assert wrong.shape == (2, 512) and not wrong[0].any()
    assert set(wrong[1].nonzero().flatten().tolist()) == {int(data.index[0, 0]),
                                                          int(data.index[5, 7])}


def test_population_is_its_nets_side_by_side():
    pop = Population(lambda: build_model("p4m", width=2), [3, 1003, 2003])
    x = boards_to_onehot(covering_torus()[None])
    z = pop(x)
    assert z.shape == (3, 1, 2, 24, 32)
    for k, seed in enumerate([3, 1003, 2003]):
        torch.manual_seed(seed)
        fresh = build_model("p4m", width=2)
        with torch.no_grad():
            torch.testing.assert_close(z[k], fresh(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(pop.net(k)(x), fresh(x), rtol=0, atol=0)
    pop.draw(1, 7)
    torch.manual_seed(7)
    assert all(torch.equal(pop.state(1)[n], v) for n, v in build_model(
        "p4m", width=2).state_dict().items())
    l1 = pop.l1()
    expected = sum(p.abs().sum() for n, p in pop.net(0).named_parameters() if "weight" in n)
    torch.testing.assert_close(l1[0], expected)


def test_slot_adam_is_adam_per_slot():
    g = torch.Generator().manual_seed(0)
    stacked = {"w": torch.randn(2, 3, generator=g)}
    refs = [stacked["w"][k].clone().requires_grad_(True) for k in range(2)]
    opts = [torch.optim.Adam([r], lr=0.1) for r in refs]
    mine = SlotAdam(stacked, lr=0.1)
    for t in range(5):
        grads = torch.randn(2, 3, generator=g)
        if t == 3:  # slot 1 re-drawn: fresh weights and a fresh Adam
            mine.reset(1)
            with torch.no_grad():
                stacked["w"][1] = refs[1].detach()
            opts[1] = torch.optim.Adam([refs[1]], lr=0.1)
        mine.step({"w": grads})
        for k in range(2):
            refs[k].grad = grads[k].clone()
            opts[k].step()
        for k in range(2):
            torch.testing.assert_close(stacked["w"][k], refs[k].detach(), rtol=1e-6, atol=1e-7)


def test_redraws_follow_the_seed_rule_and_the_budget():
    ticks, seen = [], set()

    def never(_, net):
        return False

    [out] = train_population(
        lambda: build_model("p4", width=1), [PatternData.build("B3/S23")], population=2,
        steps=3, restarts=2, patience=10**6, seed=5, lr=1e-2, l1=0.0, margin=1.0, hinge=1.0,
        check_every=1, verify=never, on_tick=lambda job, rec: ticks.append(rec))
    seen = {t.seed for t in ticks}
    assert [t.global_step for t in ticks] == list(range(1, 7)) and ticks[0].n_wrong > 0
    assert not out.exact and out.draws == 4 and out.steps == 6
    assert seen <= {5, 1005, 2005, 3005} and {2005, 3005} & seen
    assert out.seed in {5, 1005, 2005, 3005} and 0 < out.n_wrong <= 512
    assert out.hard.shape == (512,) and int(out.hard.sum()) > 0


def test_plateaus_redraw_before_the_budget():
    ticks = []
    [out] = train_population(
        lambda: build_model("p4", width=1), [PatternData.build("B3/S23")], population=1,
        steps=30, restarts=3, patience=4, seed=0, lr=1e-9, l1=0.0, margin=1.0, hinge=1.0,
        check_every=2, verify=lambda j, n: False, on_tick=lambda job, rec: ticks.append(rec))
    # a learning rate of 1e-9 never improves: each net is stale after its first checks and
    # re-drawn long before its 30 steps; the last one, with no re-draw left, runs all 30
    assert out.draws == 4
    starts = [t.global_step for t, prev in zip(ticks[1:], ticks, strict=False)
              if t.restart != prev.restart]
    assert len(starts) == 3
    assert all(b - a <= 8 for a, b in zip([0, *starts], starts, strict=False))
    assert out.steps == starts[-1] - 1 + 30  # a tick shows the net that stepped


def test_several_rules_in_flight_each_proved():
    rules = ["B3/S23", "B36/S23", "B2/S"]
    done = []

    def proved(j, net):
        res = verify_exact(net, rules[j])
        return res.exact and res.method == "exhaustive"

    outs = train_population(
        lambda: build_model("p8"), [PatternData.build(r) for r in rules], population=2,
        steps=2000, restarts=4, patience=400, seed=0, lr=1e-2, l1=1e-5, margin=1.0, hinge=1.0,
        check_every=50, verify=proved, in_flight=2, on_done=done.append)
    assert [o.job for o in outs] == [0, 1, 2] and sorted(o.job for o in done) == [0, 1, 2]
    for rule, o in zip(rules, outs, strict=True):
        assert o.exact, rule
        net = build_model("p8")
        net.load_state_dict(o.state)
        assert verify_exact(net, rule).exact
