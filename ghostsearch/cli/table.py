"""Build a per-block latency table for a search space on this CPU or GPU, and measure how well
it predicts whole networks it has not seen.

    ghostsearch table --space ghostnet --threads 1 --archs 20 --eval 50
    ghostsearch table --space ghostnet --device cuda --archs 20 --eval 50

Latency is what measure_latency measures: eager at --threads threads on the CPU, a replayed
CUDA graph on a GPU (batch 1 on both).

Measures every op (stem, each bottleneck, head) of --archs networks (the reference GhostNet
0.5/1.0/1.3x and random points of the space) and fits the per-family regressions on them;
measures --archs other networks end to end and fits the correction on those; then predicts
--eval further random networks and compares with their measured latency: mean absolute
percentage error and rank correlations, before and after the correction. Writes the table
and its evaluation as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ghostsearch import ConfigError
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.latency.measure import device_name, measure_latency
from ghostsearch.latency.table import LatencyTable
from ghostsearch.search.proxy import pick_device
from ghostsearch.search.space import load_space
from ghostsearch.stats import rank_correlations


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch table", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="ghostnet")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--archs", type=int, default=20, help="calibration networks (default 20)")
    p.add_argument("--eval", type=int, default=50, help="held-out networks to test (default 50)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per end-to-end measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="table file (default results/latency/<space>-cpu-<threads>t.json or "
                        "<space>-cuda.json)")
    return p.parse_args(argv)


def evaluate(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    p, m = pd.Series(predicted), pd.Series(measured)
    return {"mape_pct": float((abs(p - m) / m).mean() * 100),
            "bias_pct": float(((p - m) / m).mean() * 100), **rank_correlations(p, m)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {args.device}: latency tables are built on cpu or cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # ops and networks are measured on the current GPU
    threads = args.threads if device.type == "cpu" else None
    if args.archs < 3 or args.eval < 2:
        raise ConfigError("--archs must be >= 3 and --eval >= 2")
    space = load_space(args.space)
    rng = random.Random(args.seed)
    refs = [space.build_config(space.reference_params(w)) for w in (0.5, 1.0, 1.3)
            if w in space.width]
    calib = refs + [space.build_config(space.random_params(rng))
                    for _ in range(max(0, args.archs - len(refs)))]
    table = LatencyTable(device=device_name(device), torch=torch.__version__, threads=threads,
                         resolution=space.deployment.resolution)

    def e2e(cfg):
        return measure_latency(cfg, device=str(device), runs=args.runs, warmup=3,
                               threads=threads).median_ms

    for cfg in tqdm(calib, desc="networks measured op by op"):
        table.add_network(cfg)
    correction = [space.build_config(space.random_params(rng)) for _ in range(args.archs)]
    pairs = [(cfg, e2e(cfg)) for cfg in tqdm(correction, desc="networks for the correction")]
    table.fit(calib, pairs)
    held_out = [space.build_config(space.random_params(rng)) for _ in range(args.eval)]
    rows = []
    for cfg in tqdm(held_out, desc="held-out networks"):
        rows.append((table.raw_ms(cfg), table.predict(cfg), e2e(cfg)))
    raw, pred, meas = (np.array(c) for c in zip(*rows, strict=True))
    result = {"space": space.name, "device": table.device, "threads": threads,
              "torch": table.torch, "entries": len(table.entries),
              "correction": table.correction, "networks_measured_by_op": len(calib),
              "networks_for_correction": len(correction),
              "held_out_networks": len(held_out),
              "sum_of_ops": evaluate(raw, meas), "corrected": evaluate(pred, meas),
              "measured_ms_range": [float(meas.min()), float(meas.max())]}
    tag = f"cpu-{threads}t" if device.type == "cpu" else "cuda"
    out = Path(args.out or Path("results") / "latency" / f"{space.name}-{tag}.json")
    table.save(out)
    out.with_name(out.stem + "-eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"table: {out}")
    return 0

