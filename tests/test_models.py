"""Models: shapes, parameter counts, torus padding, receptive fields, group invariance, step(),
the registry, argument checks and the e2cnn backend."""

import pytest
import torch

from conftest import devices
from gzoo.groups import ring_rotation_index
from gzoo.models import (
    GCNN,
    MODELS,
    PRESETS,
    CAModel,
    MultiScale,
    SimpleCNNSmall,
    SimpleCNNTiny,
    boards_to_onehot,
    build_model,
    predict_logits,
    predict_next,
    preset_name,
)
from gzoo.verify import all_patterns

ALL_PRESETS = sorted(PRESETS)
ORDER = {"p4": 4, "p4m": 8, "p8": 8}


def onehot(b=3, h=9, w=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return boards_to_onehot(torch.randint(0, 2, (b, h, w), generator=g))


def built(preset, **kw):
    return build_model(preset, **kw).eval()


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_shapes_and_nonsquare_boards(preset):
    m = built(preset)
    for shape in [(1, 5, 5), (3, 9, 11), (2, 16, 7)]:
        x = onehot(*shape)
        y = m(x)
        assert y.shape == (shape[0], 2, shape[1], shape[2])
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all()


def gcnn_params(width, depth, order):
    return (2 * width * 9 + width) + depth * (width * width * order + width) + (2 * width + 2)


@pytest.mark.parametrize("group", ["p4", "p4m", "p8"])
@pytest.mark.parametrize(("width", "depth"), [(4, 1), (2, 0), (3, 2)])
def test_gcnn_param_count(group, width, depth):
    m = GCNN(group, width=width, depth=depth)
    assert m.n_params == gcnn_params(width, depth, ORDER[group])
    assert m.n_params == sum(p.numel() for p in m.parameters())


def test_documented_param_counts():
    assert GCNN("p8", 4, 1).n_params == 218
    assert GCNN("p4m", 4, 1).n_params == 218
    assert GCNN("p4", 4, 1).n_params == 154
    assert SimpleCNNTiny().n_params == 2 * 4 * 25 + 4 + 4 * 2 + 2
    assert SimpleCNNSmall().n_params == (2 * 8 * 25 + 8) + (8 * 8 + 8) + (8 * 2 + 2)


def test_multiscale_stem_fixed():
    m = MultiScale()
    last = m.stem[-1]
    assert (last.in_channels, last.out_channels) == (4, 2)  # the notes had Conv2d(2, 2)
    assert [b[0].out_channels for b in (m.conv_3x3, m.conv_5x5, m.conv_3x3_dilated)] == [2] * 3
    assert m.conv_3x3_dilated[0].dilation == (2, 2)
    assert "channel mismatch" in MultiScale.__doc__


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_torus_translation_equivariance(preset):
    """Circular padding: shifting the board (with wrap-around) shifts the logits."""
    m = built(preset)
    x = onehot(2, 12, 13, seed=3)
    y = m(x)
    for shift in [(5, 0), (0, 7), (11, 12)]:
        ys = m(torch.roll(x, shift, dims=(-2, -1)))
        torch.testing.assert_close(ys, torch.roll(y, shift, dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_receptive_field_is_declared_exactly(preset):
    """The centre output depends on every ring of the declared r×r window and on nothing
    outside it (gradient of the centre logits w.r.t. the input)."""
    torch.manual_seed(1)
    m = built(preset)
    r = m.receptive_field
    n = r + 6
    x = onehot(8, n, n, seed=4).requires_grad_(True)
    c = n // 2
    m(x)[:, :, c, c].abs().sum().backward()
    sens = x.grad.abs().sum((0, 1))
    inside = torch.zeros(n, n, dtype=torch.bool)
    inside[c - r // 2:c + r // 2 + 1, c - r // 2:c + r // 2 + 1] = True
    assert sens[~inside].max() == 0
    # the outermost ring of the window matters (so the declared field is not too large)
    ring = inside.clone()
    ring[c - r // 2 + 1:c + r // 2, c - r // 2 + 1:c + r // 2] = False
    assert sens[ring].max() > 0


def rot_flip_elements(group):
    """(k quarter turns, flip) pairs each group must be invariant under."""
    flips = (False, True) if group == "p4m" else (False,)
    return [(k, f) for k in range(4) for f in flips]


def act(x, k, flip):
    if flip:
        x = torch.flip(x, (-1,))
    return torch.rot90(x, k, (-2, -1))


@pytest.mark.parametrize("group", ["p4", "p4m", "p8"])
def test_gcnn_invariance_on_boards(group):
    """Pooled GCNN logits are invariant: f(L_g x) = L_g f(x) for rotations (and p4m mirrors)."""
    m = built(group, width=3, depth=2)
    x = onehot(2, 10, 10, seed=5).double()
    m = m.double()
    y = m(x)
    for k, f in rot_flip_elements(group):
        torch.testing.assert_close(m(act(x, k, f)), act(y, k, f), atol=1e-10, rtol=0)


def test_p4_is_chiral_but_p4m_is_not():
    """Negative control: a random p4 model is not mirror-invariant; p4m is."""
    x = onehot(4, 10, 10, seed=6).double()
    p4 = built("p4", width=4).double()
    p4m = built("p4m", width=4).double()
    flip = lambda t: torch.flip(t, (-1,))  # noqa: E731
    assert (p4(flip(x)) - flip(p4(x))).abs().max() > 1e-3
    torch.testing.assert_close(p4m(flip(x)), flip(p4m(x)), atol=1e-10, rtol=0)


def test_p8_invariant_under_ring_rotation_of_the_neighbourhood():
    """p8 with a 3×3 receptive field: the centre output is invariant under 45° ring rotations
    of the neighbourhood (all 512 patterns), which p4 is not."""
    idx = torch.tensor(ring_rotation_index(3))
    pats = all_patterns()
    rotated = pats.flatten(1)[:, idx].view(-1, 3, 3)
    assert not torch.equal(rotated, pats)
    for group, invariant in (("p8", True), ("p4", False)):
        m = built(group, width=4).double()
        a = m(boards_to_onehot(pats, torch.float64))[:, :, 1, 1]
        b = m(boards_to_onehot(rotated, torch.float64))[:, :, 1, 1]
        assert torch.allclose(a, b, atol=1e-10) is invariant, group


@pytest.mark.parametrize("preset", ["p8", "tiny", "multiscale"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
def test_step_dtype_shape_and_values(preset, dtype):
    m = built(preset)
    g = torch.Generator().manual_seed(7)
    boards = torch.randint(0, 2, (3, 10, 12), generator=g).to(dtype)
    out = m.step(boards)
    assert out.dtype == dtype and out.shape == boards.shape
    assert set(out.to(torch.uint8).unique().tolist()) <= {0, 1}
    expected = m(boards_to_onehot(boards)).argmax(1).to(dtype)
    assert torch.equal(out, expected)
    single = m.step(boards[1])
    assert single.shape == (10, 12) and torch.equal(single, out[1])


def test_step_uses_model_dtype_and_keeps_device():
    m = built("p4").double()
    boards = torch.zeros(6, 6, dtype=torch.bool)
    assert m.step(boards).device == boards.device
    assert m.step(boards).dtype == torch.bool


@pytest.mark.parametrize(
    ("boards", "error", "match"),
    [
        (torch.zeros(4, 4), TypeError, "bool or uint8"),
        (torch.full((4, 4), 2, dtype=torch.uint8), ValueError, "only 0 and 1"),
        (torch.zeros(4, dtype=torch.bool), ValueError, r"\[H, W\] or \[B, H, W\]"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.bool), ValueError, r"got shape \(1, 1, 4, 4\)"),
        ([[0, 1], [1, 0]], TypeError, "torch.Tensor"),
    ],
)
def test_step_rejects_bad_boards(boards, error, match):
    with pytest.raises(error, match=match):
        built("p4").step(boards)


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_forward_rejects_wrong_shapes(preset):
    m = built(preset)
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\].*got shape \[2, 1, 5, 5\]"):
        m(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"got shape \[2, 5, 5\]"):
        m(torch.zeros(2, 5, 5))
    with pytest.raises(TypeError, match="floating"):
        m(torch.zeros(2, 2, 5, 5, dtype=torch.uint8))


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_registry_and_rebuild_from_kwargs(preset):
    m = build_model(preset)
    assert isinstance(m, CAModel)
    assert MODELS[type(m).__name__] is type(m)
    assert preset_name(m) == preset
    clone = MODELS[type(m).__name__](**m.init_kwargs())
    assert {k: v.shape for k, v in clone.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()
    }
    cfg = m.describe()
    assert cfg["model"] == {"class": type(m).__name__, "kwargs": m.init_kwargs()}
    assert cfg["n_params"] == m.n_params
    assert cfg["group"] == (preset if preset in ORDER else None)


def test_build_model_by_class_name_and_errors():
    assert build_model("GCNN", group="p4m", width=2).describe()["model"]["kwargs"]["group"] == "p4m"
    with pytest.raises(ValueError, match=r"unknown model 'hexnet'.*multiscale"):
        build_model("hexnet")
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['width'\]"):
        build_model("multiscale", width=3)
    with pytest.raises(ValueError, match="fixes group='p8'"):
        build_model("p8", group="p4")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": "p6"}, "unknown group 'p6'"),
        ({"width": 0}, "width must be a positive int"),
        ({"depth": -1}, "depth must be an int ≥ 0"),
        ({"backend": "escnn"}, "backend must be one of"),
        ({"pool": "sum"}, "pool must be 'max' or 'mean'"),
    ],
)
def test_gcnn_argument_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GCNN(**kwargs)


def test_simple_cnn_argument_checks():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SimpleCNNTiny(kernel_size=4)
    assert SimpleCNNTiny(kernel_size=3).receptive_field == 3


@pytest.mark.parametrize("group", ["p4", "p4m", "p8"])
def test_e2cnn_backend(group):
    """Same layout and invariance with the e2cnn reference layers (fewer parameters)."""
    from gzoo.layers.reference import E2Reference

    m = built(group, width=2, depth=1, backend="e2cnn")
    assert isinstance(m.lift, E2Reference) and isinstance(m.convs[0], E2Reference)
    assert m.n_params < GCNN(group, width=2, depth=1).n_params
    x = onehot(2, 9, 9, seed=8)
    y = m(x)
    assert y.shape == (2, 2, 9, 9)
    for k, f in rot_flip_elements(group):
        torch.testing.assert_close(m(act(x, k, f)), act(y, k, f), atol=1e-5, rtol=1e-5)
    assert m.init_kwargs()["backend"] == "e2cnn"


@pytest.mark.parametrize("device", devices())
def test_models_on_device(device):
    for preset in ("p8", "multiscale"):
        m = built(preset).to(device)
        boards = torch.randint(0, 2, (2, 8, 8), dtype=torch.uint8, device=device)
        out = m.step(boards)
        assert out.device == boards.device
        assert torch.equal(out.cpu(), m.cpu().step(boards.cpu()))


# ---------------------------------------------------------------------------- prediction path
class Majority(torch.nn.Module):
    """A plain nn.Module with the CA contract: alive iff ≥ 5 of the 3×3 window are alive."""

    def forward(self, x):
        alive = x[:, 1:2]
        s = torch.nn.functional.conv2d(torch.nn.functional.pad(alive, (1, 1, 1, 1), "circular"),
                                       torch.ones(1, 1, 3, 3, dtype=x.dtype))[:, 0]
        return torch.stack([4.5 - s, s - 4.5], 1)


def test_predict_functions_serve_plain_modules():
    g = torch.Generator().manual_seed(11)
    boards = torch.randint(0, 2, (5, 9, 7), generator=g, dtype=torch.uint8)
    window = sum(torch.roll(boards, (dr, dc), (-2, -1)) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
    expected = (window >= 5).to(torch.uint8)
    assert torch.equal(predict_next(Majority(), boards), expected)
    assert torch.equal(predict_next(Majority(), boards.bool()), expected)  # the one validator
    assert torch.equal(predict_next(Majority(), boards[2]), expected[2])  # [H, W] in and out
    logits = predict_logits(Majority(), boards, batch_size=2)  # batches are invisible
    assert logits.shape == (5, 2, 9, 7)
    torch.testing.assert_close(logits, predict_logits(Majority(), boards), rtol=0, atol=0)
    with pytest.raises(ValueError, match="binary"):
        predict_next(Majority(), torch.full((2, 3, 3), 3))
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        predict_next(Majority(), boards, batch_size=2.0)


def test_predict_rejects_a_model_without_the_ca_contract():
    with pytest.raises(ValueError, match=r"logits \[B, 2, H, W\].*Linear.*\[2, 4, 4\]"):
        predict_next(torch.nn.Linear(4, 3), torch.zeros(2, 4, 4, dtype=torch.uint8))


def test_step_runs_in_eval_mode_and_restores_train_mode():
    """Batch norm predicts with its running statistics and leaves them untouched; the model's
    train/eval flags are as before."""
    m = build_model("multiscale")
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.rand_like(b))
    m.train()
    m.conv_5x5.eval()
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    boards = torch.randint(0, 2, (4, 10, 10), dtype=torch.uint8)
    out = m.step(boards, batch_size=3)
    assert m.training and m.stem.training and not m.conv_5x5.training
    assert all(torch.equal(v, stats[k]) for k, v in m.state_dict().items())
    reference = build_model("multiscale")
    reference.load_state_dict(stats)
    assert torch.equal(out, reference.eval().step(boards))  # eval mode's answer
