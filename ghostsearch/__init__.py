"""ghostsearch: search and compress GhostNet-family CNNs for a FLOPs or latency budget."""

from __future__ import annotations

from .arch import (
    BlockConfig,
    NetConfig,
    analytic_counts,
    build_model,
    count_flops,
    count_params,
    load_config,
    parse_budget,
    reference_config,
    save_config,
)
from .errors import ConfigError, DataError, GhostsearchError, StudyError

__version__ = "0.2.0"

__all__ = [
    "BlockConfig",
    "ConfigError",
    "DataError",
    "GhostsearchError",
    "NetConfig",
    "StudyError",
    "analytic_counts",
    "build_model",
    "count_flops",
    "count_params",
    "load_config",
    "parse_budget",
    "reference_config",
    "save_config",
]
