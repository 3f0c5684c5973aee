"""gzoo: group-equivariant CNN layers (p4, p4m, p8), Life-like cellular automata, a zoo of
pretrained networks that reproduce their rules exactly, and rotation-invariant digit
classifiers (rotated MNIST)."""

from __future__ import annotations

from importlib.util import find_spec

# layers/ and zoo/ become gzoo.layers and gzoo.zoo only through the package-dir mapping of an
# install: from a bare checkout, say so in one line instead of "No module named 'gzoo.layers'".
if find_spec("gzoo.layers") is None:
    raise ImportError(
        "gzoo is not installed: its layers/ and zoo/ folders become gzoo.layers and gzoo.zoo "
        "only when installed; run `make` in the checkout (then use .venv/bin/python) or "
        "`pip install -e .`"
    )

from gzoo import ca
from gzoo._version import __version__
from gzoo.ca import RULES, Rule, RuleError
from gzoo.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_pretrained,
    save_checkpoint,
)
from gzoo.groups import C4, C8, D4, GROUPS, Group, get_group
from gzoo.infer import infer_rule, infer_rule_from_data, infer_symmetry
from gzoo.layers import (
    GroupBatchNorm,
    GroupCorrelation,
    GroupPool,
    P4Conv,
    P4LiftConv,
    P4MConv,
    P4MLiftConv,
    P8Conv,
    P8LiftConv,
    SpatialPool,
    group_pool,
)
from gzoo.models import (
    GCNN,
    MODELS,
    CAModel,
    MultiScale,
    RotMNISTNet,
    SimpleCNNSmall,
    SimpleCNNTiny,
    build_model,
)
from gzoo.train import TrainConfig, train
from gzoo.verify import ExactResult, rollout_agreement, verify_exact

__all__ = [
    "C4",
    "C8",
    "D4",
    "GCNN",
    "GROUPS",
    "MODELS",
    "RULES",
    "CAModel",
    "CheckpointError",
    "CheckpointInfo",
    "ExactResult",
    "Group",
    "GroupBatchNorm",
    "GroupCorrelation",
    "GroupPool",
    "MultiScale",
    "P4Conv",
    "P4LiftConv",
    "P4MConv",
    "P4MLiftConv",
    "P8Conv",
    "P8LiftConv",
    "RotMNISTNet",
    "Rule",
    "RuleError",
    "SimpleCNNSmall",
    "SimpleCNNTiny",
    "SpatialPool",
    "TrainConfig",
    "__version__",
    "build_model",
    "ca",
    "get_group",
    "group_pool",
    "infer_rule",
    "infer_rule_from_data",
    "infer_symmetry",
    "load_pretrained",
    "rollout_agreement",
    "save_checkpoint",
    "train",
    "verify_exact",
]
