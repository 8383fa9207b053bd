"""CPU-seconds per training-free score: GhostNet 1.0x in its proxy form (10 classes, stride-1
stem) at 32 px, one batch of 64 random images, one thread, the median of --repeats runs
(model build included, as a search pays it).

    python scripts/bench_scores.py --repeats 3 --json results/bench/scores-cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence

import torch

from ghostsearch import reference_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.latency.measure import device_name
from ghostsearch.provenance import provenance
from ghostsearch.search.scores import SCORE_NAMES, score_architecture


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = reference_config(args.width, num_classes=10, resolution=args.resolution, stem_stride=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    rows = []
    for name in SCORE_NAMES:
        times, value = [], None
        for _ in range(args.repeats):
            start = time.process_time()
            value = score_architecture(cfg, name, x, y)
            times.append(time.process_time() - start)
        rows.append({"score": name, "cpu_s": statistics.median(times), "value": value})
        print(f"{name:10s} {statistics.median(times):6.3f} CPU-s  (score {value:.6g})",
              flush=True)
    print(f"GhostNet {args.width:g}x, batch {args.batch}, {args.resolution} px, "
          f"{args.threads} thread(s), {device_name(torch.device('cpu'))}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "width": args.width, "batch": args.batch,
                       "resolution": args.resolution, "threads": args.threads,
                       "device": device_name(torch.device("cpu")),
                       "provenance": provenance(args)}, f, indent=2)
    return 0
