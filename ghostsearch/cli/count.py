"""Print params and FLOPs (paper convention and the counters' totals) of GhostNet configs.

    ghostsearch count                       # the reference 0.5x / 1.0x / 1.3x at 224x224
    ghostsearch count --version 2 --width 1.0 1.3 1.6   # GhostNetV2
    ghostsearch count --config best_arch.json --resolution 224

GhostNetV3 models are counted in their deployed (fused) form.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from ghostsearch import ConfigError, analytic_counts, build_model, load_config, reference_config
from ghostsearch.arch.counting import fvcore_flops, thop_flops
from ghostsearch.cli.common import ArgumentParser

# The papers' params and FLOPs as printed there (GhostNet Table 7; GhostNetV2's 1.0x; the
# GhostNetV3 abstract's 1.3x), by (version, width)
PAPER = {(1, 0.5): ("2.6M", "42M"), (1, 1.0): ("5.2M", "141M"), (1, 1.3): ("7.3M", "226M"),
         (2, 1.0): ("", "167M"), (3, 1.3): ("", "269M")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch count", description=__doc__,
                       formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--width", type=float, nargs="*", default=None,
                   help="reference GhostNet width multipliers (default: 0.5 1.0 1.3 "
                        "when no --config is given)")
    p.add_argument("--version", type=int, choices=(1, 2, 3), default=1,
                   help="GhostNet version of the reference widths: 1 (default), 2 (DFC "
                        "attention) or 3 (re-parameterised, counted fused)")
    p.add_argument("--config", nargs="*", default=[],
                   help="NetConfig files (.json/.yaml, or an exported best_arch.json)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size; default: each config's deployment resolution")
    p.add_argument("--num-classes", type=int, default=1000,
                   help="classes of the reference models (default 1000, as in the paper)")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                   help="table format on stdout")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resolution is not None and args.resolution < 1:
        raise ConfigError(f"--resolution {args.resolution}: must be a positive integer")
    widths = args.width if args.width is not None else ([] if args.config else [0.5, 1.0, 1.3])
    prefix = "GhostNet" if args.version == 1 else f"GhostNetV{args.version}"
    named = [(f"{prefix} {w:g}x", reference_config(w, num_classes=args.num_classes,
                                                   version=args.version), w)
             for w in widths]
    named += [(path, load_config(path), None) for path in args.config]
    rows = []
    for name, cfg, width in named:
        res = args.resolution or cfg.resolution
        model = build_model(cfg, fused=True)
        counts = analytic_counts(cfg, res)
        fv, th = fvcore_flops(model, res), thop_flops(model, res)
        paper = (PAPER.get((args.version, width), ("", ""))
                 if args.num_classes == 1000 and res == 224 else ("", ""))
        rows.append({
            "model": name,
            "resolution": res,
            "params": counts.params,
            "MFLOPs (paper conv.)": round(fv["paper"] / 1e6, 2),
            "analytic == fvcore": counts.flops == fv["paper"],
            "thop conv+linear == fvcore": th["paper"] == fv["paper"],
            "fvcore total MFLOPs": round(fv["total"] / 1e6, 2),
            "thop total MFLOPs": round(th["total"] / 1e6, 2),
            "paper params / FLOPs": " / ".join(p or "-" for p in paper) if any(paper) else "",
        })
    table = pd.DataFrame(rows)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    else:
        print(table.to_markdown(index=False, floatfmt=".2f", intfmt=","))
    return 0

