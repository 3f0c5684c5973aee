"""Groups as data: axioms, and that every action is a homomorphism."""

import itertools

import pytest
import torch

from gzoo.groups import (
    C4,
    C8,
    D4,
    GROUPS,
    QUARTER_TURNS,
    RING_ROTATION,
    Group,
    SpatialAction,
    get_group,
    ring_rotation_index,
)

ALL = [C4, D4, C8]
# every group the constructor accepts: each action × each allowed rotation count × mirror or not
CONSTRUCTIBLE = [
    Group(f"{a.step_degrees}:{n}{'m' if m else ''}", n, m, a)
    for a in (QUARTER_TURNS, RING_ROTATION) for n in a.rotation_counts for m in (False, True)
]


@pytest.mark.parametrize("G", ALL, ids=lambda g: g.name)
def test_group_axioms(G):
    n = G.order
    assert len(set(G.elements)) == n
    for a, b in itertools.product(range(n), repeat=2):
        assert 0 <= G.mul(a, b) < n  # closure
    for a, b, c in itertools.product(range(n), repeat=3):
        assert G.mul(G.mul(a, b), c) == G.mul(a, G.mul(b, c))  # associativity
    for a in range(n):
        assert G.mul(G.identity, a) == a == G.mul(a, G.identity)
        assert G.mul(a, G.inverse[a]) == G.identity == G.mul(G.inverse[a], a)
    # Latin square: every row and column is a permutation
    for a in range(n):
        assert sorted(G.table[a]) == list(range(n))
        assert sorted(G.table[b][a] for b in range(n)) == list(range(n))


def test_orders_and_commutativity():
    assert (C4.order, D4.order, C8.order) == (4, 8, 8)
    assert C4.mul(1, 3) == 0 and C8.mul(3, 5) == 0
    # D4 is not abelian: r·f ≠ f·r
    r, f = 1, 4
    assert D4.mul(r, f) != D4.mul(f, r)
    assert D4.mul(r, f) == 5  # r·f is element 4 + 1 in e2cnn's order
    assert get_group("P4M") is D4 and set(GROUPS) == {"p4", "p4m", "p8"}
    with pytest.raises(ValueError, match="'p6'"):
        get_group("p6")


def test_element_conventions():
    x = torch.arange(6.0).view(2, 3)
    assert torch.equal(C4.act_z2(x, 1), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(D4.act_z2(x, 4), torch.flip(x, (-1,)))
    assert torch.equal(D4.act_z2(x, 5), torch.rot90(torch.flip(x, (-1,)), 1, (-2, -1)))
    # counter-clockwise as displayed: the top-right entry moves to the top-left
    y = torch.tensor([[1, 2], [3, 4]])
    assert C4.act_z2(y, 1)[0, 0] == 2
    # regular action on the group axis: C4 rolls by +k
    f = torch.randn(1, 1, 4, 3, 3)
    for k in range(4):
        assert torch.equal(C4.act_group(f, k), torch.rot90(f.roll(k, 2), k, (-2, -1)))


@pytest.mark.parametrize("G", GROUPS.values(), ids=lambda g: g.name)
@pytest.mark.parametrize("size", [3, 5, 7])
def test_actions_are_homomorphisms(G, size):
    """L_a L_b = L_{ab} for every pair, as the Cayley table says, on random odd square arrays."""
    x = torch.randn(2, size, size)
    fmap = torch.randn(2, G.order, size, size)
    for a, b in itertools.product(range(G.order), repeat=2):
        ab = G.mul(a, b)
        assert torch.equal(G.act_z2(G.act_z2(x, b), a), G.act_z2(x, ab))
        assert torch.equal(G.act_group(G.act_group(fmap, b), a), G.act_group(fmap, ab))


@pytest.mark.parametrize("G", CONSTRUCTIBLE, ids=lambda g: g.name)
def test_every_accepted_group_acts_as_its_table_says(G):
    """Whatever the constructor accepts is a faithful action: a homomorphism consistent with the
    table (so the generator's order is the table's), distinct elements acting differently, and
    exactly ``exact_image_elements`` acting on a non-square map."""
    x = torch.randn(5, 5)
    images = [G.act_z2(x, g) for g in range(G.order)]
    for a, b in itertools.product(range(G.order), repeat=2):
        assert torch.equal(G.act_z2(images[b], a), images[G.mul(a, b)])
    assert len({tuple(im.flatten().tolist()) for im in images}) == G.order  # faithful
    wide = torch.randn(4, 6)
    for g in range(G.order):
        if g in G.exact_image_elements:
            G.act_z2(wide, g)
        else:
            with pytest.raises(ValueError, match="odd square"):
                G.act_z2(wide, g)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("p6", 6, False), ValueError, r"rotations=6 .*quarter turns.*\(1, 2, 4\)"),
        (("p8", 8, False), ValueError, r"rotations=8 .*RING_ROTATION"),
        (("p3", 3, True, RING_ROTATION), ValueError, r"rotations=3 .*\(1, 2, 4, 8\)"),
        (("p16", 16, False, RING_ROTATION), ValueError, "rotations=16"),
        (("p4", 0, False), ValueError, "rotations must be a positive int, got 0"),
        (("p4", 4.0, False), TypeError, r"rotations .* got float 4\.0"),
        (("p4", 4, 1), TypeError, "reflections must be a bool, got 1"),
        (("p4", 4, False, "quarter"), TypeError, r"action must be a SpatialAction.*'quarter'"),
        (("", 4, False), ValueError, "name"),
        ((4, 4, False), TypeError, "name must be a str, got int 4"),
    ],
)
def test_groups_that_would_lie_are_refused(args, error, match):
    with pytest.raises(error, match=match):
        Group(*args)


def test_spatial_actions_are_data():
    assert (QUARTER_TURNS.cycle, RING_ROTATION.cycle) == (4, 8)
    assert RING_ROTATION.rotation_counts == (1, 2, 4, 8)
    assert (C4.action, D4.action, C8.action) == (QUARTER_TURNS, QUARTER_TURNS, RING_ROTATION)
    # p4 through ring rotations is p4: its generator is two 45° steps, i.e. rot90
    x = torch.randn(7, 7)
    via_ring = Group("p4", 4, False, RING_ROTATION)
    for g in range(4):
        assert torch.equal(via_ring.act_z2(x, g), C4.act_z2(x, g))
    with pytest.raises(ValueError, match=r"step_degrees .* got 60"):
        SpatialAction("hexagonal", 60)


@pytest.mark.parametrize("G", [C4, D4], ids=lambda g: g.name)
def test_exact_actions_on_non_square_maps(G):
    x = torch.randn(1, 4, 6)
    for a, b in itertools.product(range(G.order), repeat=2):
        assert torch.equal(G.act_z2(G.act_z2(x, b), a), G.act_z2(x, G.mul(a, b)))


def test_ring_rotation():
    for n in (1, 3, 5, 7):
        x = torch.arange(n * n).view(n, n)
        once = C8.act_z2(x, 1)
        assert sorted(once.flatten().tolist()) == list(range(n * n))  # a permutation
        assert torch.equal(C8.act_z2(once, 1), torch.rot90(x, 1, (-2, -1)))  # square is rot90
        assert once[n // 2, n // 2] == x[n // 2, n // 2]  # centre fixed
    # on a 3×3 stencil it permutes the Moore neighbourhood ccw: top-right → top-centre
    s = torch.arange(9).view(3, 3)
    assert C8.act_z2(s, 1).tolist() == [[1, 2, 5], [0, 4, 8], [3, 6, 7]]
    # Chebyshev rings are preserved
    idx = ring_rotation_index(7)
    for p, q in enumerate(idx):
        assert max(abs(p // 7 - 3), abs(p % 7 - 3)) == max(abs(q // 7 - 3), abs(q % 7 - 3))
    with pytest.raises(ValueError, match="odd square"):
        C8.act_z2(torch.zeros(4, 4), 1)
    with pytest.raises(ValueError, match="odd square"):
        C8.act_z2(torch.zeros(3, 5), 3)
    assert C8.exact_image_elements == (0, 2, 4, 6)


@pytest.mark.parametrize("G", ALL, ids=lambda g: g.name)
def test_kernel_index_tables(G):
    k = 3
    lift = G.kernel_index(k, lifting=True)
    grp = G.kernel_index(k, lifting=False)
    assert lift.shape == (G.order, k * k) and grp.shape == (G.order, G.order * k * k)
    assert torch.equal(lift[0], torch.arange(k * k))  # identity row is the base filter
    assert torch.equal(grp[0], torch.arange(G.order * k * k))
    for row in grp:  # every row is a permutation
        assert torch.equal(row.sort().values, torch.arange(G.order * k * k))


def test_group_map_shape_errors():
    with pytest.raises(ValueError, match=r"size 8 .*\(1, 2, 4, 3, 3\)"):
        D4.act_group(torch.zeros(1, 2, 4, 3, 3), 1)
