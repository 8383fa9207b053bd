"""Where a proxy trial's time goes, how it compares with a naive DataLoader loop, and how many
trials an hour K concurrent workers reach.

    python scripts/bench_proxy.py --data imagefolder --data-dir DIR --jobs 1 2 4 8

For the reference GhostNet 1.0x and --searched random architectures within --budget (each
adapted to the proxy task as the search adapts it), times the search's trainer phase by phase:
model build, data ready, first epoch (the per-architecture warm-up), steady epochs, evaluation;
with images per second, peak GPU memory and validation accuracy, at each --batch-size.
--variants repeats it with a change (fp32, no-cudnn, no-channels-last, cuda-graphs) to see what
the warm-up and the steady epoch are made of; --profile DIR writes profiler tables of the first
and of a steady training step. The naive
loop (a DataLoader with --workers processes and PIL transforms, reading the JPEG files for
--data imagefolder, fp32, batch --naive-batch) trains the same model for the same epochs; the
ratio of the two is printed. --jobs K... runs a throw-away search of K x --trials-per-job
trials with K worker processes for each K and reports trials per hour. Prints tables and
writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from ghostsearch import ConfigError, parse_budget
from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.latency.measure import device_name
from ghostsearch.provenance import provenance
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.settings import DataSpec, SearchSettings
from ghostsearch.spaces.space import load_space
from ghostsearch.train.data import train_files
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import Recipe

from .proxy_bench import (
    VARIANTS,
    bench_architectures,
    naive_comparison,
    naive_proxy,
    profile_steps,
    timed_proxy,
    trials_per_hour,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what is trained")
    add_data_args(g, val_help="to evaluate on")
    g.add_argument("--space", default="ghostnet")
    g.add_argument("--budget", default="200MFLOPs", help="for the searched architectures")
    g.add_argument("--searched", type=int, default=2,
                   help="random architectures within the budget besides GhostNet 1.0x (2)")
    g.add_argument("--epochs", type=int, default=5)
    g.add_argument("--batch-size", type=int, nargs="+", default=[512],
                   help="fast-loop batch sizes (default 512; the learning rate scales with it); "
                        "the first is the one compared and used for --jobs")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.add_argument("--threads", type=int, nargs="+", default=None,
                   help="CPU: torch threads of the fast loop, each measured (default: as "
                        "torch starts, all cores)")
    g = p.add_argument_group("what is measured")
    g.add_argument("--variants", default="default",
                   help=f"fast-loop variants, comma-separated: {', '.join(VARIANTS)}")
    g.add_argument("--naive-archs", type=int, default=1,
                   help="how many of the architectures also run the naive loop (default 1, "
                        "the reference; 0 skips it)")
    g.add_argument("--naive-batch", type=int, default=128)
    g.add_argument("--workers", type=int, default=8, help="naive DataLoader workers (8)")
    g.add_argument("--jobs", type=int, nargs="*", default=[1, 2, 4, 8],
                   help="concurrent workers to measure trials per hour for (default 1 2 4 8; "
                        "none skips it)")
    g.add_argument("--trials-per-job", type=int, default=4)
    g.add_argument("--devices", default=None,
                   help="comma-separated devices the --jobs workers are spread over")
    g.add_argument("--profile", default=None, metavar="DIR",
                   help="write profiler tables of the first and a steady step of GhostNet 1.0x")
    p.add_argument("--json", default=None,
                   help="results file (default results/bench/proxy-<device type>.json)")
    return p.parse_args(argv)


def _check(args: argparse.Namespace) -> None:
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants {','.join(unknown)}: choose from {', '.join(VARIANTS)}")
    if args.searched < 0 or args.naive_archs < 0 or args.workers < 0:
        raise ConfigError("--searched, --naive-archs and --workers must be >= 0")
    if any(k < 1 for k in args.jobs) or args.trials_per_job < 1:
        raise ConfigError("--jobs values and --trials-per-job must be >= 1")
    if args.threads is not None and any(t < 1 for t in args.threads):
        raise ConfigError("--threads values must be >= 1")
    if args.epochs < 2:
        raise ConfigError(f"--epochs {args.epochs}: need >= 2 to tell the first epoch from "
                          "steady ones")


def _fmt(rows: list[dict], cols: list[str]) -> str:
    return pd.DataFrame(rows)[cols].to_markdown(index=False, floatfmt=".2f")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check(args)
    device = pick_device(args.device)
    if "cuda-graphs" in args.variants.split(",") and device.type != "cuda":
        raise ConfigError(f"--variants cuda-graphs needs a CUDA device, not {device}")
    protocols = [Recipe(epochs=args.epochs, batch_size=b) for b in args.batch_size]
    protocol = protocols[0]
    space = load_space(args.space)
    spec = DataSpec(args.data, args.data_dir, args.val_size, args.train_subset, args.resolution,
                    args.seed)
    data = spec.load()
    files = (train_files(args.data_dir, val_size=args.val_size, train_subset=args.train_subset,
                         seed=args.seed) if args.data == "imagefolder" else None)
    archs = bench_architectures(space, parse_budget(args.budget), args.searched, args.seed)
    where = device_name(device) + (f", {torch.get_num_threads()} threads"
                                   if device.type == "cpu" else "")
    print(f"{data.summary()}; {where}; torch {torch.__version__}")
    rows = []
    start_threads = torch.get_num_threads()
    for i, (name, cfg) in enumerate(archs):
        pcfg = proxy_config(cfg, data, protocol)
        for threads in args.threads or [start_threads]:
            torch.set_num_threads(threads)
            for proto in protocols:
                for v in args.variants.split(","):
                    r = timed_proxy(pcfg, data, proto, seed=args.seed, device=device,
                                    variant=VARIANTS[v])
                    rows.append({"arch": name, "loop": v, "batch": proto.batch_size,
                                 "threads": threads, **r})
                    print(f"{name} [{v}, batch {proto.batch_size}, {threads} thread(s)]: first "
                          f"epoch {r['first_epoch_s']:.2f} s, steady {r['steady_epoch_s']:.2f} "
                          f"s, trial {r['trial_s']:.1f} s, val {r['val_acc']:.2f}%", flush=True)
        torch.set_num_threads(start_threads)
        if i < args.naive_archs:
            r = naive_proxy(pcfg, data, protocol, seed=args.seed, device=device, files=files,
                            workers=args.workers, batch_size=args.naive_batch)
            rows.append({"arch": name, "loop": "naive", "batch": args.naive_batch, **r})
            print(f"{name} [naive, batch {args.naive_batch}]: first epoch "
                  f"{r['first_epoch_s']:.2f} s, steady {r['steady_epoch_s']:.2f} s, val "
                  f"{r['val_acc']:.2f}%", flush=True)
    cols = ["arch", "loop", "batch", "threads", "build_s", "data_s", "first_epoch_s",
            "steady_epoch_s", "warmup_s", "eval_s", "trial_s", "images_per_s", "peak_mem_mb",
            "val_acc"]
    print(_fmt(rows, [c for c in cols if any(c in r for r in rows)]))
    profile = None
    if args.profile:
        profile = profile_steps(proxy_config(archs[0][1], data, protocol), data, protocol,
                                seed=args.seed, device=device, out_dir=Path(args.profile))
        print(f"profile of {archs[0][0]}: first step {profile['first_step_s']:.3f} s, steady "
              f"step {profile['steady_step_s']:.3f} s; tables in {args.profile}")
    sweep = []
    if args.jobs:
        settings = SearchSettings(
            study_name="bench", storage="sqlite:///:memory:",  # trials_per_hour replaces it
            space=space, data=spec, protocol=protocol,
            budget_flops=parse_budget(args.budget), device=str(device), seed=args.seed,
            pruner="none", baselines=False)
        devices = args.devices.split(",") if args.devices else None
        for k in args.jobs:
            sweep.append(trials_per_hour(settings, k, devices=devices,
                                         trials_per_job=args.trials_per_job))
            print(f"{k} worker(s): {sweep[-1]['trained']} trials in {sweep[-1]['span_s']:.1f} s "
                  f"= {sweep[-1]['trials_per_hour']:.0f} trials/hour", flush=True)
        print(pd.DataFrame(sweep).to_markdown(
            index=False, floatfmt=("g", "g", ".1f", ".1f", ".0f", ".0f")))
    ratios = naive_comparison(rows, sweep, batch=protocol.batch_size,
                              variant=args.variants.split(",")[0])
    for r in ratios:
        print(f"{r['arch']}: the naive loop (batch {r['naive_batch']}) takes "
              f"{r['steady_epoch_x']:.1f}x the fast loop's steady epoch at batch "
              f"{r['fast_batch']} ({r['all_epochs_x']:.1f}x over all {args.epochs} epochs); "
              f"validation accuracy fast - naive at batch {r['acc_compared_at_batch']}: "
              f"{r['val_acc_fast_minus_naive']:+.2f} points")
        if "trials_per_hour_x" in r:
            print(f"trials per hour: {r['best_trials_per_hour']:.0f} with {r['best_jobs']} "
                  f"worker(s) against {r['naive_trials_per_hour']:.0f} for one naive process: "
                  f"{r['trials_per_hour_x']:.1f}x")
    out = Path(args.json or Path("results") / "bench" / f"proxy-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": where, "torch": torch.__version__, "data": data.summary(),
              "protocols": [p.__dict__ for p in protocols], "rows": rows, "naive_ratio": ratios,
              "profile": profile, "jobs": sweep, "provenance": provenance(args)}
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 0

