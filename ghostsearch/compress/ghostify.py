"""Compress an existing CNN by replacing its convolutions with Ghost modules (paper Sec. 4.1).

Each replaced `nn.Conv2d(in, out, k, stride, padding, dilation)` becomes a Ghost module whose
primary conv keeps k, stride, padding and dilation but makes only m = ceil(out/s) maps; a
depthwise d x d conv makes the other (s-1)m, and the first `out` are kept. Input and output
shapes are unchanged, so the rest of the network stays as it was.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

from torch import nn

from ..arch.layers import GhostModule
from ..errors import ConfigError


def ghost_conv(conv: nn.Conv2d, ratio: int = 2, cheap_kernel: int = 3,
               use_act: bool = False) -> GhostModule:
    """A Ghost module with the same input/output shape as `conv` (no bias: BN follows)."""
    if conv.groups != 1:
        raise ConfigError(f"cannot ghostify a grouped conv (groups={conv.groups})")
    return GhostModule(conv.in_channels, conv.out_channels, ratio, cheap_kernel, use_act,
                       kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                       dilation=conv.dilation)


def ghostify(model: nn.Module, ratio: int = 2, cheap_kernel: int = 3, *,
             keep: Sequence[str] = (), keep_stem: bool = True, use_act: bool = False,
             ) -> nn.Module:
    """A copy of `model` with its ordinary convolutions replaced by Ghost modules.

    Args:
        ratio: s; 1/s of each layer's maps come from the primary conv.
        cheap_kernel: d, the cheap depthwise kernel.
        keep: module names (glob patterns, e.g. "features.0", "*downsample*") left as they are.
        keep_stem: leave the first convolution (3 input channels) as it is.
        use_act: ReLU inside the Ghost module after each branch (off: the replaced conv was
            linear and the host network applies its own BN and activation after it).
    Grouped and depthwise convs are always kept.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
        raise ConfigError(f"ratio={ratio!r}: the ghost ratio s must be an integer >= 2")
    if isinstance(cheap_kernel, bool) or not isinstance(cheap_kernel, int) or \
            cheap_kernel < 1 or cheap_kernel % 2 == 0:
        raise ConfigError(f"cheap_kernel={cheap_kernel!r}: must be an odd integer >= 1")
    model = copy.deepcopy(model)
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    stem = convs[0][0] if convs and keep_stem else None
    for name, conv in convs:
        if (conv.groups != 1 or name == stem
                or any(fnmatch.fnmatchcase(name, pattern) for pattern in keep)):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, ghost_conv(conv, ratio, cheap_kernel, use_act))
    return model


def count_ghostified(model: nn.Module) -> int:
    """Number of Ghost modules in `model`."""
    return sum(isinstance(m, GhostModule) for m in model.modules())


def cheap_flops(model: nn.Module, resolution: int) -> int:
    """Multiply-adds of the cheap depthwise operations alone (fvcore, per module)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        from fvcore.nn import FlopCountAnalysis

        was_training = model.training
        model.eval()
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_module = analysis.by_module()
        model.train(was_training)
    return int(sum(v for k, v in by_module.items() if k.endswith("cheap_operation.0")))
