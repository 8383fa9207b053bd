"""ghostsearch: search and compress GhostNet-family CNNs for a FLOPs or latency budget."""

from __future__ import annotations

from ._version import __version__ as __version__
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
from .search.settings import DataSpec, SearchSettings
from .train.recipe import Recipe, load_recipe

_install_timm_entry()  # timm.create_model("ghostsearch_arch", arch=...) once timm is imported

# the workflows load the report's plotting and the confirmation on first use, so that
# `import ghostsearch` (and every command) stays as quick as the model family needs
_WORKFLOWS = {"run_search": "search", "search_settings": "search", "SearchResult": "search",
              "run_confirm": "confirm", "ConfirmSettings": "confirm", "Verdict": "confirm"}


def __getattr__(name: str) -> object:
    if name in _WORKFLOWS:
        import importlib

        return getattr(importlib.import_module(f".workflow.{_WORKFLOWS[name]}", __name__), name)
    raise AttributeError(f"module 'ghostsearch' has no attribute {name!r}")

__all__ = [
    "SCORE_NAMES",
    "BlockConfig",
    "ConfigError",
    "ConfirmSettings",
    "DataError",
    "DataSpec",
    "GhostsearchError",
    "NetConfig",
    "Recipe",
    "SearchResult",
    "SearchSettings",
    "StudyError",
    "Verdict",
    "analytic_counts",
    "backbone",
    "build_model",
    "count_flops",
    "count_params",
    "fuse",
    "load_config",
    "load_recipe",
    "parse_budget",
    "reference_config",
    "run_confirm",
    "run_search",
    "save_config",
    "score_architecture",
    "search_settings",
]
