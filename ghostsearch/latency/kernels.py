"""The kernels a runtime runs for a network, enumerated from its config without building it.

onnxruntime folds each BatchNorm into the convolution before it and fuses a following ReLU
into the same kernel, so a GhostNet runs as a list of convolutions (each with its input size,
channels, kernel, stride and groups), plus the tensor ops between them: the Ghost module's
concatenation (and the cut to `out` channels when it keeps fewer), the residual addition,
squeeze-excite's pooling and product, DFC attention's pooling, upsampling and product (each
gate, hard or plain sigmoid, fuses into the conv before it), and the classifier.
`network_kernels` lists them in execution order; tests hold each kind's count equal to the
nodes of the exported graph after onnxruntime's optimisations. What the runtime adds on top
(NCHWc layout reorders around its blocked convolutions) is left to the latency table's
whole-network correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..arch.config import BlockConfig, NetConfig
from ..arch.layers import ghost_channels, se_channels

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Kernel:
    """One kernel at batch 1: its op, activation input shapes, output shape and attributes.

    conv attrs: (kh, kw, stride, groups, activation), activation 0 none, 1 ReLU, 2 hard
    sigmoid, 3 sigmoid (each fused into the conv, as onnxruntime runs it; its bias is the
    folded BN's)."""

    op: str  # conv, concat, slice, add, mul, gap, avgpool, resize, gemm
    inputs: tuple[Shape, ...]
    output: Shape
    attrs: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        shapes = ",".join("x".join(map(str, s)) for s in self.inputs)
        out = "x".join(map(str, self.output))
        attrs = "" if not self.attrs else "|" + ",".join(map(str, self.attrs))
        return f"{self.op}|{shapes}|{out}{attrs}"

    @property
    def family(self) -> str:
        """Kernels whose latency one regression describes: a conv by its kernel size, stride and
        whether it is depthwise; any other op by its name."""
        if self.op != "conv":
            return self.op
        kh, kw, stride, groups = self.attrs[:4]
        return f"conv{kh}x{kw}s{stride}" + ("dw" if groups > 1 else "")

    @property
    def macs(self) -> int:
        out = math.prod(self.output)
        if self.op == "conv":
            kh, kw, _, groups = self.attrs[:4]
            return out * (self.inputs[0][1] // groups) * kh * kw
        if self.op == "gemm":
            return out * self.inputs[0][-1]
        return out

    @property
    def elements(self) -> int:
        """Input and output elements: the memory traffic of the op."""
        return sum(math.prod(s) for s in self.inputs) + math.prod(self.output)


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


NONE, RELU, HARDSIGMOID, SIGMOID = 0, 1, 2, 3


def conv(cin: int, cout: int, size: int, k: int | tuple[int, int] = 1, stride: int = 1,
         groups: int = 1, act: int = NONE) -> Kernel:
    kh, kw = (k, k) if isinstance(k, int) else k
    return Kernel("conv", ((1, cin, size, size),),
                  (1, cout, _out(size, stride), _out(size, stride)), (kh, kw, stride, groups, act))


def _ghost_module(cin: int, out: int, size: int, block: BlockConfig, relu: bool,
                  attention: bool) -> list[Kernel]:
    init, new = ghost_channels(out, block.ghost_ratio)
    d = block.cheap_kernel
    act = RELU if relu else NONE
    ks = [conv(cin, init, size, 1, act=act), conv(init, new, size, d, groups=init, act=act),
          Kernel("concat", ((1, init, size, size), (1, new, size, size)),
                 (1, init + new, size, size))]
    if init + new > out:
        ks.append(Kernel("slice", ((1, init + new, size, size),), (1, out, size, size)))
    if attention:
        small = size // 2 if size >= 2 else size  # dfc_pool
        if small != size:
            ks.append(Kernel("avgpool", ((1, cin, size, size),), (1, cin, small, small)))
        ks += [conv(cin, out, small, 1),
               conv(out, out, small, (1, 5), groups=out),
               conv(out, out, small, (5, 1), groups=out, act=SIGMOID)]
        if small != size:
            ks.append(Kernel("resize", ((1, out, small, small),), (1, out, size, size)))
        ks.append(Kernel("mul", ((1, out, size, size), (1, out, size, size)),
                         (1, out, size, size)))
    return ks


def block_kernels(cin: int, block: BlockConfig, size: int) -> list[Kernel]:
    """The kernels of one Ghost bottleneck with `cin` input channels of `size` x `size`."""
    mid, out, k, stride = block.expansion, block.out_channels, block.kernel, block.stride
    ks = _ghost_module(cin, mid, size, block, relu=True, attention=block.attention == "dfc")
    inner = size
    if stride > 1:
        ks.append(conv(mid, mid, size, k, stride, groups=mid))
        inner = _out(size, stride)
    if block.se_ratio > 0:
        r = se_channels(mid, block.se_ratio)
        act = (1, mid, inner, inner)
        ks += [Kernel("gap", (act,), (1, mid, 1, 1)),
               conv(mid, r, 1, 1, act=RELU),
               conv(r, mid, 1, 1, act=HARDSIGMOID),
               Kernel("mul", (act, (1, mid, 1, 1)), act)]
    ks += _ghost_module(mid, out, inner, block, relu=False, attention=False)
    if not (cin == out and stride == 1):
        ks += [conv(cin, cin, size, k, stride, groups=cin), conv(cin, out, inner, 1)]
    ks.append(Kernel("add", ((1, out, inner, inner),) * 2, (1, out, inner, inner)))
    return ks


def network_kernels(cfg: NetConfig) -> list[list[Kernel]]:
    """The kernels of `cfg` at its deployment resolution, grouped as the stem, each bottleneck,
    and the head (head conv, pooling, conv_head, classifier)."""
    size = _out(cfg.resolution, cfg.stem_stride)
    groups = [[conv(cfg.in_channels, cfg.stem_channels, cfg.resolution, 3, cfg.stem_stride,
                    act=RELU)]]
    prev = cfg.stem_channels
    for b in cfg.blocks:
        groups.append(block_kernels(prev, b, size))
        prev, size = b.out_channels, _out(size, b.stride)
    groups.append([conv(prev, cfg.head_channels, size, 1, act=RELU),
                   Kernel("gap", ((1, cfg.head_channels, size, size),),
                          (1, cfg.head_channels, 1, 1)),
                   conv(cfg.head_channels, cfg.num_features, 1, 1, act=RELU),
                   Kernel("gemm", ((1, cfg.num_features),), (1, cfg.num_classes))])
    return groups
