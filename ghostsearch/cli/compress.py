"""Compress a CNN with Ghost modules and print its params and FLOPs before and after.

    ghostsearch compress                          # the paper's CIFAR VGG-16 and ResNet-56
    ghostsearch compress --model resnet18 --resolution 224 --ratio 3
    ghostsearch compress --model resnet56 --no-keep-stem --cheap-kernel 1

FLOPs are multiply-adds of conv and linear layers (the paper's convention), counted by fvcore.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pandas as pd

from ghostsearch import ConfigError
from ghostsearch.arch.counting import fvcore_flops
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.compress.ghostify import cheap_flops, count_ghostified, ghostify
from ghostsearch.compress.zoo import MODELS, make_model

# Paper Table 3 (CIFAR-10, s=2, d=3): weights and FLOPs before -> after
PAPER = {"vgg16": ("15.0M -> 7.7M", "313M -> 158M"), "resnet56": ("0.85M -> 0.43M",
                                                                 "125M -> 63M")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch compress", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="*", default=["vgg16", "resnet56"],
                   choices=sorted(m for m in MODELS if not m.startswith("ghost-")),
                   help="networks to compress (default: vgg16 resnet56, the paper's CIFAR pair)")
    p.add_argument("--ratio", type=int, default=2, help="ghost ratio s (default 2)")
    p.add_argument("--cheap-kernel", type=int, default=3, help="cheap kernel d (default 3)")
    p.add_argument("--keep", nargs="*", default=[],
                   help="module names (glob patterns) to keep as ordinary convolutions")
    p.add_argument("--no-keep-stem", action="store_true",
                   help="also replace the first convolution")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size (default: 32 for CIFAR models, 224 for torchvision ones)")
    p.add_argument("--num-classes", type=int, default=10)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resolution is not None and args.resolution < 8:
        raise ConfigError(f"--resolution {args.resolution}: must be >= 8")
    rows = []
    for name in args.model:
        model, default_res = make_model(name, args.num_classes)
        res = args.resolution or default_res
        ghost = ghostify(model, args.ratio, args.cheap_kernel, keep=args.keep,
                         keep_stem=not args.no_keep_stem)
        f0, f1 = fvcore_flops(model, res)["paper"], fvcore_flops(ghost, res)["paper"]
        w0 = sum(p.numel() for p in model.parameters() if p.ndim > 1)
        w1 = sum(p.numel() for p in ghost.parameters() if p.ndim > 1)
        paper = PAPER.get(name, ("", "")) if (args.ratio, args.cheap_kernel, res) == (
            2, 3, 32) else ("", "")
        rows.append({
            "model": name, "resolution": res, "ghost modules": count_ghostified(ghost),
            "weights": f"{w0 / 1e6:.3f}M -> {w1 / 1e6:.3f}M",
            "params (with BN)": f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f}M -> "
                                f"{sum(p.numel() for p in ghost.parameters()) / 1e6:.3f}M",
            "MFLOPs": f"{f0 / 1e6:.2f} -> {f1 / 1e6:.2f}",
            "FLOPs ratio": round(f0 / f1, 2),
            "cheap-op MFLOPs": round(cheap_flops(ghost, res) / 1e6, 2),
            "paper weights": paper[0], "paper FLOPs": paper[1],
        })
    print(f"Ghost modules with s={args.ratio}, d={args.cheap_kernel}"
          f"{', stem kept' if not args.no_keep_stem else ''}:")
    print(pd.DataFrame(rows).to_markdown(index=False))
    return 0

