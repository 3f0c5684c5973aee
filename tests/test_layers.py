"""Hand-written layers: equivariance for every layer × element × dtype × kernel × padding × size
× dilation, stacks, stride, the p8 stencil test, negative controls, and API behaviour."""

import pytest
import torch
from torch import nn

import gzoo
from conftest import devices
from gzoo.equivariance import equivariance_errors
from gzoo.groups import C4, C8, D4
from gzoo.layers import (
    HARMONIC_LAYERS,
    LAYERS,
    GroupBatchNorm,
    GroupPool,
    HarmonicP8Conv,
    P4Conv,
    P4LiftConv,
    P4MConv,
    P4MLiftConv,
    P8Conv,
    P8LiftConv,
    SpatialPool,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
IDS = [c.__name__ for c in LAYERS]
# every layer class, the band-limited p8 variants (rotation="harmonic") included
ALL = LAYERS + HARMONIC_LAYERS
ALL_IDS = [c.__name__ for c in ALL]


def make_input(layer, size, dtype=torch.float64, batch=2, device="cpu"):
    g = [] if layer.lifting else [layer.group_order]
    return torch.randn([batch, layer.in_channels, *g, *size], dtype=dtype, device=device)


def errors(layer, x, elements=None):
    kind = "z2" if layer.lifting else "group"
    return equivariance_errors(layer, x, layer.group, kind, "group", elements)


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("size", [(9, 9), (10, 12)], ids=["odd", "even"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_equivariance_every_element(cls, dtype, k, padding_mode, size, dilation):
    pad = dilation * (k - 1) // 2
    layer = cls(2, 3, k, padding=pad, dilation=dilation, padding_mode=padding_mode).to(dtype)
    with torch.no_grad():
        layer.bias.normal_()  # a non-zero bias must be shared correctly too
    errs = errors(layer, make_input(layer, size, dtype))
    expected = set(range(layer.group_order)) if cls.GROUP is not C8 else {0, 2, 4, 6}
    assert set(errs) == expected
    assert max(errs.values()) <= TOL[dtype], errs


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("device", devices())
def test_equivariance_device_and_zero_padding_valid(cls, device):
    layer = cls(3, 2, 3).to(device)  # padding 0 ("valid") is exactly equivariant too
    x = make_input(layer, (11, 11), torch.float32, device=device)
    assert max(errors(layer, x).values()) <= TOL[torch.float32]
    layer.eval()
    with torch.no_grad():
        assert max(errors(layer, x).values()) <= TOL[torch.float32]


@pytest.mark.parametrize("group", ["p4", "p4m", "p8"])
def test_stack_is_invariant(group):
    lift, conv = {
        "p4": (P4LiftConv, P4Conv), "p4m": (P4MLiftConv, P4MConv), "p8": (P8LiftConv, P8Conv)
    }[group]
    G = lift.GROUP
    net = nn.Sequential(
        lift(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        conv(4, 4, 3, padding=1, padding_mode="circular"),
        GroupBatchNorm(4, G.order), GroupPool("max"),
    ).double()
    x = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    net.train()  # batch statistics: shared over the group axis, so still invariant
    errs = equivariance_errors(net, x, G, "z2", "z2")
    assert max(errs.values()) <= 1e-12
    net(x)
    net.eval()
    assert max(equivariance_errors(net, x, G, "z2", "z2").values()) <= 1e-12


@pytest.mark.parametrize("cls", [P4LiftConv, P4MConv, P8Conv], ids=lambda c: c.__name__)
def test_stride_rule(cls):
    """Stride s is exactly equivariant iff (H + 2p − k) is divisible by s."""
    layer = cls(2, 2, 3, stride=2, padding=1).double()
    exact = errors(layer, make_input(layer, (11, 11)))  # (11 + 2 − 3) % 2 == 0
    broken = errors(layer, make_input(layer, (10, 10)))  # (10 + 2 − 3) % 2 == 1
    assert max(exact.values()) <= 1e-12
    assert max(broken.values()) > 0.1
    pool = SpatialPool(2, mode="max")
    y = torch.randn(1, 2, layer.group_order, 8, 8, dtype=torch.float64)
    assert max(equivariance_errors(pool, y, layer.group, "group", "group").values()) == 0.0


def test_p8_stencil_ring_rotation():
    """A 3×3 patch and its ring-rotated copy give centre responses shifted along the group axis."""
    lift = P8LiftConv(2, 3, 3).double()
    patch = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y = lift(patch)
    assert y.shape == (4, 3, 8, 1, 1)
    for k in range(8):
        rotated = C8.act_z2(patch, k)
        torch.testing.assert_close(lift(rotated), y.roll(k, 2), rtol=0, atol=1e-12)
    conv = P8Conv(2, 3, 3).double()
    fpatch = torch.randn(4, 2, 8, 3, 3, dtype=torch.float64)
    z = conv(fpatch)
    for k in range(8):
        torch.testing.assert_close(conv(C8.act_group(fpatch, k)), z.roll(k, 2), rtol=0, atol=1e-12)
    # whole images under a 45° turn are not exact: that is what the ring rotation buys
    big = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    lift9 = P8LiftConv(2, 3, 3, padding=1).double()
    assert errors(lift9, big, elements=[1])[1] > 1e-3


def _wrong_regular(G, y, g):
    """A plausible bug: inverse direction on the group axis (roll by −k), right spatial action."""
    perm = torch.tensor([G.mul(g, h) for h in range(G.order)])
    return G.act_z2(y.index_select(-3, perm), g)


@pytest.mark.parametrize("cls", [P4LiftConv, P4MConv, P8Conv], ids=lambda c: c.__name__)
def test_negative_control_wrong_permutation_fails(cls):
    layer = cls(2, 2, 3, padding=1).double()
    G = layer.group
    x = make_input(layer, (9, 9))
    y = layer(x)
    tx = (lambda v, g: G.act_z2(v, g)) if layer.lifting else (lambda v, g: G.act_group(v, g))

    @torch.no_grad()
    def err(g):
        return float((layer(tx(x, g)) - _wrong_regular(G, y, g)).norm() / y.norm())

    r = 2 if G is C8 else 1  # the generator of the exact rotations
    assert err(r) > 0.1  # the test can fail: a wrong permutation is caught on r
    assert err(G.mul(r, r)) < 1e-12 if G is not C8 else True  # r² is an involution in C4/D4
    if G is D4:
        # all four mirrors r^k·f are involutions: none of them can catch it, only r and r³ do
        assert max(err(m) for m in (4, 5, 6, 7)) < 1e-12
        assert err(3) > 0.1


def test_wrong_spatial_direction_fails():
    layer = P4LiftConv(1, 2, 3, padding=1).double()
    x = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
        wrong = torch.rot90(y.roll(1, 2), -1, (-2, -1))
        assert float((layer(C4.act_z2(x, 1)) - wrong).norm() / y.norm()) > 0.1


# ---------------------------------------------------------------------- API behaviour
@pytest.mark.parametrize("cls", LAYERS, ids=IDS)
def test_shapes_params_and_bank(cls):
    layer = cls(3, 5, 3, padding=1)
    n = layer.group_order
    x = make_input(layer, (7, 8), torch.float32)
    assert layer(x).shape == (2, 5, n, 7, 8)
    in_g = 1 if layer.lifting else n
    assert layer.weight.shape == ((5, 3, 3, 3) if layer.lifting else (5, 3, n, 3, 3))
    assert layer.bias.shape == (5,)
    bank = layer.expand_filter()
    assert bank.shape == (5 * n, 3 * in_g, 3, 3)
    # identity rows of the bank are the base filter (field-major layout, as e2cnn)
    torch.testing.assert_close(bank[::n].reshape(layer.weight.shape), layer.weight, rtol=0, atol=0)
    # He init over the true fan-in
    fan_in = 3 * in_g * 9
    assert abs(layer.weight.std().item() - (2 / fan_in) ** 0.5) < 0.5 * (2 / fan_in) ** 0.5
    assert "kernel_size=3" in repr(layer)


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect", "replicate"])
def test_export_matches(cls, padding_mode):
    layer = cls(2, 3, 3, padding=1, padding_mode=padding_mode).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = make_input(layer, (8, 9))
    conv = layer.export()
    assert type(conv) is nn.Conv2d
    flat = x if layer.lifting else x.flatten(1, 2)
    y = conv(flat).unflatten(1, (3, layer.group_order))
    torch.testing.assert_close(y, layer(x), rtol=1e-12, atol=1e-12)


def test_padding_modes_equivariant():
    for mode in ("reflect", "replicate"):
        layer = P4MConv(2, 2, 3, padding=1, padding_mode=mode).double()
        assert max(errors(layer, make_input(layer, (8, 8))).values()) <= 1e-12


def test_eval_mode_uses_current_weights_and_passes_gradients():
    """No eval cache in the engine: every call gathers the bank from the weights as they are
    (every write path, for these layers and the twins: test_reference.py)."""
    layer = P4Conv(2, 2, 3, padding=1).eval()
    x = make_input(layer, (6, 6), torch.float32)
    with torch.no_grad():
        y0 = layer(x)
        layer.weight.mul_(2.0)
        torch.testing.assert_close(layer(x), 2 * y0 - layer.bias.view(1, -1, 1, 1, 1))
        layer.load_state_dict({"weight": torch.zeros_like(layer.weight),
                               "bias": torch.ones(2)})
        torch.testing.assert_close(layer(x), torch.ones_like(y0))
    # eval mode with gradients enabled: gradients flow
    out = layer(x).sum()
    out.backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_training_step_changes_output():
    layer = P4MLiftConv(1, 2, 3, padding=1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(2, 1, 6, 6)
    before = layer(x).detach()
    layer(x).pow(2).mean().backward()
    opt.step()
    assert not torch.allclose(layer(x), before)


@pytest.mark.parametrize("cls", [P4Conv, P8LiftConv, HarmonicP8Conv], ids=lambda c: c.__name__)
def test_torchscript_and_trace(cls):
    layer = cls(2, 3, 3, padding=1).eval()
    x = make_input(layer, (6, 6), torch.float32)
    scripted = torch.jit.script(layer)
    traced = torch.jit.trace(layer, x)
    with torch.no_grad():
        ref = layer(x)
        torch.testing.assert_close(scripted(x), ref)
        torch.testing.assert_close(traced(x), ref)
    layer.train()
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), layer(x))


@pytest.mark.slow
def test_torch_compile():
    layer = P4MConv(2, 2, 3, padding=1)
    x = torch.randn(2, 2, 8, 6, 6)
    compiled = torch.compile(layer)
    torch.testing.assert_close(compiled(x), layer(x), rtol=1e-5, atol=1e-5)
    compiled(x).sum().backward()
    assert layer.weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"kernel_size": (3, 5)}, "pair of equal"),
        ({"kernel_size": 3, "padding_mode": "mirror"}, "'mirror'"),
        ({"kernel_size": 3, "padding": "full"}, "'full'"),
        ({"kernel_size": 3, "stride": 0}, "stride"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P4Conv(2, 2, **kwargs)
    with pytest.raises(ValueError, match="in_channels"):
        P4Conv(0, 2, 3)
    with pytest.raises(TypeError, match=r"out_channels .* got float 2\.0"):
        P4Conv(2, 2.0, 3)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (P4Conv(2, 2, 3), (1, 2, 5, 5)),  # a Z² map given to a group layer
        (P4Conv(2, 2, 3), (1, 2, 8, 5, 5)),  # group axis of the wrong size (p4m map into p4)
        (P4MConv(2, 2, 3), (1, 3, 8, 5, 5)),  # wrong channel count
        (P8LiftConv(2, 2, 3), (2, 5, 5)),  # 3-D input
        (P8LiftConv(2, 2, 3), (1, 2, 8, 5, 5)),  # a group map given to a lifting layer
    ],
)
def test_wrong_input_names_both_shapes(layer, shape):
    with pytest.raises(ValueError) as info:
        layer(torch.zeros(shape))
    msg = str(info.value)
    assert str(list(shape)) in msg and "expects" in msg


def test_pooling_and_norm_shapes_and_errors():
    x = torch.randn(2, 3, 8, 6, 6)
    assert GroupPool("max")(x).shape == (2, 3, 6, 6)
    torch.testing.assert_close(GroupPool("mean")(x), x.mean(2))
    assert SpatialPool(2, mode="avg")(x).shape == (2, 3, 8, 3, 3)
    bn = GroupBatchNorm(3, 8)
    y = bn(x)
    # one statistic per field, pooled over batch, group axis and space
    torch.testing.assert_close(y.mean(dim=(0, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\[2, 3, 4, 6, 6\]"):
        bn(torch.randn(2, 3, 4, 6, 6))
    with pytest.raises(ValueError, match="'sum'"):
        GroupPool("sum")
    with pytest.raises(ValueError, match=r"\[2, 3, 6\]"):
        GroupPool()(torch.randn(2, 3, 6))
    for make, error, match in [
        (lambda: SpatialPool(0), ValueError, "kernel_size must be a positive int, got 0"),
        (lambda: SpatialPool(2.0), TypeError, r"kernel_size .* got float 2\.0"),
        (lambda: SpatialPool(2, stride=0), ValueError, r"stride .* got 0"),
        (lambda: SpatialPool(3, padding=2), ValueError, r"padding must be an int in 0\.\.1, got 2"),
        (lambda: GroupBatchNorm(0, 8), ValueError, r"num_features .* got 0"),
        (lambda: GroupBatchNorm(3, True), TypeError, r"group_order .* got bool True"),
    ]:
        with pytest.raises(error, match=match):
            make()


def test_public_imports():
    from gzoo import P4Conv as A

    assert A is P4Conv and gzoo.D4 is D4
    assert [c.GROUP.name for c in LAYERS] == ["p4", "p4", "p4m", "p4m", "p8", "p8"]
