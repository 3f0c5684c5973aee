"""e2cnn reference layers: the numpy-2 patch, e2cnn's conventions, exact parity with the
hand-written p4/p4m layers and the harmonic p8 layers, equivariance of all six twins, parameter
counts and API."""

import copy
import inspect
import warnings

import numpy as np
import pytest
import torch
from e2cnn import gspaces
from e2cnn import nn as enn

from conftest import CUDA, devices
from gzoo.equivariance import equivariance_errors
from gzoo.groups import C4, C8, D4
from gzoo.layers import HARMONIC_LAYERS, LAYERS, P4Conv, P4LiftConv, P4MConv, P8Conv
from gzoo.layers.reference import (
    E2CNN_PATCHES,
    REFERENCE_LAYERS,
    REFERENCE_OF,
    E2P4Conv,
    E2P4LiftConv,
    E2P4MConv,
    E2P4MLiftConv,
    E2P8Conv,
    E2P8LiftConv,
    E2Reference,
    load_from_e2cnn,
    param_count,
    param_table,
)

PARITY_TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
HARMONIC_PARITY_TOL = 5e-6
EQUIV_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
IDS = [c.__name__ for c in REFERENCE_LAYERS]
EXACT = [c for c in REFERENCE_LAYERS if c.GROUP is not C8]


def make_input(layer, size=(9, 9), dtype=torch.float64, batch=2, device="cpu"):
    g = [] if layer.lifting else [layer.group_order]
    return torch.randn([batch, layer.in_channels, *g, *size], dtype=dtype, device=device)


def randomize(ref):
    """Random e2cnn coefficients and a non-zero bias (a zero bias would hide bias bugs)."""
    with torch.no_grad():
        ref.conv.weights.normal_()
        ref.conv.bias.normal_()
    return ref


def twin_pair(ref_cls, k=3, padding_mode="zeros", dtype=torch.float64, device="cpu", cin=2):
    """An e2cnn layer with random weights and its hand-written twin loaded from it (for p8 the
    harmonic layer: the ring layer has no exact map)."""
    kw = {"padding": (k - 1) // 2, "padding_mode": padding_mode}
    kw_hand = kw | ({"rotation": "harmonic"} if ref_cls.GROUP is C8 else {})
    ref = randomize(ref_cls(cin, 3, k, **kw)).to(device=device, dtype=dtype)
    hand = ref_cls.TWIN(cin, 3, k, **kw_hand).to(device=device, dtype=dtype)
    return load_from_e2cnn(hand, ref), ref


def assert_parity(a, b, dtype, group=None):
    # harmonic p8: e2cnn samples its basis in float32 (torch's default dtype), so ~1e-7 in both
    tol = HARMONIC_PARITY_TOL if group is C8 else PARITY_TOL[dtype]
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.detach().abs().max()))


# ---------------------------------------------------------------------------- numpy-2 patch
def test_patch_applied_and_p4m_builds_and_runs_on_this_numpy():
    assert E2CNN_PATCHES, "the e2cnn compatibility patch was not applied"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cls in (E2P4MLiftConv, E2P4MConv):
            layer = cls(2, 2, 5, padding=2)
            y = layer(make_input(layer, dtype=torch.float32))
            assert y.shape == (2, 2, 8, 9, 9) and torch.isfinite(y).all()
        # plain e2cnn, as a user of gzoo would call it, works too (shared cached basis path)
        gs = gspaces.FlipRot2dOnR2(4)
        regular = enn.FieldType(gs, [gs.regular_repr])
        conv = enn.R2Conv(regular, regular, 3)
        conv(enn.GeometricTensor(torch.randn(1, 8, 5, 5), conv.in_type))
    noisy = [w for w in caught if "e2cnn" in w.filename]
    assert not noisy, [f"{w.filename}:{w.lineno}: {w.message}" for w in noisy]
    print(f"numpy {np.__version__}, patches: {E2CNN_PATCHES}")


def test_patch_keeps_numpy1_semantics():
    import e2cnn.group.groups.o2group as o2
    import e2cnn.kernels.utils as ku

    assert ku.np.array(3, copy=False).shape == ()  # numpy 2 alone raises here
    a = np.arange(4.0)
    assert ku.np.array(a, copy=False) is a  # "copy only if needed", as in numpy 1
    assert ku.np.array(a) is not a
    assert ku.np.cos is np.cos and o2.np.float is float
    out = ku.psichi(np.linspace(0, 1, 3), 1, k=2, gamma=0.5)
    assert out.shape == (2, 2, 1, 3)
    lift = E2P4MLiftConv(1, 2, 1)  # a one-element basis: torch rejected e2cnn's uint8 mask
    masks = [m._mask for m in lift.modules() if hasattr(m, "_mask")]
    assert masks and all(m.dtype == torch.bool for m in masks)


# ---------------------------------------------------------------------------- conventions
@pytest.mark.parametrize(
    ("group", "gspace"),
    [(C4, lambda: gspaces.Rot2dOnR2(4)), (D4, lambda: gspaces.FlipRot2dOnR2(4)),
     (C8, lambda: gspaces.Rot2dOnR2(8))],
    ids=["p4", "p4m", "p8"],
)
def test_gzoo_actions_are_e2cnn_transform(group, gspace):
    """e2cnn's own GeometricTensor.transform equals gzoo's act_z2 / act_group element by element
    (the index order, rotation direction, mirror axis and regular permutation all agree)."""
    gs = gspace()
    elements = list(gs.fibergroup.elements)
    trivial = enn.FieldType(gs, 2 * [gs.trivial_repr])
    regular = enn.FieldType(gs, 2 * [gs.regular_repr])
    x = torch.randn(1, 2, 7, 7)
    f = torch.randn(1, 2, group.order, 7, 7)
    for g in group.exact_image_elements:  # e2cnn interpolates C8's 45° turns of images
        e = elements[g]
        tx = enn.GeometricTensor(x, trivial).transform(e).tensor.to(x.dtype)
        torch.testing.assert_close(tx, group.act_z2(x, g), rtol=0, atol=1e-6)
        tf = enn.GeometricTensor(f.flatten(1, 2), regular).transform(e).tensor.to(f.dtype)
        torch.testing.assert_close(tf.unflatten(1, (2, group.order)), group.act_group(f, g),
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- parity
@pytest.mark.parametrize("ref_cls", REFERENCE_LAYERS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_parity_with_hand_written(ref_cls, dtype, k, padding_mode):
    """p4, p4m: the pixel layers; p8: the harmonic layers (e2cnn's basis), 45° rows included."""
    hand, ref = twin_pair(ref_cls, k, padding_mode, dtype)
    g = ref_cls.GROUP
    assert_parity(hand.expand_filter(), ref.expand_filter(), dtype, g)  # p4/p4m: bit-exact f32
    x = make_input(hand, (10, 11), dtype)
    assert_parity(hand(x), ref(x), dtype, g)
    hand.eval()
    ref.eval()
    with torch.no_grad():  # the eval caches
        assert_parity(hand(x), ref(x), dtype, g)


P8_REFS = [E2P8LiftConv, E2P8Conv]


@pytest.mark.parametrize("ref_cls", P8_REFS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_harmonic_parity_to_float64_precision(ref_cls, k):
    """With e2cnn's basis sampled in float64 the harmonic layer reproduces e2cnn's whole C8 bank to
    float64 rounding: the two parameterisations are the same kernel space."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e2cnn samples its basis in the default dtype
    try:
        ref = randomize(ref_cls(2, 3, k, padding=k // 2))
    finally:
        torch.set_default_dtype(old)
    hand = ref_cls.TWIN(2, 3, k, padding=k // 2, rotation="harmonic", dtype=torch.float64)
    load_from_e2cnn(hand, ref)
    assert hand.weight.numel() + 3 == param_count(ref)  # same number of coefficients
    assert_parity(hand.expand_filter(), ref.expand_filter(), torch.float64)
    x = make_input(hand, (11, 11))
    assert_parity(hand(x), ref(x), torch.float64)


@pytest.mark.parametrize("ref_cls", P8_REFS, ids=lambda c: c.__name__)
def test_p8_ring_layer_cannot_load_e2cnn(ref_cls):
    with pytest.raises(ValueError, match="rotation='harmonic'"):
        load_from_e2cnn(ref_cls.TWIN(2, 3, 3), ref_cls(2, 3, 3))
    with pytest.raises(ValueError, match="dilation 1"):
        load_from_e2cnn(ref_cls.TWIN(2, 3, 3, dilation=2, rotation="harmonic"),
                        ref_cls(2, 3, 3, dilation=2))


@pytest.mark.parametrize("ref_cls", EXACT, ids=[c.__name__ for c in EXACT])
def test_parity_stride_dilation_reflect(ref_cls):
    kw = {"stride": 2, "padding": 2, "dilation": 2, "padding_mode": "reflect"}
    ref = randomize(ref_cls(2, 3, 3, **kw)).double()
    hand = load_from_e2cnn(ref_cls.TWIN(2, 3, 3, **kw).double(), ref)
    x = make_input(hand, (11, 12))
    assert_parity(hand(x), ref(x), torch.float64)


@pytest.mark.parametrize("ref_cls", EXACT, ids=[c.__name__ for c in EXACT])
@pytest.mark.parametrize("device", devices())
def test_parity_on_device(ref_cls, device):
    hand, ref = twin_pair(ref_cls, 3, "zeros", torch.float32, device)
    x = make_input(hand, (9, 9), torch.float32, device=device)
    assert_parity(hand(x), ref(x), torch.float32)


def test_parity_negative_control():
    """Loading any non-identity row as the base filter is off by ~100%: the test can fail."""
    ref = randomize(E2P4MConv(2, 3, 3, padding=1)).double()
    hand = P4MConv(2, 3, 3, padding=1).double()
    x = make_input(hand)
    with torch.no_grad():
        y = ref(x)
        filt, bias = ref.conv.expand_parameters()
        for g in (1, 4, 5):  # r, the mirror f, r·f
            hand.weight.copy_(filt[g::8].reshape(hand.weight.shape))
            hand.bias.copy_(bias[::8])
            assert float((hand(x) - y).norm() / y.norm()) > 0.3


def test_load_rejects_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        load_from_e2cnn(P4Conv(2, 3, 3), E2P4Conv(2, 3, 5))
    with pytest.raises(ValueError, match="does not match"):
        load_from_e2cnn(P4Conv(2, 3, 3), E2P4MConv(2, 3, 3))
    with pytest.raises(ValueError, match="does not match"):
        load_from_e2cnn(P4LiftConv(2, 3, 3, bias=False), E2P4LiftConv(2, 3, 3))
    with pytest.raises(ValueError, match="p8"):
        load_from_e2cnn(P8Conv(2, 3, 3), E2P8Conv(2, 3, 3))
    with pytest.raises(ValueError, match="does not match"):
        load_from_e2cnn(P8Conv(2, 3, 5, rotation="harmonic"), E2P8Conv(2, 3, 3))
    with pytest.raises(TypeError):
        load_from_e2cnn(E2P4Conv(2, 3, 3), E2P4Conv(2, 3, 3))


# ---------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("ref_cls", REFERENCE_LAYERS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_reference_equivariance(ref_cls, dtype, k, padding_mode):
    """The same test and tolerances as the hand-written layers: every element of p4 and p4m,
    the 90° subgroup {0, 2, 4, 6} of p8."""
    layer = randomize(ref_cls(2, 3, k, padding="same", padding_mode=padding_mode)).to(dtype)
    kind = "z2" if layer.lifting else "group"
    errs = equivariance_errors(layer, make_input(layer, (9, 10), dtype), layer.group, kind, "group")
    expected = set(range(layer.group_order)) if ref_cls.GROUP is not C8 else {0, 2, 4, 6}
    assert set(errs) == expected
    assert max(errs.values()) <= EQUIV_TOL[dtype], errs
    assert layer.check_equivariance().keys() == errs.keys()


# ---------------------------------------------------------------------------- parameters
def report_param_counts(in_channels=1, out_channels=1, kernel_size=3):
    """Test helper: print hand-written vs e2cnn parameter counts for every layer pair."""
    rows = param_table(in_channels, out_channels, kernel_size)
    print(f"\nparameters, {in_channels}→{out_channels} fields, {kernel_size}×{kernel_size}:")
    for r in rows:
        print(f"  {r['layer']:12s} hand-written {r['hand_written']:5d}   e2cnn {r['e2cnn']:5d}")
    return {r["layer"]: (r["hand_written"], r["e2cnn"]) for r in rows}


def test_param_counts():
    counts = report_param_counts(1, 1, 3)
    # weights + one bias per output field; e2cnn's 3×3 basis: centre + ring frequencies 0,1,2
    assert counts == {
        "P4LiftConv": (9 + 1, 6 + 1), "P4Conv": (36 + 1, 24 + 1),
        "P4MLiftConv": (9 + 1, 6 + 1), "P4MConv": (72 + 1, 48 + 1),
        "P8LiftConv": (9 + 1, 6 + 1), "P8Conv": (72 + 1, 48 + 1),
    }
    big = report_param_counts(2, 3, 5)
    assert all(e < h for h, e in big.values())
    ref = E2P4MConv(2, 3, 5)
    assert param_count(ref) == ref.conv.basisexpansion.dimension() + 3


# ---------------------------------------------------------------------------- API
def test_same_constructor_and_mapping():
    assert set(REFERENCE_OF) == set(LAYERS)
    for hand_cls, ref_cls in REFERENCE_OF.items():
        assert ref_cls.TWIN is hand_cls and ref_cls.GROUP is hand_cls.GROUP
        # the same arguments; p8 layers also take rotation= ("ring" or "harmonic")
        extra = {"rotation"} if hand_cls.GROUP is C8 else set()
        assert inspect.signature(ref_cls).parameters.keys() | extra == (
            inspect.signature(hand_cls).parameters.keys())
    ref = E2P4MConv(2, 3, (3, 3), padding="same", dilation=2, padding_mode="reflect",
                    dtype=torch.float64)
    assert (ref.group, ref.group_name, ref.group_order, ref.lifting) == (D4, "p4m", 8, False)
    assert (ref.kernel_size, ref.padding, ref.dilation) == (3, 2, 2)
    assert ref.conv.weights.dtype == torch.float64
    assert ref(make_input(ref)).shape == (2, 3, 8, 9, 9)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="padding_mode"):
        E2P4Conv(2, 3, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="odd"):
        E2P4Conv(2, 3, 4)
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\], got shape \[1, 3, 9, 9\]"):
        E2P4LiftConv(2, 3, 3)(torch.randn(1, 3, 9, 9))
    with pytest.raises(ValueError, match=r"\[B, 2, 8, H, W\], got shape \[1, 2, 4, 9, 9\]"):
        E2P4MConv(2, 3, 3)(torch.randn(1, 2, 4, 9, 9))


def test_eval_cache_state_dict_and_grads():
    ref = randomize(E2P4Conv(2, 3, 3, padding=1)).double()
    keys = set(ref.state_dict())
    x = make_input(ref)
    y = ref(x)
    copy.deepcopy(ref)  # the call left no autograd graph on the module
    ref.eval()
    assert set(ref.state_dict()) == keys  # no mode-dependent cache keys
    with torch.no_grad():
        torch.testing.assert_close(ref(x), y, rtol=0, atol=0)
        ref.conv.weights.mul_(2.0)  # in-place change: the cache is rebuilt
        ref.eval()
        y2 = ref(x)
    assert set(ref.state_dict()) == keys
    ref.train()
    torch.testing.assert_close(y2, ref(x), rtol=0, atol=0)
    ref.eval()
    ref(x).sum().backward()  # eval mode with autograd on: weight gradients flow
    assert ref.conv.weights.grad is not None and ref.conv.weights.grad.abs().sum() > 0
    fresh = E2P4Conv(2, 3, 3, padding=1).double()
    fresh.load_state_dict(ref.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ref(x), rtol=0, atol=0)


def test_eval_cache_serves_repeated_calls(monkeypatch):
    """The twins' cache does cache: e2cnn's expansion runs once for repeated eval calls under
    no_grad, again after a weight write, and on every call that records gradients."""
    ref = randomize(E2P4MConv(2, 3, 3, padding=1)).eval()
    calls = []
    expand = ref.conv.expand_parameters
    monkeypatch.setattr(ref.conv, "expand_parameters", lambda: calls.append(1) or expand())
    x = make_input(ref, dtype=torch.float32)
    with torch.no_grad():
        for _ in range(3):
            ref(x)
        assert len(calls) == 1
        ref.conv.weights.data[0] += 1.0
        ref(x)
        ref(x)
        assert len(calls) == 2
    ref(x)
    ref(x)
    assert len(calls) == 4


# ---------------------------------------------------------------------------- weight writes
def _weight(layer):
    """The parameter a layer's bank is built from (e2cnn: the basis coefficients)."""
    return layer.conv.weights if isinstance(layer, E2Reference) else layer.weight


def _bias(layer):
    return layer.conv.bias if isinstance(layer, E2Reference) else layer.bias


def _write(layer, other, how):
    """Change ``layer``'s weights in place, the way ``how`` says (``other``: new values)."""
    with torch.no_grad():
        if how == "weight.data.zero_()":
            _weight(layer).data.zero_()
        elif how == "bias.data.add_()":
            _bias(layer).data.add_(1.0)
        elif how == "weight.data = ...":
            _weight(layer).data = _weight(other).data.clone()
        elif how == "copy_":
            _weight(layer).copy_(_weight(other))
        elif how == "load_state_dict":
            layer.load_state_dict(other.state_dict())
        elif how in ("SGD step (foreach)", "Adam step (fused)"):
            params = list(layer.parameters())
            opt = (torch.optim.SGD(params, lr=0.5, foreach=True) if how.startswith("SGD")
                   else torch.optim.Adam(params, lr=0.5, fused=True))
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        elif how == ".double()":
            layer.double()
        else:
            raise AssertionError(how)


WRITES = ["weight.data.zero_()", "bias.data.add_()", "weight.data = ...", "copy_",
          "load_state_dict", "SGD step (foreach)", "Adam step (fused)", ".double()"]
BOTH = [*LAYERS, *HARMONIC_LAYERS, *REFERENCE_LAYERS]  # harmonic p8: an eval cache, as e2cnn


@pytest.mark.parametrize("cls", BOTH, ids=[c.__name__ for c in BOTH])
@pytest.mark.parametrize("how", WRITES)
def test_eval_output_follows_every_weight_write(cls, how):
    """In eval mode under no_grad, after any write the output is the one the new weights give
    (as computed in train mode, where no cache is ever used) — never the old one."""
    def make():
        layer = cls(2, 3, 3, padding=1)
        if isinstance(layer, E2Reference):
            randomize(layer)
        else:
            with torch.no_grad():
                layer.bias.normal_()
        return layer.eval()

    layer, other = make(), make()
    x = make_input(layer, (7, 7), torch.float32)
    with torch.no_grad():
        before = layer(x)
        layer(x)  # a cache, if any, is built and served
        _write(layer, other, how)
        x = x.to(_weight(layer).dtype)
        after = layer(x)
        layer.train()
        expected = layer(x)
        layer.eval()
    assert not torch.equal(after.to(before.dtype), before)
    torch.testing.assert_close(after, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("cls", [P4Conv, E2P4Conv], ids=lambda c: c.__name__)
def test_eval_output_follows_to_device(cls):
    layer = cls(2, 3, 3, padding=1).eval()
    x = make_input(layer, (7, 7), torch.float32)
    with torch.no_grad():
        y = layer(x)
        layer.to("cuda")
        torch.testing.assert_close(layer(x.cuda()).cpu(), y, rtol=1e-5, atol=1e-5)
        _weight(layer).data.mul_(-1.0)
        layer.to("cpu")
        assert not torch.allclose(layer(x), y)


def test_layers_do_not_share_bases():
    """e2cnn shares sampled bases between identical layers by default; the twins must not."""
    a, b = E2P4MConv(2, 2, 3), E2P4MConv(2, 2, 3)
    a.double()
    y = b(make_input(b, dtype=torch.float32))  # would fail if b's basis had become float64
    assert y.dtype == torch.float32


def test_export_matches():
    ref = randomize(E2P4MLiftConv(2, 3, 3, padding=1, padding_mode="circular")).double()
    x = make_input(ref)
    conv = ref.export()
    assert isinstance(conv, torch.nn.Conv2d) and ref.training
    torch.testing.assert_close(conv(x).unflatten(1, (3, 8)), ref(x), rtol=1e-12, atol=1e-12)
