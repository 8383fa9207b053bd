"""Does a latency limit pick other architectures than the FLOPs budget of the same model?

    python scripts/limit_vs_budget.py --table results/latency/ghostnet-ort-1t.json --width 1.0

Draws --n candidates of the space uniformly within the latency band a search limited to the
reference GhostNet's predicted latency L would draw from ([band x L, L], predicted by the
table), and --n within the FLOPs band of a search at that GhostNet's FLOPs F ([band x F, F]),
and reports each set's FLOPs and predicted latency and how many of each fall in the other's
band. Prediction only: nothing is built or timed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ghostsearch import analytic_counts
from ghostsearch.arch.config import NetConfig
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.latency.table import LatencyTable
from ghostsearch.spaces.limits import DEFAULT_BAND
from ghostsearch.spaces.space import load_space, sample_band


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="limit_vs_budget", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, help="a latency table (ghostsearch table)")
    p.add_argument("--space", default="ghostnet")
    p.add_argument("--width", type=float, default=1.0, help="the reference GhostNet's width")
    p.add_argument("--band", type=float, default=DEFAULT_BAND)
    p.add_argument("--n", type=int, default=500, help="candidates drawn in each band")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the summary as JSON here")
    return p.parse_args(argv)


def summary(flops: np.ndarray, ms: np.ndarray) -> dict[str, float]:
    return {"mflops_min": float(flops.min() / 1e6), "mflops_median": float(np.median(flops) / 1e6),
            "mflops_max": float(flops.max() / 1e6), "ms_min": float(ms.min()),
            "ms_median": float(np.median(ms)), "ms_max": float(ms.max())}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = LatencyTable.load(args.table)
    space = load_space(args.space)
    ref = space.reference_config(args.width)
    limit_ms, budget = table.predict(ref), analytic_counts(ref).flops

    def within_latency(cfg: NetConfig) -> bool:
        return args.band * limit_ms <= table.predict(cfg) <= limit_ms

    by_latency = sample_band(space, args.n, args.seed, accept=within_latency)
    by_flops = sample_band(space, args.n, args.seed + 1, low_flops=int(args.band * budget),
                           high_flops=budget)
    out = {"table": args.table, "describe": table.describe(), "width": args.width,
           "band": args.band, "limit_ms": limit_ms, "budget_mflops": budget / 1e6}
    for name, draws in (("latency_band", by_latency), ("flops_band", by_flops)):
        cfgs = [space.build_config(p) for p in draws.points]
        flops = np.array([analytic_counts(c).flops for c in cfgs], dtype=float)
        ms = np.array([table.predict(c) for c in cfgs])
        in_flops = (flops >= args.band * budget) & (flops <= budget)
        in_latency = (ms >= args.band * limit_ms) & (ms <= limit_ms)
        out[name] = {"n": len(cfgs), "draws": draws.draws, **summary(flops, ms),
                     "in_flops_band": int(in_flops.sum()), "in_latency_band": int(in_latency.sum())}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0
