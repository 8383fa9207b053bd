"""The pure config-to-module step: `build_model(cfg)` returns a GhostNet-family network with
timm's model interface, so that a found architecture drops into code written for timm."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetConfig
from .layers import ConvBnAct, GhostBottleneck
from .reparam import RepGhostBottleneck, fuse

# What a model expects when no preprocessing was recorded with it: ImageNet statistics, as the
# paper's deployment target
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_cfg_for(cfg: NetConfig, preprocessing: dict[str, Any] | None = None) -> dict:
    """timm's `pretrained_cfg` of a model of `cfg`: input size, normalisation, interpolation,
    crop, classes, first conv and classifier; `preprocessing` (as exported beside a found
    architecture or a training record) overrides the defaults."""
    pre = preprocessing or {}
    size = int(pre.get("input_size", (0, cfg.resolution))[-1])
    reduction = cfg.stem_stride * math.prod(b.stride for st in cfg.stages for b in st)
    pool = -(-size // reduction)  # ceil: a stride-2 conv with padding rounds up
    out: dict[str, Any] = {
        "input_size": tuple(pre.get("input_size", (cfg.in_channels, cfg.resolution,
                                                   cfg.resolution))),
        "mean": tuple(pre.get("mean", IMAGENET_MEAN)),
        "std": tuple(pre.get("std", IMAGENET_STD)),
        "interpolation": pre.get("interpolation", "bilinear"),
        "crop_pct": pre.get("crop_pct", 0.875),
        "pool_size": (pool, pool),  # the last feature map before global pooling
        "num_classes": cfg.num_classes,
        "first_conv": "conv_stem",
        "classifier": "classifier",
    }
    if pre.get("classes"):
        out["label_names"] = tuple(pre["classes"])
    return out


def feature_info_for(cfg: NetConfig) -> list[dict[str, Any]]:
    """Channels, reduction and module of the end of each resolution: the last group of blocks
    before each downsampling (the stem's output if the first group downsamples), then
    `forward_features`' output (`blocks.N`, the 1x1 head conv). timm's own GhostNet taps right
    after each downsampling block instead; the end of a resolution is what detection and
    segmentation heads want. For the paper's layout: strides 2, 4, 8, 16, 32."""
    info: list[dict[str, Any]] = []
    reduction = cfg.stem_stride
    last = {"num_chs": cfg.stem_channels, "reduction": reduction, "module": "act1"}
    for i, stage in enumerate(cfg.stages):
        if any(b.stride > 1 for b in stage):
            info.append(last)
            for b in stage:
                reduction *= b.stride
        last = {"num_chs": stage[-1].out_channels, "reduction": reduction,
                "module": f"blocks.{i}"}
    info.append({"num_chs": cfg.head_channels, "reduction": reduction,
                 "module": f"blocks.{len(cfg.stages)}"})
    return info


class GhostNet(nn.Module):
    """A GhostNet built from a `NetConfig`; its state_dict matches timm's `ghostnet_*` models.

    The config it was built from is kept as `model.config`, so counting and export need no
    second source of truth. The keyword overrides are the ones timm's `create_model` passes;
    the config is updated to match, so `model.config` always describes the model.
    """

    def __init__(self, cfg: NetConfig, *, num_classes: int | None = None,
                 in_chans: int | None = None, drop_rate: float | None = None,
                 preprocessing: dict[str, Any] | None = None) -> None:
        super().__init__()
        changes = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_chans),
                                     ("dropout", drop_rate)) if v is not None}
        cfg = dataclasses.replace(cfg, **changes) if changes else cfg
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_channels
        self.drop_rate = cfg.dropout
        self.feature_info = feature_info_for(cfg)
        self.pretrained_cfg = self.default_cfg = pretrained_cfg_for(cfg, preprocessing)
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
                bottleneck = RepGhostBottleneck if block.reparam else GhostBottleneck
                layers.append(bottleneck(prev, block))
                prev = block.out_channels
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Sequential(ConvBnAct(prev, cfg.head_channels)))
        self.blocks = nn.Sequential(*stages)
        # head: pool, 1x1 conv with bias, ReLU, dropout, linear
        self.num_features = cfg.head_channels  # what forward_features returns
        self.head_hidden_size = cfg.num_features  # what forward_head(pre_logits=True) returns
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(cfg.head_channels, cfg.num_features, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.classifier = self._classifier(cfg.num_classes)

    def _classifier(self, num_classes: int) -> nn.Module:
        if num_classes > 0:
            return nn.Linear(self.head_hidden_size, num_classes)
        return nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised classifier for `num_classes` (0: pooled features)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool={global_pool!r}: only average pooling is supported")
        device = self.conv_head.weight.device
        self.classifier = self._classifier(num_classes).to(device).train(self.training)
        self.num_classes = num_classes
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        self.pretrained_cfg = self.default_cfg = {**self.pretrained_cfg,
                                                  "num_classes": num_classes}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def convert_to_deploy(self) -> None:
        """Fold GhostNetV3's training branches in place (timm's name for `fuse`)."""
        fuse(self, inplace=True)


def build_model(cfg: NetConfig, preprocessing: dict[str, Any] | None = None, *,
                fused: bool = False) -> GhostNet:
    """Build the network that `cfg` describes (weights freshly initialised by PyTorch).

    `preprocessing` (the `preprocessing` of an exported architecture) fills `pretrained_cfg`.
    `fused=True` gives the deployed form of GhostNetV3 blocks (what counting, latency and
    export measure); it changes nothing for a config without them.
    """
    if not isinstance(cfg, NetConfig):
        raise TypeError(f"build_model expects a NetConfig, got {type(cfg).__name__}")
    model = GhostNet(cfg, preprocessing=preprocessing)
    return fuse(model, inplace=True) if fused else model
