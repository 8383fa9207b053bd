"""GhostNet V1, V2 and V3 side by side on this machine: does DFC attention earn its FLOPs, and
do GhostNetV3's training branches pay at this scale?

Trains V1 1.0x, V2 1.0x, V3 1.0x (its training form; tested fused) and V1 at the grid width
whose FLOPs come closest to V2 1.0x's, each with the ground-truth protocol (10,000 images x
12 epochs at 32 px, stride-1 stem, full test set) and two seeds; one CSV row per (model,
seed), so a killed run resumes. Then measures deployed CPU latency (1 thread, batch 1,
224 px, the fused form) and writes the table.

    python scripts/compare_versions.py --data imagefolder --data-dir /path/to/cifar10 \\
        --out results/versions
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ghostsearch import ConfigError, analytic_counts, reference_config, save_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.latency.measure import measure_latency
from ghostsearch.provenance import provenance
from ghostsearch.train.data import DATASETS
from ghostsearch.train.recipe import GROUND_TRUTH_DATA, GROUND_TRUTH_PROTOCOL

from .ground_truth import Unit, done_units, machine, run_units

WIDTH_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(23))  # 0.5 .. 1.6


def matching_width(target_flops: int) -> float:
    """The V1 grid width whose FLOPs at 224 come closest to `target_flops`."""
    return min(WIDTH_GRID, key=lambda w: abs(analytic_counts(reference_config(w)).flops
                                             - target_flops))


def models() -> list[tuple[str, str, float, int]]:
    """(id, name, width, version) of the compared models."""
    v2 = analytic_counts(reference_config(1.0, version=2)).flops
    w = matching_width(v2)
    return [("v1-1.00x", "GhostNet 1.0x", 1.0, 1), ("v2-1.00x", "GhostNetV2 1.0x", 1.0, 2),
            ("v3-1.00x", "GhostNetV3 1.0x", 1.0, 3),
            (f"v1-{w:.2f}x", f"GhostNet {w:g}x (V2's FLOPs)", w, 1)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=DATASETS, default="imagefolder")
    p.add_argument("--data-dir", required=True, help="the data set (train/ and test/ folders)")
    p.add_argument("--out", default="results/versions", help="output folder")
    p.add_argument("--seeds", type=int, default=2, help="seeds per model (default 2)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--epochs", type=int, default=GROUND_TRUTH_PROTOCOL.epochs)
    p.add_argument("--latency-runs", type=int, default=50,
                   help="timed forward passes per model (default 50)")
    p.add_argument("--skip-training", action="store_true",
                   help="only measure latency and write the table from the rows so far")
    return p.parse_args(argv)


def summarise(out: Path, archs: list[tuple[str, str, float, int]],
              latency: dict[str, float]) -> pd.DataFrame:
    rows = list(csv.DictReader((out / "runs.csv").open())) if (out / "runs.csv").exists() else []
    table = []
    for arch_id, name, width, version in archs:
        cfg = reference_config(width, version=version)
        counts = analytic_counts(cfg)
        tests = [float(r["test_acc"]) for r in rows if r["arch_id"] == arch_id]
        table.append({
            "model": name, "MFLOPs": round(counts.flops / 1e6, 2),
            "params (deployed)": counts.params, "seeds": len(tests),
            "test acc % (mean)": round(statistics.mean(tests), 2) if tests else None,
            "test acc % (each seed)": " / ".join(f"{t:.2f}" for t in tests),
            "spread (max-min)": round(max(tests) - min(tests), 2) if len(tests) > 1 else None,
            "CPU latency ms (1 thread, bs 1, 224 px)": latency.get(arch_id),
        })
    return pd.DataFrame(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.seeds, args.workers, args.threads, args.epochs, args.latency_runs) < 1:
        raise ConfigError("--seeds, --workers, --threads, --epochs and --latency-runs must "
                          "be >= 1")
    out = Path(args.out)
    protocol = dataclasses.replace(GROUND_TRUTH_PROTOCOL, epochs=args.epochs)
    data_kwargs = {"name": args.data, "data_dir": args.data_dir,
                   "val_size": GROUND_TRUTH_DATA["val_size"],
                   "train_subset": GROUND_TRUTH_DATA["train_subset"],
                   "seed": GROUND_TRUTH_DATA["split_seed"]}
    archs = models()
    for arch_id, name, width, version in archs:  # the configs that training reads
        save_config(reference_config(width, version=version), out / "configs" / f"{arch_id}.json",
                    metadata={"kind": "reference", "name": name, "version": version,
                              "width": width})
    units = [Unit(a[0], s) for s in range(args.seeds) for a in archs]
    meta_path = out / "protocol.json"
    identity = {"protocol": dataclasses.asdict(protocol),
                "data": {k: v for k, v in data_kwargs.items() if k != "data_dir"}}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        changed = sorted(k for k in identity if old.get(k) != identity[k])
        if changed:
            raise ConfigError(f"{out}: built with other {', '.join(changed)}; rerun with its "
                              "original options or pass a new --out")
    else:
        meta_path.write_text(json.dumps({
            **identity, "models": [a[0] for a in archs], "seeds": args.seeds,
            "test": "the full test split", "threads_per_worker": args.threads,
            "machine": machine(), "provenance": provenance(args)}, indent=2) + "\n")
    done = done_units(out / "runs.csv") & set(units)
    print(f"{out}: {len(units)} units, {len(done)} done; {protocol.epochs} epochs x "
          f"{data_kwargs['train_subset']} images; {args.workers} workers x {args.threads} "
          f"thread(s) on {machine()}", flush=True)
    if not args.skip_training:
        start, n = time.time(), len(done)
        for row in run_units(out, units, protocol, data_kwargs, args.workers, args.threads):
            n += 1
            print(json.dumps({"done": f"{n}/{len(units)}", "model": row["arch_id"],
                              "seed": row["seed"], "test": row["test_acc"],
                              "s": row["total_seconds"],
                              "elapsed_min": round((time.time() - start) / 60, 1)}), flush=True)
    latency = {}
    for arch_id, _name, width, version in archs:
        lat = measure_latency(reference_config(width, version=version), runs=args.latency_runs,
                              threads=1, batch=1, resolution=224)
        latency[arch_id] = round(lat.median_ms, 2)
        print(f"{arch_id}: {lat.median_ms:.2f} ms (p10 {lat.p10_ms:.2f}, p90 {lat.p90_ms:.2f})",
              flush=True)
    table = summarise(out, archs, latency)
    table.to_csv(out / "versions.csv", index=False)
    (out / "versions.md").write_text(table.to_markdown(index=False) + "\n")
    print(table.to_markdown(index=False))
    return 0
