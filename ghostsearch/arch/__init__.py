"""The GhostNet family as data and modules: configs, layers, the model builder, the papers'
reference tables, FLOPs/parameter counting and budgets. Needs only torch (and PyYAML); fvcore and
thop are imported where their counters are used."""

from __future__ import annotations

from .budget import format_flops, parse_budget
from .config import BlockConfig, NetConfig, load_config, save_config
from .counting import Counts, analytic_counts, count_flops, count_params
from .model import GhostNet, build_model
from .reference import reference_config
from .reparam import fuse

__all__ = [
    "BlockConfig",
    "Counts",
    "GhostNet",
    "NetConfig",
    "analytic_counts",
    "build_model",
    "count_flops",
    "count_params",
    "format_flops",
    "fuse",
    "load_config",
    "parse_budget",
    "reference_config",
    "save_config",
]
