"""ghostsearch: search and compress GhostNet-family CNNs for a FLOPs or latency budget."""

from __future__ import annotations

from .arch import (
    BlockConfig,
    NetConfig,
    analytic_counts,
    build_model,
    count_flops,
    count_params,
    fuse,
    load_config,
    parse_budget,
    reference_config,
    save_config,
)
from .arch.backbone import backbone
from .arch.timm_entry import install as _install_timm_entry
from .errors import ConfigError, DataError, GhostsearchError, StudyError
from .search.scores import SCORE_NAMES, score_architecture

__version__ = "0.4.0"

_install_timm_entry()  # timm.create_model("ghostsearch_arch", arch=...) once timm is imported

__all__ = [
    "SCORE_NAMES",
    "BlockConfig",
    "ConfigError",
    "DataError",
    "GhostsearchError",
    "NetConfig",
    "StudyError",
    "analytic_counts",
    "backbone",
    "build_model",
    "count_flops",
    "count_params",
    "fuse",
    "load_config",
    "parse_budget",
    "reference_config",
    "save_config",
    "score_architecture",
]
