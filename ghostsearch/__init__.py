"""ghostsearch: search and compress GhostNet-family CNNs for a FLOPs or latency budget."""

from __future__ import annotations

from .budget import parse_budget
from .config import BlockConfig, ConfigError, NetConfig, load_config, save_config
from .counting import analytic_counts, count_flops, count_params
from .model import build_model
from .reference import reference_config

__version__ = "0.1.0"

__all__ = [
    "BlockConfig",
    "ConfigError",
    "NetConfig",
    "analytic_counts",
    "build_model",
    "count_flops",
    "count_params",
    "load_config",
    "parse_budget",
    "reference_config",
    "save_config",
]
