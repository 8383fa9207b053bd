"""Build a latency table for a search space on this CPU or GPU, and measure how well it
predicts whole networks it has not seen.

    ghostsearch table --space ghostnet --runtime onnxruntime --threads 1 --archs 100 \\
        --eval 100 --budgets 40:60,90:110,130:160,180:200,220:240
    ghostsearch table --space ghostnet --runtime onnxruntime --int8 --threads 1 --eval 100
    ghostsearch table --space ghostnet --threads 1 --archs 20 --eval 50        (eager PyTorch)
    ghostsearch table --space ghostnet --device cuda --archs 20 --eval 50

Runtimes (batch 1):
  eager        PyTorch eval mode at --threads threads on the CPU; a replayed CUDA graph on a GPU.
               Ops are the stem, each bottleneck and the head.
  onnxruntime  the network exported as `ghostsearch deploy` exports it, in an onnxruntime CPU
               session with all graph optimisations, --threads intra-op threads. Ops are the
               kernels the runtime runs after fusion (conv + folded BN + activation, concat,
               add, ...). float32 kernels are timed in context (--kernels in-context, the
               default): the reference GhostNet 0.5/1.0/1.3x and --archs networks are profiled
               whole, and each kernel gets its node's time plus the layout reorders that serve
               it. --kernels alone times each kernel as its own graph, of --kernel-archs
               networks. --int8 quantises statically (QDQ, per-channel int8 weights, uint8
               activations; random calibration data, which does not change latency); its
               kernels are timed alone.

Kernels the table lacks are predicted by regressions per kernel family (and input size, in
context). The correction is fitted on --archs networks measured end to end (the least
disturbed of three blocks of --runs; drawn within --budgets when given). Then the table
predicts --eval further networks and compares with their measured latency: share within
+-10%, mean absolute percentage error and rank correlations, before and after the correction.
With --budgets, the networks are drawn evenly within those FLOPs bands instead of uniformly
from the space. Writes the table and its evaluation (with one row per held-out network) as
JSON.
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
from ghostsearch.arch.counting import analytic_counts
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.deploy import require_deploy
from ghostsearch.latency import onnxrt
from ghostsearch.latency.measure import device_name
from ghostsearch.latency.table import LatencyTable
from ghostsearch.provenance import write_atomic
from ghostsearch.spaces.space import load_space, sample_band
from ghostsearch.stats import rank_correlations
from ghostsearch.train.loop import pick_device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch table", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="ghostnet")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (eager only)")
    p.add_argument("--runtime", choices=["eager", "onnxruntime"], default="eager",
                   help="what runs the network: eager PyTorch (default) or onnxruntime")
    p.add_argument("--int8", action="store_true",
                   help="onnxruntime with int8 static quantisation")
    p.add_argument("--budgets", default=None, metavar="LO:HI,...",
                   help="draw held-out networks evenly within these MFLOPs bands, e.g. "
                        "40:60,130:150,200:230 (default: uniformly from the space)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--archs", type=int, default=20,
                   help="networks measured end to end for the correction (default 20)")
    p.add_argument("--kernels", choices=["in-context", "alone"], default=None,
                   help="onnxruntime: time kernels inside profiled whole networks "
                        "(in-context, the float32 default) or each as its own graph (alone, "
                        "the int8 default and only choice)")
    p.add_argument("--kernel-archs", type=int, default=None,
                   help="--kernels alone: networks whose ops are timed one by one (default: "
                        "--archs); ops are cheap to time, so more of them leave less to the "
                        "regressions")
    p.add_argument("--eval", type=int, default=50, help="held-out networks to test (default 50)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per end-to-end measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="table file (default results/latency/<space>-<runtime>-<threads>t.json "
                        "or <space>-cuda.json)")
    return p.parse_args(argv)


def evaluate(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    p, m = pd.Series(predicted), pd.Series(measured)
    err = (p - m) / m
    return {"within_10pct": float((err.abs() <= 0.10).mean()),
            "within_5pct": float((err.abs() <= 0.05).mean()),
            "mape_pct": float(err.abs().mean() * 100), "bias_pct": float(err.mean() * 100),
            **rank_correlations(p, m)}


def parse_budgets(text: str | None) -> list[tuple[float, float]]:
    if text is None:
        return []
    try:
        bands = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        bands = [()]
    if not bands or any(len(b) != 2 or not 0 < b[0] < b[1] for b in bands):
        raise ConfigError(f"--budgets {text!r}: give LO:HI MFLOPs bands with 0 < LO < HI, "
                          "comma-separated, e.g. 40:60,130:150")
    return bands  # type: ignore[return-value]


def held_out_networks(space, n: int, seed: int, bands: list[tuple[float, float]],
                      exclude: Sequence = ()) -> list:
    """`n` networks, none in `exclude`: uniformly from the space, or evenly split among FLOPs
    bands (each drawn uniformly within its band)."""
    if not bands:
        rng = random.Random(seed)
        configs: list = []
        while len(configs) < n:
            cfg = space.build_config(space.random_params(rng))
            if cfg not in exclude:
                configs.append(cfg)
        return configs
    configs = []
    for i, (lo, hi) in enumerate(bands):
        share = n // len(bands) + (i < n % len(bands))
        draws = sample_band(space, share, seed + 1000 * (i + 1), low_flops=int(lo * 1e6),
                            high_flops=int(hi * 1e6), exclude=exclude)
        configs += [space.build_config(p) for p in draws.points]
    return configs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {args.device}: latency tables are built on cpu or cuda")
    runtime = "eager" if args.runtime == "eager" else (
        "onnxruntime-int8" if args.int8 else "onnxruntime")
    if args.int8 and args.runtime != "onnxruntime":
        raise ConfigError("--int8 quantises for onnxruntime: add --runtime onnxruntime")
    if args.kernels is not None and args.runtime != "onnxruntime":
        raise ConfigError("--kernels chooses how onnxruntime kernels are timed: add --runtime "
                          "onnxruntime")
    if args.kernels == "in-context" and args.int8:
        raise ConfigError("--kernels in-context is for float32: an int8 graph's quantise nodes "
                          "are not attributed to kernels; drop --kernels or use alone")
    method = "in-context" if runtime == "onnxruntime" and args.kernels != "alone" else "alone"
    if method == "in-context" and args.kernel_archs is not None:
        raise ConfigError("--kernel-archs times kernels alone: in context, the kernels are "
                          "those of the --archs profiled networks; drop it or add --kernels "
                          "alone")
    if runtime != "eager":
        require_deploy()
        if device.type != "cpu":
            raise ConfigError(f"--device {args.device}: onnxruntime tables are CPU tables; "
                              "drop --device or use --runtime eager")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # ops and networks are measured on the current GPU
    threads = args.threads if device.type == "cpu" else None
    if args.archs < 3 or args.eval < 2 or (args.kernel_archs is not None
                                           and args.kernel_archs < 3):
        raise ConfigError("--archs and --kernel-archs must be >= 3 and --eval >= 2")
    bands = parse_budgets(args.budgets)
    space = load_space(args.space)
    rng = random.Random(args.seed)
    refs = [space.build_config(space.reference_params(w)) for w in (0.5, 1.0, 1.3)
            if w in space.width]
    n_kernel = args.kernel_archs if args.kernel_archs is not None else args.archs
    calib = refs + [space.build_config(space.random_params(rng))
                    for _ in range(max(0, n_kernel - len(refs)))]
    table = LatencyTable(device=device_name(device), torch=torch.__version__, threads=threads,
                         resolution=space.deployment.resolution, runtime=runtime,
                         method=method)

    def e2e(cfg):  # the least disturbed of three blocks of runs
        return table.measure(cfg, runs=args.runs, warmup=3, repeats=3)[0]

    if bands:  # the correction serves candidates in these bands: fit it on such networks
        correction = held_out_networks(space, args.archs, args.seed + 7, bands)
    else:
        correction = [space.build_config(space.random_params(rng)) for _ in range(args.archs)]
    if method == "in-context":  # the profiled networks are the correction's: refs + --archs
        calib = refs + [cfg for cfg in correction if cfg not in refs]
        correction = calib
    held_out = held_out_networks(space, args.eval, args.seed + 1, bands,
                                 exclude=set(correction) | set(calib))
    if runtime != "eager":  # exports take seconds each: all of them first, then the timings
        for cfg in tqdm(correction + held_out, desc="exporting networks to ONNX"):
            onnxrt.network_onnx(cfg, int8=runtime == "onnxruntime-int8")
    if method == "in-context":
        unmatched = sum(table.add_network_in_context(cfg, runs=args.runs)
                        for cfg in tqdm(calib, desc="networks profiled kernel by kernel"))
        if unmatched:
            print(f"{unmatched} kernel(s) of the profiled networks matched no runtime node "
                  "(left to the regressions)")
    else:
        for cfg in tqdm(calib, desc="networks measured op by op"):
            table.add_network(cfg)
    pairs = [(cfg, e2e(cfg)) for cfg in tqdm(correction, desc="networks for the correction")]
    table.fit(calib, pairs)
    rows = []
    for cfg in tqdm(held_out, desc="held-out networks"):
        rows.append({"mflops": analytic_counts(cfg).flops / 1e6,
                     "sum_of_ops_ms": table.raw_ms(cfg), "predicted_ms": table.predict(cfg),
                     "measured_ms": e2e(cfg)})
    df = pd.DataFrame(rows)
    raw, pred, meas = (df[c].to_numpy()
                       for c in ("sum_of_ops_ms", "predicted_ms", "measured_ms"))
    result = {"space": space.name, "device": table.device, "runtime": runtime,
              "threads": threads, "torch": table.torch, "kernels": method,
              "entries": len(table.entries),
              "correction": table.correction, "networks_measured_by_op": len(calib),
              "networks_for_correction": len(correction),
              "correction_bands_mflops": bands or None,
              "held_out_networks": len(held_out), "held_out_bands_mflops": bands or None,
              "sum_of_ops": evaluate(raw, meas), "corrected": evaluate(pred, meas),
              "measured_ms_range": [float(meas.min()), float(meas.max())],
              "held_out": df.round(4).to_dict(orient="records")}
    tag = {"eager": f"cpu-{threads}t", "onnxruntime": f"ort-{threads}t",
           "onnxruntime-int8": f"ort-int8-{threads}t"}[runtime] if device.type == "cpu" else "cuda"
    out = Path(args.out or Path("results") / "latency" / f"{space.name}-{tag}.json")
    table.save(out)
    write_atomic(out.with_name(out.stem + "-eval.json"), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "held_out"}, indent=2))
    print(f"table: {out}")
    return 0
