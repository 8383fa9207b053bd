"""Everything that ranks and picks: spaces, data, proxy training, presets, the Optuna study,
its objective and its workers."""

from __future__ import annotations

from .data import Dataset, load_data
from .presets import GROUND_TRUTH_PROTOCOL, PRESETS, Preset, get_preset
from .proxy import ProxyProtocol, proxy_config, train_proxy
from .settings import OBJECTIVES, SAMPLERS, DataSpec, SearchSettings
from .space import SearchSpace, load_space, sample_points
from .storage import default_storage, load_existing_study, study_dir
from .study import baseline_widths, best_feasible, open_study, trained_count, width_name
from .workers import run_search, run_worker

__all__ = [
    "GROUND_TRUTH_PROTOCOL",
    "OBJECTIVES",
    "PRESETS",
    "SAMPLERS",
    "DataSpec",
    "Dataset",
    "Preset",
    "ProxyProtocol",
    "SearchSettings",
    "SearchSpace",
    "baseline_widths",
    "best_feasible",
    "default_storage",
    "get_preset",
    "load_data",
    "load_existing_study",
    "load_space",
    "open_study",
    "proxy_config",
    "run_search",
    "run_worker",
    "sample_points",
    "study_dir",
    "train_proxy",
    "trained_count",
    "width_name",
]
