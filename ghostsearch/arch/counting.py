"""FLOPs and parameters in the paper's convention, three ways that must agree.

The convention (GhostNet, MobileNet, the NAS literature): one multiply-add of a convolution or
linear layer is one FLOP; biases, BN, activations, pooling, the SE multiply and residual
additions are not counted; nor are DFC attention's pooling, sigmoid, upsampling and multiply
(its three convolutions are). GhostNetV3 blocks count in their deployed (fused) form, one conv
with a bias where training had several branches. `count_flops` traces a built model with
fvcore (thop as the cross-check); `analytic_counts` derives the same numbers from the config
alone, without building anything, so a search can reject thousands of over-budget candidates
per second.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .config import BlockConfig, NetConfig
from .layers import ghost_channels, se_channels
from .model import build_model
from .reparam import fuse, is_fused

COUNTERS = ("fvcore", "thop", "analytic")
# fvcore's operator names for conv and linear multiply-adds; everything else is not the paper's
_FVCORE_PAPER_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


@dataclass(frozen=True)
class Counts:
    flops: int  # multiply-adds of conv and linear layers
    params: int  # learnable parameters (what `sum(p.numel())` gives)


class _Tally:
    """Running FLOPs/params for a walk over a config, tracking the spatial size."""

    def __init__(self) -> None:
        self.flops = 0
        self.params = 0

    def conv(self, cin: int, cout: int, k: int, stride: int, size: int, groups: int = 1,
             bias: bool = False) -> int:
        out = (size - 1) // stride + 1  # odd k, padding k // 2
        weights = cout * (cin // groups) * k * k
        self.flops += weights * out * out
        self.params += weights + (cout if bias else 0)
        return out

    def bn(self, c: int) -> None:
        self.params += 2 * c

    def conv_bn(self, cin: int, cout: int, k: int, stride: int, size: int, groups: int = 1,
                fused: bool = False) -> int:
        """A conv and its BN, or (deployed GhostNetV3) the one conv with a bias they fold into."""
        out = self.conv(cin, cout, k, stride, size, groups=groups, bias=fused)
        if not fused:
            self.bn(cout)
        return out

    def ghost(self, cin: int, cout: int, ratio: int, d: int, size: int,
              fused: bool = False) -> None:
        init, new = ghost_channels(cout, ratio)
        self.conv_bn(cin, init, 1, 1, size, fused=fused)
        self.conv_bn(init, new, d, 1, size, groups=init, fused=fused)

    def dfc(self, cin: int, cout: int, size: int) -> None:
        """DFC attention on the 2x2-pooled map (unpooled below 2): 1x1, then 1x5 and 5x1
        depthwise, each with BN."""
        pooled = size // 2 if size >= 2 else size
        self.conv(cin, cout, 1, 1, pooled)
        self.bn(cout)
        for _ in range(2):  # the 1x5 and the 5x1 depthwise convs: 5 weights per channel
            self.flops += cout * 5 * pooled * pooled
            self.params += cout * 5
            self.bn(cout)


def _bottleneck(t: _Tally, prev: int, b: BlockConfig, size: int) -> int:
    """Add one Ghost bottleneck's layers to `t` (deployed form); return its output size."""
    mid, out = b.expansion, b.out_channels
    t.ghost(prev, mid, b.ghost_ratio, b.cheap_kernel, size, fused=b.reparam)
    if b.attention == "dfc":
        t.dfc(prev, mid, size)
    new_size = size
    if b.stride > 1:
        new_size = t.conv_bn(mid, mid, b.kernel, b.stride, size, groups=mid, fused=b.reparam)
    if b.se_ratio > 0:
        r = se_channels(mid, b.se_ratio)
        t.conv(mid, r, 1, 1, 1, bias=True)
        t.conv(r, mid, 1, 1, 1, bias=True)
    t.ghost(mid, out, b.ghost_ratio, b.cheap_kernel, new_size, fused=b.reparam)
    if not (prev == out and b.stride == 1):
        t.conv(prev, prev, b.kernel, b.stride, size, groups=prev)
        t.bn(prev)
        t.conv(prev, out, 1, 1, new_size)
        t.bn(out)
    return new_size


def block_counts(in_channels: int, block: BlockConfig, size: int) -> Counts:
    """FLOPs and params of one bottleneck with `in_channels` inputs of `size` x `size`."""
    t = _Tally()
    _bottleneck(t, in_channels, block, size)
    return Counts(flops=t.flops, params=t.params)


def analytic_counts(cfg: NetConfig, resolution: int | None = None) -> Counts:
    """FLOPs and params of `cfg` at `resolution` (default: its deployment resolution).

    Walks the same layers `build_model` creates, in plain integer arithmetic; tests hold it
    equal to fvcore on the built model for the references and for random configs.
    """
    size = cfg.resolution if resolution is None else resolution
    t = _Tally()
    size = t.conv(cfg.in_channels, cfg.stem_channels, 3, cfg.stem_stride, size)
    t.bn(cfg.stem_channels)
    prev = cfg.stem_channels
    for b in cfg.blocks:
        size = _bottleneck(t, prev, b, size)
        prev = b.out_channels
    t.conv(prev, cfg.head_channels, 1, 1, size)
    t.bn(cfg.head_channels)
    t.conv(cfg.head_channels, cfg.num_features, 1, 1, 1, bias=True)  # after global pooling
    t.conv(cfg.num_features, cfg.num_classes, 1, 1, 1, bias=True)  # the linear classifier
    return Counts(flops=t.flops, params=t.params)


def _as_model(obj: NetConfig | nn.Module) -> nn.Module:
    """The deployed model to trace: built fused from a config, or a fused copy of a module
    that still has GhostNetV3 training branches."""

    if isinstance(obj, NetConfig):

        return build_model(obj, fused=True)
    if isinstance(obj, nn.Module):
        return obj if is_fused(obj) else fuse(obj)
    raise TypeError(f"expected a NetConfig or torch.nn.Module, got {type(obj).__name__}")


def _resolution_of(obj: NetConfig | nn.Module, resolution: int | None) -> int:
    if resolution is not None:
        return resolution
    cfg = obj if isinstance(obj, NetConfig) else getattr(obj, "config", None)
    if isinstance(cfg, NetConfig):
        return cfg.resolution
    return 224


def _input_for(model: nn.Module, resolution: int) -> torch.Tensor:
    cfg = getattr(model, "config", None)
    in_ch = cfg.in_channels if isinstance(cfg, NetConfig) else 3
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    return torch.zeros(1, in_ch, resolution, resolution, device=device)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Count in eval mode (dropout off, BN frozen) and restore the caller's mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hold a library's logger at ERROR for one call, then give it back as it was: fvcore
    warns about every operator it skips, and its level is the application's to set."""
    other = logging.getLogger(name)
    level = other.level
    other.setLevel(logging.ERROR)
    try:
        yield
    finally:
        other.setLevel(level)


def fvcore_flops(model: nn.Module, resolution: int = 224) -> dict[str, int]:
    """fvcore's count by operator, with `paper` (conv + linear) and `total` (all it counts),
    of `model` exactly as given (`count_flops` fuses GhostNetV3 branches first)."""
    with warnings.catch_warnings():
        # fvcore scripts a loss with torch.jit at import and traces with it: deprecation noise
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    with _eval_mode(model), _quiet("fvcore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        analysis = FlopCountAnalysis(model, _input_for(model, resolution))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = {k: int(v) for k, v in analysis.by_operator().items()}
    by_op["paper"] = sum(v for k, v in by_op.items() if k in _FVCORE_PAPER_OPS)
    by_op["total"] = int(analysis.total())
    return by_op


def thop_flops(model: nn.Module, resolution: int = 224) -> dict[str, int]:
    """thop's count: `paper` sums its conv and linear layers only, `total` is what it reports."""
    import thop

    with _eval_mode(model):
        total, _params, layers = thop.profile(
            model, inputs=(_input_for(model, resolution),), verbose=False, ret_layer_info=True
        )

    def own_ops(path: str) -> float:
        node: tuple = (0.0, 0.0, layers)
        for name in path.split("."):
            node = node[2][name]
        return node[0]  # a leaf's ops are its own

    paper = sum(
        own_ops(name)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and name
    )
    return {"paper": int(round(paper)), "total": int(round(total))}


def count_flops(
    obj: NetConfig | nn.Module, resolution: int | None = None, *, counter: str = "fvcore"
) -> int:
    """Multiply-adds of conv and linear layers for one image at `resolution` x `resolution`.

    Args:
        obj: a `NetConfig` (built for counting when the counter needs a model) or a module.
        resolution: input size; defaults to the config's deployment resolution, else 224.
        counter: "fvcore" (the reference), "thop" (cross-check) or "analytic" (config only).
    """
    res = _resolution_of(obj, resolution)
    if counter == "analytic":
        cfg = obj if isinstance(obj, NetConfig) else getattr(obj, "config", None)
        if not isinstance(cfg, NetConfig):
            raise TypeError("the analytic counter needs a NetConfig or a model from build_model")
        return analytic_counts(cfg, res).flops
    if counter == "fvcore":
        return fvcore_flops(_as_model(obj), res)["paper"]
    if counter == "thop":
        return thop_flops(_as_model(obj), res)["paper"]
    raise ValueError(f"counter={counter!r}: choose one of {', '.join(COUNTERS)}")


def count_params(obj: NetConfig | nn.Module) -> int:
    """Learnable parameters: from the config alone for a NetConfig (deployed form), else summed
    over the module as it stands (a GhostNetV3 model in training form has more)."""
    if isinstance(obj, NetConfig):
        return analytic_counts(obj).params
    if isinstance(obj, nn.Module):
        return sum(p.numel() for p in obj.parameters())
    raise TypeError(f"expected a NetConfig or torch.nn.Module, got {type(obj).__name__}")
