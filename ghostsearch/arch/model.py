"""The pure config-to-module step: `build_model(cfg)` returns a GhostNet-family network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetConfig
from .layers import ConvBnAct, GhostBottleneck


class GhostNet(nn.Module):
    """A GhostNet built from a `NetConfig`; its state_dict matches timm's `ghostnet_*` models.

    The config it was built from is kept as `model.config`, so counting and export need no
    second source of truth.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.config = cfg
        self.dropout = cfg.dropout
        # stem
        self.conv_stem = nn.Conv2d(
            cfg.in_channels, cfg.stem_channels, 3, cfg.stem_stride, 1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(cfg.stem_channels)
        self.act1 = nn.ReLU(inplace=True)
        # bottleneck stages, then the 1x1 conv to head_channels as one more stage (timm's layout)
        stages: list[nn.Module] = []
        prev = cfg.stem_channels
        for stage in cfg.stages:
            layers = []
            for block in stage:
                layers.append(GhostBottleneck(prev, block))
                prev = block.out_channels
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Sequential(ConvBnAct(prev, cfg.head_channels)))
        self.blocks = nn.Sequential(*stages)
        # head: pool, 1x1 conv with bias, ReLU, dropout, linear
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(cfg.head_channels, cfg.num_features, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(cfg.num_features, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        if self.dropout > 0.0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(cfg: NetConfig) -> GhostNet:
    """Build the network that `cfg` describes (weights freshly initialised by PyTorch)."""
    if not isinstance(cfg, NetConfig):
        raise TypeError(f"build_model expects a NetConfig, got {type(cfg).__name__}")
    return GhostNet(cfg)
