"""A found architecture as a multi-scale backbone for torchvision's detection models."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .config import NetConfig
from .model import GhostNet, build_model


def flat_body(model: GhostNet) -> nn.Sequential:
    """`forward_features` as a flat Sequential (stem, then `blocks_0` .. `blocks_N`), whose
    direct children torchvision's IntermediateLayerGetter can tap."""
    layers: list[tuple[str, nn.Module]] = [("conv_stem", model.conv_stem), ("bn1", model.bn1),
                                           ("act1", model.act1)]
    layers += [(f"blocks_{i}", stage) for i, stage in enumerate(model.blocks)]
    return nn.Sequential(OrderedDict(layers))


class Backbone(nn.Module):
    """Multi-scale features {"0": ..., "1": ...} of the levels `out_indices` of the model's
    `feature_info`, with their channel counts in `channels`."""

    def __init__(self, model: GhostNet, out_indices: Sequence[int]) -> None:
        super().__init__()
        from torchvision.models._utils import IntermediateLayerGetter

        info = model.feature_info
        bad = [i for i in out_indices if not 0 <= i < len(info)]
        if bad or not out_indices:
            raise ConfigError(f"out_indices={tuple(out_indices)}: choose from 0..{len(info) - 1} "
                              f"(levels at reductions {[f['reduction'] for f in info]})")
        names = [info[i]["module"].replace(".", "_") for i in out_indices]
        self.return_layers = {name: str(k) for k, name in enumerate(names)}
        self.body = IntermediateLayerGetter(flat_body(model), self.return_layers)
        self.channels = [info[i]["num_chs"] for i in out_indices]
        self.reductions = [info[i]["reduction"] for i in out_indices]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.body(x)


def backbone(cfg: NetConfig | GhostNet, out_indices: Sequence[int] = (1, 2, 3, 4),
             fpn_channels: int | None = None) -> nn.Module:
    """The architecture (a config, or a model with its weights) as a detection backbone.

    Without `fpn_channels`: a `Backbone` returning an OrderedDict of the chosen levels, with
    `channels`. With it: torchvision's `BackboneWithFPN` on those levels (plus a max-pooled
    level), whose `out_channels` is `fpn_channels`, ready for `FasterRCNN(backbone, ...)`.
    """
    model = cfg if isinstance(cfg, GhostNet) else build_model(cfg)
    features = Backbone(model, out_indices)
    if fpn_channels is None:
        return features
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    return BackboneWithFPN(flat_body(model), features.return_layers, features.channels,
                           fpn_channels)
