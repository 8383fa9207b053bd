"""Kernels timed in their network: a whole network profiled on onnxruntime, each node the
runtime ran given to the kernel of `kernels.py` it computes.

Why: a kernel timed alone misses what its network adds around it. On this CPU's onnxruntime a
GhostNet runs 85-125 layout reorders (blocked NCHWc convolutions meeting plain concatenations,
cuts and products: 13-20% of the network's time) and pays a few microseconds of dispatch per
node; which reorders a kernel needs depends on its neighbours. Profiled in place, a kernel's
time includes the reorders that serve it (an input reorder runs just before its kernel, an
output reorder just after), so a sum of in-context times adds up to the network.
"""

from __future__ import annotations

import math

from .kernels import Kernel
from .onnxrt import Signature

RUNTIME_OP = {"Conv": "conv", "FusedConv": "conv", "Concat": "concat", "Slice": "slice",
              "Add": "add", "Mul": "mul", "ReduceMean": "gap", "GlobalAveragePool": "gap",
              "Gemm": "gemm", "AveragePool": "avgpool", "Resize": "resize"}
# nodes that compute no kernel of their own: they serve the kernel beside them
SERVING = ("ReorderInput", "ReorderOutput", "Reshape", "Flatten")
# channel padding of onnxruntime's blocked (NCHWc) layout: 16 with AVX-512, 8 with AVX2;
# a node matches up to 16, and the regressions' padded features take 16
BLOCK = 16


def matches(kernel: Kernel, sig: Signature) -> bool:
    """Whether the runtime node `sig` computes `kernel`: same op and spatial sizes, and for a
    convolution the same kernel size and output channels up to the blocked layout's padding."""
    op, ins, outs = sig
    if RUNTIME_OP.get(op) != kernel.op or not outs:
        return False
    if tuple(outs[0][2:]) != tuple(kernel.output[2:]):
        return False
    if kernel.op != "conv":
        channels = outs[0][1] if len(outs[0]) > 1 else 0
        cout = kernel.output[1]
        return channels == cout or (op in ("Add", "Mul") and cout <= channels < cout + BLOCK)
    if len(ins) < 2 or len(ins[1]) != 4 or tuple(ins[0][2:]) != tuple(kernel.inputs[0][2:]):
        return False
    kh, kw = kernel.attrs[:2]
    cout = kernel.output[1]
    return tuple(ins[1][2:]) == (kh, kw) and cout <= ins[1][0] < cout + BLOCK


def attribute(kernels: list[Kernel], nodes: list[tuple[Signature, float]]) -> list[float]:
    """Each kernel's in-context ms: the node that computes it (the first unclaimed kernel it
    `matches`, in the kernels' order) plus the reorders and reshapes that serve it (an input
    reorder its next node, any other its previous one). NaN for a kernel no node computed.

    A serving node with no claimed neighbour, or a node no kernel matches, is left out: the
    network's correction absorbs it."""
    owner: list[int | None] = [None] * len(nodes)
    free = list(range(len(kernels)))
    for i, (sig, _) in enumerate(nodes):
        if sig[0] in SERVING:
            continue
        j = next((j for j in free if matches(kernels[j], sig)), None)
        if j is not None:
            free.remove(j)
            owner[i] = j
    times = [math.nan] * len(kernels)
    for i, j in enumerate(owner):
        if j is not None:
            times[j] = nodes[i][1]
    for i, (sig, ms) in enumerate(nodes):
        if owner[i] is not None:
            continue
        near = [i + 1, i - 1] if sig[0] == "ReorderInput" else [i - 1, i + 1]
        j = next((owner[n] for n in near if 0 <= n < len(nodes) and owner[n] is not None),
                 None)
        if j is not None:
            times[j] += ms
    return times


def family(kernel: Kernel) -> str:
    """A finer family than `Kernel.family`: dense, depthwise and grouped convolutions apart."""
    if kernel.op != "conv":
        return kernel.op
    kh, kw, stride, groups = kernel.attrs[:4]
    cin, cout = kernel.inputs[0][1], kernel.output[1]
    kind = "" if groups == 1 else "dw" if groups == cin == cout else "g"
    return f"conv{kh}x{kw}s{stride}{kind}"


def size_family(kernel: Kernel) -> str:
    """`family` at one input size: in context, a kernel's cost per multiply-add depends on
    the size of the maps it works on."""
    shape = kernel.inputs[0]
    return f"{family(kernel)}@{shape[-1] if len(shape) == 4 else 1}"


def features(kernel: Kernel) -> list[float]:
    """What a regression for unseen kernels weighs: 1, multiply-adds, elements moved (M), and
    for a convolution the multiply-adds and output elements with the blocked layout's channel
    padding and its input elements."""
    base = [1.0, kernel.macs / 1e6, kernel.elements / 1e6]
    if kernel.op != "conv":
        return base + [0.0, math.prod(kernel.output) / 1e6, 0.0]
    kh, kw, _, groups = kernel.attrs[:4]
    cin, cout = kernel.inputs[0][1], kernel.output[1]
    hw = kernel.output[2] * kernel.output[3] / 1e6
    padded = -(-cout // BLOCK) * BLOCK
    if groups == 1:
        per_out = -(-cin // BLOCK) * BLOCK * kh * kw
    else:
        per_out = cin // groups * kh * kw
        padded = padded if groups == cin == cout else cout
    return base + [hw * padded * per_out, hw * padded, math.prod(kernel.inputs[0]) / 1e6]
