"""Latency of the same networks on the runtimes a deployment can choose: eager PyTorch,
onnxruntime float32 and onnxruntime int8 (static quantisation), at 1 and 2 threads, batch 1.

    python scripts/runtimes.py --configs results/NAME/best_arch.json other.json --threads 1,2

Networks: the reference GhostNet 0.5x, 1.0x and 1.3x, and every --configs file (a NetConfig
or an exported best_arch.json), at their deployment resolution. Each figure is the median of
--runs timed runs after a warm-up; the int8 file is calibrated on random inputs (which does
not change its latency). Writes one row per network, runtime and thread count.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from ghostsearch import analytic_counts, load_config, reference_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.deploy import require_deploy
from ghostsearch.latency import onnxrt
from ghostsearch.latency.measure import device_name, measure_latency
from ghostsearch.provenance import provenance


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="runtimes", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=[],
                   help="found architectures to time beside the reference GhostNets")
    p.add_argument("--widths", default="0.5,1.0,1.3", help="reference GhostNet widths")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=50, help="timed runs per figure")
    p.add_argument("--out", default="results/latency/runtimes.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_deploy()
    nets = {f"GhostNet {w}x": reference_config(float(w)) for w in args.widths.split(",") if w}
    nets.update({Path(c).stem if Path(c).stem != "best_arch" else Path(c).parent.name:
                 load_config(c) for c in args.configs})
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for name, cfg in tqdm(nets.items(), desc="networks"):
        files = {"onnxruntime": onnxrt.network_onnx(cfg),
                 "onnxruntime-int8": onnxrt.network_onnx(cfg, int8=True)}
        for t in threads:
            eager = measure_latency(cfg, runs=args.runs, warmup=10, threads=t)
            row = {"network": name, "MFLOPs": analytic_counts(cfg).flops / 1e6,
                   "threads": t, "eager_ms": eager.median_ms}
            for runtime, path in files.items():
                row[f"{runtime}_ms"] = onnxrt.network_latency(path, t, runs=args.runs,
                                                              warmup=10)[0]
            rows.append(row)
    df = pd.DataFrame(rows)
    df["eager_over_ort"] = df.eager_ms / df.onnxruntime_ms
    df["int8_over_f32"] = df["onnxruntime-int8_ms"] / df.onnxruntime_ms
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**provenance(args), "device": device_name(torch.device("cpu")),
                               "rows": df.round(3).to_dict(orient="records")}, indent=2) + "\n")
    print(f"written: {out}")
    return 0
