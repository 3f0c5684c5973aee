"""Life-like cellular automata: rules, a batched torus simulator, data sets, a pyseagull backend.

>>> from gzoo.ca import Rule, RULES, simulate
>>> str(Rule.parse("b36s23")), Rule.parse("B36/S23").name
('B36/S23', 'HighLife')

pyseagull (and loguru) are imported only when a seagull helper is called.
"""

from .data import (
    CADataset,
    class_counts,
    family_counts,
    format_class_table,
    load_dataset,
    make_dataset,
    missing_classes,
    save_dataset,
)
from .families import FAMILIES, Family, get_family
from .rle import PATTERNS, RLEError, load_pattern, place_on_torus, read_rle, write_rle
from .rule import NAMES, RULES, Neighbourhood, Rule, RuleError, RuleSymmetry
from .seagull import (
    apply_seagull_patch,
    remove_seagull_patch,
    seagull_history,
    seagull_is_patched,
)
from .simulate import as_uint8_boards, class_index, neighbour_counts, simulate, step
from .stencil import NEIGHBOURHOODS, all_patterns, pattern_index

__all__ = [
    "FAMILIES",
    "NAMES",
    "NEIGHBOURHOODS",
    "PATTERNS",
    "RULES",
    "CADataset",
    "Family",
    "Neighbourhood",
    "RLEError",
    "Rule",
    "RuleError",
    "RuleSymmetry",
    "all_patterns",
    "apply_seagull_patch",
    "as_uint8_boards",
    "class_counts",
    "class_index",
    "family_counts",
    "format_class_table",
    "get_family",
    "load_dataset",
    "load_pattern",
    "make_dataset",
    "missing_classes",
    "neighbour_counts",
    "pattern_index",
    "place_on_torus",
    "read_rle",
    "remove_seagull_patch",
    "save_dataset",
    "seagull_history",
    "seagull_is_patched",
    "simulate",
    "step",
    "write_rle",
]
