"""The proxy form of a candidate: the deployment architecture adapted to the proxy task.

The FLOPs and latency a search scores are always the deployment model's; the proxy model is
the same architecture adapted to the proxy task (its classes and image size, and a stride-1
stem for small images, as CIFAR adaptations of ImageNet networks do). Its training lives in
`ghostsearch.train`.
"""

from __future__ import annotations

import dataclasses

from ..arch.config import NetConfig
from ..train.data import Dataset
from ..train.recipe import Recipe


def proxy_config(cfg: NetConfig, data: Dataset, protocol: Recipe) -> NetConfig:
    """The deployment architecture adapted to the proxy task's classes and image size."""
    stem = protocol.small_input_stem_stride if data.resolution <= 64 else cfg.stem_stride
    return dataclasses.replace(cfg, num_classes=data.num_classes, resolution=data.resolution,
                               stem_stride=stem)
