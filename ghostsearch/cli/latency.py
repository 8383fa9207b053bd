"""Measure the latency of reference GhostNets or config files on this machine.

    ghostsearch latency                                   # GhostNet 0.5/1.0/1.3x, CPU
    ghostsearch latency --device cuda --batch 1 256       # CUDA graphs, two batch sizes
    ghostsearch latency --config results/NAME/best_arch.json --threads 1 2

CPU: eager PyTorch, batch 1 by default, a fixed thread count. CUDA: the forward replayed as a
CUDA graph, timed with CUDA events. Median, p10 and p90 over --runs after --warmup.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import pandas as pd

from ghostsearch import load_config, reference_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.latency.measure import DTYPES, measure_latency
from ghostsearch.search.study import width_name


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch latency", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, nargs="*", default=None,
                   help="reference widths (default 0.5 1.0 1.3 when no --config)")
    p.add_argument("--config", nargs="*", default=[], help="NetConfig or best_arch.json files")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch", type=int, nargs="*", default=[1], help="batch sizes (default 1)")
    p.add_argument("--threads", type=int, nargs="*", default=[1],
                   help="CPU thread counts (default 1)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", default=None, help="also write every result to this JSON file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    widths = args.width if args.width is not None else ([] if args.config else [0.5, 1.0, 1.3])
    models = [(width_name(w), reference_config(w)) for w in widths]
    models += [(path, load_config(path)) for path in args.config]
    threads = args.threads if args.device == "cpu" else [None]
    results = []
    for name, cfg in models:
        for batch in args.batch:
            for t in threads:
                lat = measure_latency(cfg, device=args.device, batch=batch, runs=args.runs,
                                      warmup=args.warmup, threads=t, dtype=args.dtype)
                results.append({"model": name, **lat.to_dict()})
    table = pd.DataFrame(results)
    print(f"{results[0]['device']}, torch {results[0]['torch']}, {results[0]['mode']}, "
          f"{args.dtype}, {args.runs} runs after {args.warmup} warm-up")
    cols = ["model", "resolution", "batch", "threads", "median_ms", "p10_ms", "p90_ms"]
    print(table[cols].to_markdown(index=False, floatfmt=".2f"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0

