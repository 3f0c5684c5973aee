"""Certificates that cannot be fooled: a proof only where gzoo read the structure itself and
the empirical checks passed; lying, zero-padded, stochastic and tampered models are caught."""

import pytest
import torch
from torch import nn

import gzoo
from gzoo.ca import simulate, step
from gzoo.certify import read_structure
from gzoo.models import GCNN, CAModel, build_model
from gzoo.verify import verify_exact

RULE = "B3/S23"


@pytest.fixture
def life():
    """An exact zoo GCNN (p4, Life), loaded afresh for each test (tests tamper with it)."""
    return gzoo.load_pretrained("b3s23_p4")


def _soup(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.4).to(torch.uint8)


# ---------------------------------------------------------------------------- structure
@pytest.mark.parametrize(("preset", "kwargs", "local", "bound"), [
    ("p4", {}, True, 3), ("p4m", {"width": 2, "depth": 2}, True, 3), ("p8", {}, True, 3),
    ("tiny", {}, False, 5), ("small", {}, False, 5),
    ("multiscale", {}, False, 15),  # 1 + 2 + 4 + 4 + 2 + 2: an upper bound over branches
    ("tiny", {"kernel_size": 3}, True, 3),
])
def test_structure_is_read_from_the_layers(preset, kwargs, local, bound):
    s = read_structure(build_model(preset, **kwargs))
    assert s.known and s.torus and s.local3 is local and s.receptive_field == bound
    assert bool(s.problems) is not local


def test_declared_receptive_field_is_never_read():
    m = build_model("small")
    m.receptive_field = 3  # a lie: the first layer is 5×5
    assert read_structure(m).receptive_field == 5 and not read_structure(m).local3
    dilated = build_model("p4")
    dilated.lift.dilation, dilated.lift.padding = 3, 3  # reads cells 3 rows away
    s = read_structure(dilated)
    assert s.receptive_field == 7 and not s.local3 and dilated.receptive_field == 3


@pytest.mark.parametrize("tamper", ["zeros", "reflect", "padding 0", "stride"])
def test_boundary_is_read_from_the_layers(tamper):
    m = build_model("p8")
    if tamper in ("zeros", "reflect"):
        m.lift.padding_mode = tamper
    elif tamper == "padding 0":
        m.lift.padding = 0
    else:
        m.lift.stride = 2
    s = read_structure(m)
    assert s.known and not s.torus and not s.local3
    assert any(s.startswith("lift:") for s in s.problems)


def test_conv2d_geometry_is_what_forward_applies():
    m = build_model("tiny", kernel_size=3)
    m.net[0]._reversed_padding_repeated_twice = [2, 2, 2, 2]  # what F.pad actually uses
    assert not read_structure(m).torus
    m = build_model("tiny", kernel_size=3)
    m.net[0].padding_mode = "zeros"
    assert "not a torus" in read_structure(m).summary()


def test_replaced_code_and_hooks_make_the_structure_unreadable(monkeypatch):
    m = build_model("p4")
    m.forward = m.forward  # the same code, but not read from the class
    assert not read_structure(m).known and "forward replaced" in read_structure(m).summary()
    m = build_model("p4")
    m.lift.register_forward_hook(lambda mod, i, o: o)
    assert "hook" in read_structure(m).summary()
    m = build_model("p4")
    m.features = lambda x: x
    assert "'features' replaced" in read_structure(m).summary()

    def features(self, x):  # defined here, swapped into the class
        return torch.relu(self.lift(x))

    monkeypatch.setattr(GCNN, "features", features)
    assert "GCNN.features replaced" in read_structure(build_model("p4")).summary()

    class Sub(GCNN):
        pass

    assert "not one of gzoo's" in read_structure(Sub("p4")).summary()
    m = build_model("p4")
    m.pool = nn.Identity()
    assert "Identity is not a layer" in read_structure(m).summary()


# ---------------------------------------------------------------------------- verdicts
def test_a_zoo_network_is_proved_exact(life):
    res = verify_exact(life, RULE)
    assert res.exact and res.method == "exhaustive" and res.receptive_field == 3
    assert [c.name for c in res.checks] == ["locality", "boards", "determinism"]
    assert all(c.passed for c in res.checks)
    assert "read from the layers" in res.note and "every board of every size" in res.note
    cert = res.certificate()
    assert cert["method"] == "exhaustive" and cert["gzoo_version"] == gzoo.__version__
    assert cert["exact"] is True and cert["covered"] == res.note


class Spy(CAModel):
    """Declares a 3×3 receptive field and computes ``rule`` from the 3×3 window — except that a
    dead cell with 3 live neighbours also looks at the cell ``far`` rows below and stays dead
    when it is alive. On a 3×3 torus that cell is the centre itself (dead): invisible there."""

    receptive_field = 3

    def __init__(self, rule=RULE, far=3):
        super().__init__()
        self.rule, self.far = rule, far
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        alive = x[:, 1].round().to(torch.uint8)
        nxt = step(alive, self.rule)
        from gzoo.ca import neighbour_counts

        far = alive.roll(-self.far, -2)
        nxt = nxt & ~(far & (neighbour_counts(alive) == 3) & (alive == 0))
        z = self.scale * (2 * nxt.to(x.dtype) - 1)
        return torch.stack([-z, z], 1)


def test_a_lying_receptive_field_is_not_exact():
    spy = Spy()
    old_way = verify_exact(spy, RULE, receptive_field=3)  # even when told "3"
    assert not old_way.exact and old_way.method == "evidence"
    assert "locality" in [c.name for c in old_way.failures]
    assert "outside the 3×3 window" in old_way.summary()
    assert "not one of gzoo's" in old_way.note
    # the same lie inside a GCNN subclass: its class is not read, so no proof either
    class SpyGCNN(GCNN):
        def forward(self, x):
            z = super().forward(x)
            return z + 0.0 * x[:, :1].roll(3, -2)

    liar = SpyGCNN("p4")
    liar.load_state_dict(gzoo.load_pretrained("b3s23_p4").state_dict())
    res = verify_exact(liar, RULE)
    assert res.method == "evidence" and res.exact  # it does compute Life: evidence only


def test_a_zero_padded_gcnn_is_not_exact(life):
    board = _soup((32, 32))
    assert torch.equal(life.step(board), step(board, RULE))
    life.lift.padding_mode = "zeros"
    assert not torch.equal(life.step(board), step(board, RULE))  # the 32×32 board disagrees
    res = verify_exact(life, RULE)
    assert not res.exact and res.method == "evidence"
    assert res.n_wrong == 0  # every pattern alone is right: only the boundary is wrong
    assert [c.name for c in res.failures] == ["boards"]
    assert "32×32" in res.summary() and "boundary is not a torus" in res.summary()
    assert "padding_mode 'zeros'" in res.structure


def test_a_stochastic_model_is_not_exact(life):
    class Noisy(GCNN):
        def forward(self, x):
            z = super().forward(x)
            return z + 1e-3 * torch.randn_like(z)  # never flips an answer of this net

    noisy = Noisy("p4")
    noisy.load_state_dict(life.state_dict())
    res = verify_exact(noisy, RULE)
    assert not res.exact and "stochastic" in res.summary()
    assert [c.name for c in res.failures] == ["determinism"]


def test_weight_writes_change_the_answer_in_eval_mode(life):
    """No stale filter bank: after an in-place write the model answers with the new weights."""
    board = _soup((2, 24, 24), seed=3)
    assert not life.training
    before = life.step(board)
    assert torch.equal(before, step(board, RULE))
    life.lift.weight.data.zero_()
    after = life.step(board)
    assert not torch.equal(after, before)
    res = verify_exact(life, RULE)
    assert not res.exact and res.method == "exhaustive"  # a proof that it is now wrong


@pytest.mark.slow
def test_e2cnn_weight_writes_change_the_answer_in_eval_mode():
    m = build_model("p4", backend="e2cnn", width=2).eval()
    assert read_structure(m).local3
    board = _soup((2, 16, 16), seed=4)
    with torch.no_grad():
        m.lift.conv.weights.normal_()
    before = m.step(board)
    m.lift.conv.weights.data.zero_()
    m.lift.conv.bias.data.zero_()
    assert not torch.equal(m.step(board), before)


def test_exact_evidence_model_rollout_matches():
    """An evidence verdict still runs the boards check against the simulator."""
    m = gzoo.load_pretrained("b3s23_small")
    res = verify_exact(m, RULE, n_contexts=8)
    assert res.method == "evidence" and res.exact and res.receptive_field == 5
    assert "receptive field bound 5 > 3" in res.structure
    board = _soup((20, 20), seed=5)
    assert torch.equal(simulate(board, RULE, 3)[-1], _roll(m, board, 3))


def _roll(model, board, steps):
    for _ in range(steps):
        board = model.step(board)
    return board


def test_a_count_without_checks_is_never_a_proof(life):
    quick = verify_exact(life, RULE, checks=False)
    assert quick.n_wrong == 0 and quick.checks == () and quick.method == "evidence"
    assert "not run" in quick.note
    life.lift.padding_mode = "zeros"
    assert verify_exact(life, RULE, checks=False).exact  # blind to the boundary: a count only
    assert not verify_exact(life, RULE).exact
