"""The paper's GhostNet (Han et al., CVPR 2020, Table 1) as data, at any width multiplier, and
its successors on the same table: GhostNetV2 (DFC attention) and GhostNetV3 (re-parameterised
training branches plus DFC attention)."""

from __future__ import annotations

from ..errors import ConfigError
from .config import BlockConfig, NetConfig
from .layers import make_divisible

# Rows per stage (timm's `blocks.0` .. `blocks.8`), for a 224x224 input:
# k (depthwise kernel), exp (expansion channels), c (output channels), SE ratio, s (stride)
REFERENCE_TABLE: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    # stage1, 112x112
    ((3, 16, 16, 0.0, 1),),
    # stage2, 56x56
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    # stage3, 28x28
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    # stage4, 14x14
    ((3, 240, 80, 0.0, 2),),
    (
        (3, 200, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
    ),
    # stage5, 7x7
    ((5, 672, 160, 0.25, 2),),
    (
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
    ),
)
STEM_CHANNELS = 16
HEAD_CHANNELS = 960  # the 1x1 conv after the last bottleneck (scales with width)
NUM_FEATURES = 1280  # conv_head width (does not scale with width)
# GhostNetV2 and V3 put DFC attention on every bottleneck but the first two (the 112x112 and
# first 56x56 blocks), as the official code and timm do (`layer_idx > 1`)
ATTENTION_FROM_BLOCK = 2
VERSIONS = (1, 2, 3)


def reference_config(
    width: float = 1.0,
    *,
    num_classes: int = 1000,
    resolution: int = 224,
    stem_stride: int = 2,
    dropout: float = 0.2,
    ghost_ratio: int = 2,
    cheap_kernel: int = 3,
    version: int = 1,
) -> NetConfig:
    """The paper's GhostNet at width multiplier `width` (0.5, 1.0, 1.3 are timm's ghostnet_*).

    Every expansion and output channel count is make_divisible(c * width, 4). `stem_stride=1`
    is the usual adaptation for 32x32 inputs; the other keywords let a search vary s and d.
    `version=2` is GhostNetV2 (timm's ghostnetv2_*), `version=3` GhostNetV3 (ghostnetv3_*,
    in its training form; `fuse` gives the deployed one).
    """
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0):
        raise ConfigError(f"width={width!r}: must be a positive number")
    if version not in VERSIONS:
        raise ConfigError(f"version={version!r}: must be one of 1, 2, 3")
    rows = [row for stage in REFERENCE_TABLE for row in stage]
    blocks = [
        BlockConfig(
            kernel=k,
            expansion=make_divisible(exp * width, 4),
            out_channels=make_divisible(c * width, 4),
            se_ratio=se,
            stride=s,
            ghost_ratio=ghost_ratio,
            cheap_kernel=cheap_kernel,
            attention="dfc" if version > 1 and i >= ATTENTION_FROM_BLOCK else "none",
            reparam=version == 3,
        )
        for i, (k, exp, c, se, s) in enumerate(rows)
    ]
    sizes = [len(stage) for stage in REFERENCE_TABLE]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    stages = tuple(tuple(blocks[a:a + n]) for a, n in zip(starts, sizes, strict=True))
    return NetConfig(
        stem_channels=make_divisible(STEM_CHANNELS * width, 4),
        stages=stages,
        head_channels=make_divisible(HEAD_CHANNELS * width, 4),
        num_features=NUM_FEATURES,
        num_classes=num_classes,
        resolution=resolution,
        stem_stride=stem_stride,
        dropout=dropout,
    )


# The same 16 rows split where the output channels change (the paper's stages as a search sees
# them): a stage's first row may change stride or width, the rest repeat at stride 1.
REFERENCE_ROWS = tuple(row for stage in REFERENCE_TABLE for row in stage)
SEARCH_STAGES: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    REFERENCE_ROWS[0:1],  # stage1: 16 ch, 112x112
    REFERENCE_ROWS[1:3],  # stage2: 24 ch, 56x56
    REFERENCE_ROWS[3:5],  # stage3: 40 ch, 28x28, SE
    REFERENCE_ROWS[5:9],  # stage4: 80 ch, 14x14
    REFERENCE_ROWS[9:11],  # stage5: 112 ch, 14x14, SE
    REFERENCE_ROWS[11:16],  # stage6: 160 ch, 7x7, SE on alternate blocks
)


def group_like_timm(blocks: tuple[BlockConfig, ...] | list[BlockConfig]) -> tuple[
    tuple[BlockConfig, ...], ...
]:
    """Group bottlenecks into `blocks.i` stages the way timm's GhostNet table does.

    One group per block until two downsamplings past the stem; after each later stride-2 block,
    the stride-1 run that follows is one group. On the reference's 16 rows this gives exactly
    timm's 9 groups, so a searched config at the reference point loads timm checkpoints.
    """
    groups: list[list[BlockConfig]] = []
    downsamplings = 0
    prev_stride = 2
    for b in blocks:
        downsamplings += b.stride == 2
        joins = b.stride == 1 and prev_stride == 1 and downsamplings >= 3 and groups
        if joins:
            groups[-1].append(b)
        else:
            groups.append([b])
        prev_stride = b.stride
    return tuple(tuple(g) for g in groups)
