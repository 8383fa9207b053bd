"""Speed of the analytic FLOPs/params counter against fvcore and thop tracing a built model.

The search rejects over-budget candidates with the analytic counter before building anything;
this measures how many configs per second each way checks, on the same random configs (the
reference layout at random widths, ghost ratios s and cheap kernels d), and that they agree.

    python scripts/bench_counting.py --configs 2000 --traced 20
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence

from ghostsearch import ConfigError, analytic_counts, build_model, reference_config
from ghostsearch.arch.counting import fvcore_flops, thop_flops
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", type=int, default=2000,
                   help="random configs for the analytic counter (default 2000)")
    p.add_argument("--traced", type=int, default=20,
                   help="how many of them to also build and trace with fvcore and thop")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.configs < 1 or not 0 <= args.traced <= args.configs:
        raise ConfigError("--configs must be >= 1 and --traced between 0 and --configs")
    rng = random.Random(args.seed)
    configs = [
        reference_config(rng.uniform(0.3, 1.6), resolution=args.resolution,
                         ghost_ratio=rng.randint(2, 4), cheap_kernel=rng.choice([1, 3, 5]))
        for _ in range(args.configs)
    ]
    t0 = time.perf_counter()
    analytic = [analytic_counts(c).flops for c in configs]
    t_analytic = time.perf_counter() - t0

    traced = configs[: args.traced]
    t_build = t_fv = t_th = 0.0
    agree = True
    for cfg, expected in zip(traced, analytic, strict=False):
        t0 = time.perf_counter()
        model = build_model(cfg)
        t1 = time.perf_counter()
        fv = fvcore_flops(model)["paper"]
        t2 = time.perf_counter()
        th = thop_flops(model)["paper"]
        t3 = time.perf_counter()
        t_build, t_fv, t_th = t_build + t1 - t0, t_fv + t2 - t1, t_th + t3 - t2
        agree &= fv == th == expected

    rows = {"analytic": args.configs / t_analytic}
    if traced:
        rows["build + fvcore trace"] = len(traced) / (t_build + t_fv)
        rows["build + thop hooks"] = len(traced) / (t_build + t_th)
    print(f"{'counter':<24}{'configs/s':>12}{'x slower than analytic':>26}")
    for name, rate in rows.items():
        print(f"{name:<24}{rate:>12.1f}{rows['analytic'] / rate:>26.0f}")
    if traced:
        print(f"analytic == fvcore == thop on all {len(traced)} traced configs: {agree}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"configs_per_s": rows, "agree": agree, "provenance": provenance(args)}, f,
                      indent=2)
    return 0 if agree else 1

