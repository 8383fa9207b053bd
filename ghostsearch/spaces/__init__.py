"""Search spaces as data (the shipped YAML files beside this module) and what reads and
samples them: space.py (YAML spaces, ordered Optuna distributions, trial -> config, uniform
sampling in a FLOPs band), limits.py (a budget, a latency limit and the band under them),
sampler.py (Optuna samplers restricted to the band). Below both the search and the supernet,
which share them."""

from __future__ import annotations

from .limits import DEFAULT_BAND, Limits
from .space import SearchSpace, load_space, sample_band, sample_points, space_from_dict

__all__ = ["DEFAULT_BAND", "Limits", "SearchSpace", "load_space", "sample_band",
           "sample_points", "space_from_dict"]
