"""Everything that ranks and picks: proxy configs, presets, the Optuna study, its objective
and its workers, training-free scores and the prescreen (the spaces are `ghostsearch.spaces`,
training itself `ghostsearch.train`, the whole search as one call `ghostsearch.run_search`).
`SearchSpace` and `load_space` are here too, as the search's inputs."""

from __future__ import annotations

from ..spaces.space import SearchSpace, load_space, sample_points
from .presets import PRESETS, Preset, get_preset
from .proxy import proxy_config
from .settings import OBJECTIVES, SAMPLERS, DataSpec, SearchSettings
from .storage import default_storage, load_existing_study, study_dir
from .study import baseline_widths, best_feasible, open_study, trained_count, width_name
from .workers import run_trials, run_worker

__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "SAMPLERS",
    "DataSpec",
    "Preset",
    "SearchSettings",
    "SearchSpace",
    "baseline_widths",
    "best_feasible",
    "default_storage",
    "get_preset",
    "load_existing_study",
    "load_space",
    "open_study",
    "proxy_config",
    "run_trials",
    "run_worker",
    "sample_points",
    "study_dir",
    "trained_count",
    "width_name",
]
