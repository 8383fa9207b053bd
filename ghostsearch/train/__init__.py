"""Training, one package for every run: datasets as uint8 tensors with device-side augmentation
(`data`), recipes as data (`recipe`: named ones and users' YAML/JSON files), the loop
(`loop`: a fixed-length run for the search's proxies) and full training with a checkpoint
each epoch (`full`: confirmations, the ground truth, `ghostsearch train`). One seed gives one
run whichever entry point trains it."""

from __future__ import annotations

from .data import Dataset, load_data
from .full import ModelSpec, train_full
from .loop import train_proxy
from .recipe import (
    GROUND_TRUTH_DATA,
    GROUND_TRUTH_PROTOCOL,
    Recipe,
    load_recipe,
    recipe_names,
    save_recipe,
)

__all__ = ["GROUND_TRUTH_DATA", "GROUND_TRUTH_PROTOCOL", "Dataset", "ModelSpec", "Recipe",
           "load_data", "load_recipe", "recipe_names", "save_recipe", "train_full",
           "train_proxy"]
