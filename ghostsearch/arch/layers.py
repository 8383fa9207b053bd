"""GhostNet building blocks, with the module names that timm and the official checkpoints use."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import BlockConfig


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round `v` to the nearest multiple of `divisor`; add one divisor if that lost over 10%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def ghost_channels(out_channels: int, ratio: int) -> tuple[int, int]:
    """(intrinsic m, ghost (s-1)*m) channel counts of a Ghost module; it keeps the first `out`."""
    init = math.ceil(out_channels / ratio)
    return init, init * (ratio - 1)


def dfc_pool(x: torch.Tensor) -> torch.Tensor:
    """DFC attention's 2x2 average pooling; a map smaller than 2 in either side (a 32 px input
    deep in the network) is used as it is, where pooling by 2 has nothing to pool."""
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        return x
    return F.avg_pool2d(x, kernel_size=2, stride=2)


torch.fx.wrap("dfc_pool")  # a leaf for symbolic tracing: its branch depends on the input size


def dfc_branch(in_chs: int, out_chs: int) -> nn.Sequential:
    """GhostNetV2's decoupled fully connected attention, before its gate: a 1x1 conv, then a
    depthwise 1x5 and a depthwise 5x1 conv (long-range along each axis), each with BN."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (1, 5), 1, (0, 2), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (5, 1), 1, (2, 0), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def dfc_gate(attention: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`out` times the DFC attention (`short_conv` of the pooled module input), passed through a
    sigmoid and brought back to `out`'s size by nearest upsampling."""
    gate = torch.sigmoid(attention)
    return out * F.interpolate(gate, size=(out.shape[-2], out.shape[-1]), mode="nearest")


def se_channels(channels: int, se_ratio: float) -> int:
    """Reduced width of the SE bottleneck, rounded as timm's GhostNet does."""
    return make_divisible(channels * se_ratio, 4)


class GhostModule(nn.Module):
    """m = ceil(out/s) intrinsic maps from a 1x1 conv, (s-1)*m ghost maps from a depthwise dxd conv
    on them; concatenated and cut to `out` channels. With `attention`, GhostNetV2's module: the
    output is multiplied by DFC attention computed from the input (`short_conv`)."""

    def __init__(
        self, in_chs: int, out_chs: int, ratio: int = 2, dw_size: int = 3, use_act: bool = True,
        kernel_size: int | tuple[int, int] = 1, stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None, dilation: int | tuple[int, int] = 1,
        attention: bool = False,
    ) -> None:
        """`kernel_size`, `stride`, `padding`, `dilation` shape the primary conv: 1x1 in GhostNet,
        the replaced conv's own when a Ghost module stands in for an ordinary convolution."""
        super().__init__()
        if attention and (kernel_size, stride) != (1, 1):
            raise ValueError("DFC attention is defined on a 1x1, stride-1 Ghost module")
        self.out_chs = out_chs
        init_chs, new_chs = ghost_channels(out_chs, ratio)
        if padding is None:
            padding = kernel_size // 2 if isinstance(kernel_size, int) else tuple(
                k // 2 for k in kernel_size)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, kernel_size, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(init_chs),
            nn.ReLU(inplace=True) if use_act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            nn.ReLU(inplace=True) if use_act else nn.Identity(),
        )
        self.short_conv = dfc_branch(in_chs, out_chs) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)[:, : self.out_chs]
        if self.short_conv is not None:
            out = dfc_gate(self.short_conv(dfc_pool(x)), out)
        return out


class SqueezeExcite(nn.Module):
    """Channel attention with a hard-sigmoid gate, relu6(x + 3) / 6, as in GhostNet."""

    def __init__(self, channels: int, se_ratio: float) -> None:
        super().__init__()
        reduced = se_channels(channels, se_ratio)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act1(self.conv_reduce(s)))
        return x * F.hardsigmoid(s)


class GhostBottleneck(nn.Module):
    """Ghost module expand -> (depthwise stride 2) -> (SE) -> Ghost module project, + shortcut."""

    def __init__(self, in_chs: int, cfg: BlockConfig) -> None:
        super().__init__()
        k, mid, out, stride = cfg.kernel, cfg.expansion, cfg.out_channels, cfg.stride
        pad = (k - 1) // 2
        # expand, with activation
        self.ghost1 = GhostModule(in_chs, mid, cfg.ghost_ratio, cfg.cheap_kernel, use_act=True,
                                  attention=cfg.attention == "dfc")
        # depthwise downsampling, only on stride-2 blocks (the paper's layout)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid, mid, k, stride, pad, groups=mid, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid)
        else:
            self.conv_dw = None
            self.bn_dw = None
        self.se = SqueezeExcite(mid, cfg.se_ratio) if cfg.se_ratio > 0 else None
        # project, linear
        self.ghost2 = GhostModule(mid, out, cfg.ghost_ratio, cfg.cheap_kernel, use_act=False)
        if in_chs == out and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, k, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.ghost1(x)
        if self.conv_dw is not None:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(shortcut)


class ConvBnAct(nn.Module):
    """1x1 conv + BN + ReLU (the `blocks.N` head conv); names as timm's ConvBnAct."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))
