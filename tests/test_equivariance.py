"""The model probes of gzoo.equivariance: each applies where it should, measures what it says,
and says why where it does not apply."""

import pytest
import torch

from gzoo.equivariance import (
    lifting_layer,
    probe_invariance,
    probe_lifting,
    probe_model,
    probe_stencil,
    transform,
)
from gzoo.groups import C4
from gzoo.models import build_model


def gcnn(group, **kw):
    return build_model(group, width=3, **kw).double().eval()


@pytest.mark.parametrize("group", ["p4", "p4m", "p8"])
def test_probes_of_a_gcnn_are_exact(group):
    m = gcnn(group)
    assert lifting_layer(m) is m.lift
    lift, whole = probe_lifting(m), probe_invariance(m)
    assert lift.applies and whole.applies and lift.group == whole.group == group
    order = {"p4": 4, "p4m": 8, "p8": 8}[group]
    exact_on_images = list(range(order)) if group != "p8" else [0, 2, 4, 6]
    assert list(lift.errors) == list(whole.errors) == exact_on_images
    assert lift.max_error < 1e-12 and whole.max_error < 1e-12
    stencil = probe_stencil(m)
    if group == "p8":  # the 45° ring rotations of one 3×3 stencil
        assert stencil.applies and list(stencil.errors) == [1, 3, 5, 7]
        assert stencil.max_error < 1e-12
    else:
        assert not stencil.applies and f"every element of {group}" in stencil.reason


def test_probes_catch_what_is_not_equivariant():
    """Negative controls: e2cnn's band-limited p8 filters are not ring-rotation equivariant on
    a 3×3 stencil; a plain CNN measured against p4 is not invariant."""
    e2 = build_model("p8", width=2, backend="e2cnn").eval()
    assert probe_stencil(e2).max_error > 1e-3
    assert probe_lifting(e2).max_error < 1e-5  # exact on the 90° subgroup
    plain = build_model("tiny").double().eval()
    x = torch.randn(2, 2, 11, 11, dtype=torch.float64)
    probe = probe_invariance(plain, x, group="p4")
    assert probe.applies and probe.errors[0] == 0 and probe.max_error > 1e-3


def test_probes_say_when_they_do_not_apply():
    plain = build_model("small")
    lift, stencil, whole = probe_model(plain)
    assert lifting_layer(plain) is None
    for probe in (lift, stencil):
        assert not probe.applies and probe.errors == {}
        assert "SimpleCNNSmall has no lifting group-correlation layer" in probe.reason
        assert "does not apply" in probe.summary()
    assert not whole.applies and "declares no symmetry group" in whole.reason
    assert probe_invariance(plain, group="p4").reason.endswith("pass an input x")


def test_invariance_probe_leaves_batch_norm_alone():
    m = build_model("multiscale").train()
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    probe_invariance(m, torch.randn(2, 2, 9, 9), group="p4")
    assert m.training and all(torch.equal(v, stats[k]) for k, v in m.state_dict().items())


def test_transform_kinds():
    x = torch.arange(9.0).view(1, 3, 3)
    assert torch.equal(transform(x, C4, 1, "z2"), torch.rot90(x, 1, (-2, -1)))
    assert transform(x, C4, 1, "invariant") is x
    with pytest.raises(ValueError, match="kind must be one of"):
        transform(x, C4, 1, "sphere")
