"""GhostNetV3's re-parameterisable blocks (Liu et al., arXiv 2404.11202) and the fuse step.

In training, each convolution of a Ghost bottleneck is a sum of parallel branches: three
conv+BN branches of the conv's own kernel, a 1x1 conv+BN "scale" branch (for kernels above 1)
and, where input and output maps correspond one to one, a BN "identity" branch. All of them are
linear, so in eval mode they fold into one convolution with a bias: `fuse` returns the deployed
network, whose cost is that of a plain GhostNet block. Module names follow timm's
GhostModuleV3 and GhostBottleneckV3, so timm checkpoints load in both forms.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .config import BlockConfig
from .layers import SqueezeExcite, dfc_branch, dfc_gate, dfc_pool, ghost_channels

BRANCHES = 3  # parallel k x k branches per convolution, as in the paper and timm
torch.fx.wrap("dfc_pool")  # fx patches it where it is called: here too, not only in layers


class ConvBn(nn.Module):
    """A conv without bias and its BN: one training branch (names as timm's ConvBnAct)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups,
                              bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x))


def _fold(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel and bias of `bn(conv(x))` as one conv, from BN's running statistics."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _fused_conv(kernel_size: int, convs: list[ConvBn], scale: ConvBn | None,
                identity: nn.BatchNorm2d | None) -> nn.Conv2d:
    """One conv with bias equal (in eval mode) to the sum of the branches."""
    ref = convs[0].conv
    weight, bias = torch.zeros_like(ref.weight), torch.zeros_like(convs[0].bn1.bias)
    for branch in convs:
        w, b = _fold(branch.conv.weight, branch.bn1)
        weight, bias = weight + w, bias + b
    pad = kernel_size // 2
    if scale is not None:
        w, b = _fold(scale.conv.weight, scale.bn1)
        weight, bias = weight + F.pad(w, [pad, pad, pad, pad]), bias + b
    if identity is not None:  # a depthwise conv whose kernel is 1 at the centre
        eye = torch.zeros_like(ref.weight)
        eye[:, 0, pad, pad] = 1.0
        w, b = _fold(eye, identity)
        weight, bias = weight + w, bias + b
    fused = nn.Conv2d(ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride,
                      ref.padding, groups=ref.groups, bias=True).to(ref.weight)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused


class RepGhostModule(nn.Module):
    """A Ghost module whose primary 1x1 conv and cheap dxd depthwise conv are each trained as
    parallel branches; `reparameterize` folds them into `primary_conv` and `cheap_operation`.

    The BN identity branch exists when every intrinsic map has exactly one ghost map (s=2, as
    in GhostNetV3); for s > 2 the cheap conv maps one input to several outputs, and only the
    conv and scale branches remain. `attention` adds V2's DFC gate, as GhostNetV3 does.
    """

    def __init__(self, in_chs: int, out_chs: int, ratio: int = 2, dw_size: int = 3,
                 use_act: bool = True, attention: bool = False) -> None:
        super().__init__()
        self.out_chs = out_chs
        self.dw_size = dw_size
        init_chs, new_chs = ghost_channels(out_chs, ratio)
        self.primary_conv: nn.Module | None = None  # set by reparameterize
        self.cheap_operation: nn.Module | None = None
        self.primary_rpr_conv = nn.ModuleList(ConvBn(in_chs, init_chs, 1)
                                              for _ in range(BRANCHES))
        self.primary_activation = nn.ReLU(inplace=True) if use_act else nn.Identity()
        self.cheap_rpr_skip = nn.BatchNorm2d(init_chs) if new_chs == init_chs else None
        self.cheap_rpr_conv = nn.ModuleList(ConvBn(init_chs, new_chs, dw_size, groups=init_chs)
                                            for _ in range(BRANCHES))
        self.cheap_rpr_scale = ConvBn(init_chs, new_chs, 1, groups=init_chs)
        self.cheap_activation = nn.ReLU(inplace=True) if use_act else nn.Identity()
        self.short_conv = dfc_branch(in_chs, out_chs) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.primary_conv is not None and self.cheap_operation is not None:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = torch.zeros((), dtype=x.dtype, device=x.device)
            for branch in self.primary_rpr_conv:
                x1 = x1 + branch(x)
            x1 = self.primary_activation(x1)
            x2 = self.cheap_rpr_scale(x1)
            if self.cheap_rpr_skip is not None:
                x2 = x2 + self.cheap_rpr_skip(x1)
            for branch in self.cheap_rpr_conv:
                x2 = x2 + branch(x1)
            x2 = self.cheap_activation(x2)
        out = torch.cat([x1, x2], dim=1)[:, : self.out_chs]
        if self.short_conv is not None:
            out = dfc_gate(self.short_conv(dfc_pool(x)), out)
        return out

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the branches (with BN's running statistics) into one conv each; idempotent."""
        if self.primary_conv is not None:
            return
        primary = _fused_conv(1, list(self.primary_rpr_conv), None, None)
        cheap = _fused_conv(self.dw_size, list(self.cheap_rpr_conv), self.cheap_rpr_scale,
                            self.cheap_rpr_skip)
        self.primary_conv = nn.Sequential(primary, self.primary_activation)
        self.cheap_operation = nn.Sequential(cheap, self.cheap_activation)
        self.primary_rpr_conv = None
        self.cheap_rpr_conv = None
        self.cheap_rpr_scale = None
        self.cheap_rpr_skip = None


class RepGhostBottleneck(nn.Module):
    """GhostNetV3's bottleneck: RepGhost modules, and on stride-2 blocks a depthwise conv
    trained as three k x k branches plus a 1x1 stride-2 scale branch (no identity branch: the
    map changes size). SE and the shortcut are those of the plain bottleneck."""

    def __init__(self, in_chs: int, cfg: BlockConfig) -> None:
        super().__init__()
        k, mid, out, stride = cfg.kernel, cfg.expansion, cfg.out_channels, cfg.stride
        self.kernel = k
        self.ghost1 = RepGhostModule(in_chs, mid, cfg.ghost_ratio, cfg.cheap_kernel,
                                     use_act=True, attention=cfg.attention == "dfc")
        self.conv_dw: nn.Module | None = None  # set by reparameterize on stride-2 blocks
        if stride > 1:
            self.dw_rpr_conv = nn.ModuleList(ConvBn(mid, mid, k, stride, groups=mid)
                                             for _ in range(BRANCHES))
            self.dw_rpr_scale = ConvBn(mid, mid, 1, stride, groups=mid)
        else:
            self.dw_rpr_conv = None
            self.dw_rpr_scale = None
        self.se = SqueezeExcite(mid, cfg.se_ratio) if cfg.se_ratio > 0 else None
        self.ghost2 = RepGhostModule(mid, out, cfg.ghost_ratio, cfg.cheap_kernel, use_act=False)
        if in_chs == out and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            pad = (k - 1) // 2
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
            x = self.conv_dw(x)
        elif self.dw_rpr_scale is not None and self.dw_rpr_conv is not None:
            y = self.dw_rpr_scale(x)
            for branch in self.dw_rpr_conv:
                y = y + branch(x)
            x = y
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(shortcut)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the depthwise branches into `conv_dw` (the Ghost modules fold themselves)."""
        if self.dw_rpr_conv is None or self.dw_rpr_scale is None:
            return
        self.conv_dw = _fused_conv(self.kernel, list(self.dw_rpr_conv), self.dw_rpr_scale, None)
        self.dw_rpr_conv = None
        self.dw_rpr_scale = None


def is_fused(model: nn.Module) -> bool:
    """Whether no re-parameterisable branch is left (true for a model without any)."""
    return not any(
        (isinstance(m, RepGhostModule) and m.primary_conv is None)
        or (isinstance(m, RepGhostBottleneck) and m.dw_rpr_conv is not None)
        for m in model.modules()
    )


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The deployed form of `model`: every GhostNetV3 branch set folded into one conv.

    Uses BN's running statistics, so the fused model equals the unfused one in eval mode
    (not in train mode, where BN uses batch statistics). Returns a copy unless `inplace`.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for m in list(model.modules()):
        if isinstance(m, (RepGhostModule, RepGhostBottleneck)):
            m.reparameterize()
    return model
