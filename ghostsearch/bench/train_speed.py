"""Training speed on this CPU: images per second of a training step, side by side.

    python scripts/train_speed.py --out results/bench/train-speed.csv
    python scripts/train_speed.py --modes eager,bf16,compile --batches 128 --threads 1 \\
        --out results/bench/train-speed.csv

Training is the whole cost of every verdict, so each way of running a step is measured on the
same networks at 32 px with a stride-1 stem (the proxy form confirmations train): GhostNet 1.0x
and a found architecture (default: results/cpu-shallow-100M/best_arch.json). Modes: `eager`
(float32, channels_last, what the trainer does), `bf16` (bfloat16 autocast), `compile`
(`torch.compile` of the whole step, inductor; its compilation is timed apart). Layouts: one
process with 1 or 2 threads, and `2x1`, two one-thread processes at once (their images per
second summed: what two confirmation workers do). Every configuration runs in a fresh process;
the rounds interleave the configurations, so a slow spell of the machine spreads over all of
them. One row per measurement is appended to --out as it finishes (a rerun skips the done
ones). Also measured: a float32 matmul (2048 x 2048) peak of the same cores, and each step's
achieved GFLOP/s (3 x the forward multiply-adds x 2, per image).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("round", "arch", "mode", "batch", "layout", "images_per_s", "gflops_per_s",
           "warmup_s", "forward_mflops", "torch", "cpu")
MODES = ("eager", "bf16", "compile")
LAYOUTS = ("1", "2", "2x1")
CHILD = "ghostsearch.bench.train_speed"  # run with -m: one measurement in a fresh process


def _arch_config(arch: str) -> Any:
    from ghostsearch import load_config
    from ghostsearch.arch.reference import reference_config

    if arch.startswith("ghostnet_") and arch.endswith("x"):
        return reference_config(float(arch[len("ghostnet_"):-1]))
    return load_config(arch)


def measure_step(arch: str, mode: str, batch: int, threads: int, steps: int) -> dict[str, Any]:
    """Images per second of `steps` training steps after 3 untimed ones (one process)."""
    import torch
    import torch.nn.functional as F

    from ghostsearch.arch.counting import analytic_counts
    from ghostsearch.arch.model import build_model

    torch.set_num_threads(threads)
    cfg = dataclasses.replace(_arch_config(arch), num_classes=10, resolution=32, stem_stride=1)
    torch.manual_seed(0)
    model = build_model(cfg).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    amp = mode == "bf16"

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    run = torch.compile(step) if mode == "compile" else step
    t0 = time.perf_counter()
    for _ in range(3):
        run()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    ips = steps * batch / (time.perf_counter() - t0)
    mflops = 2 * analytic_counts(cfg).flops / 1e6  # multiply-adds x 2
    return {"images_per_s": ips, "gflops_per_s": ips * 3 * mflops / 1e3, "warmup_s": warm,
            "forward_mflops": mflops}


def matmul_peak(threads: int, n: int = 2048, reps: int = 20) -> float:
    """GFLOP/s of a float32 n x n matmul on `threads` threads (best of `reps`)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def _child(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", CHILD, "--child", *argv], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_layout(arch: str, mode: str, batch: int, layout: str, steps: int) -> dict[str, Any]:
    """One measurement in fresh processes: 1 or 2 threads, or two one-thread processes at
    once (images per second summed, GFLOP/s summed, warm-up the slower one's)."""
    args = [arch, mode, str(batch), "1" if layout == "2x1" else layout, str(steps)]
    if layout != "2x1":
        return _child(args)
    procs = [subprocess.Popen([sys.executable, "-m", CHILD, "--child", *args],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"images_per_s": sum(r["images_per_s"] for r in rows),
            "gflops_per_s": sum(r["gflops_per_s"] for r in rows),
            "warmup_s": max(r["warmup_s"] for r in rows),
            "forward_mflops": rows[0]["forward_mflops"]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from ghostsearch.cli.common import ArgumentParser

    p = ArgumentParser(prog="train_speed", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="ghostnet_1.0x,results/cpu-shallow-100M/best_arch.json",
                   help="comma-separated: ghostnet_<width>x or a config / best_arch.json file")
    p.add_argument("--modes", default="eager,bf16", help=f"comma-separated of {MODES}")
    p.add_argument("--batches", default="128,256", help="comma-separated batch sizes")
    p.add_argument("--layouts", default="1,2,2x1", help=f"comma-separated of {LAYOUTS}")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--steps", type=int, default=12, help="timed steps (default 12)")
    p.add_argument("--out", required=True, help="CSV, appended one row per measurement")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from ghostsearch.errors import ConfigError

    args = parse_args(argv)
    archs = args.archs.split(",")
    modes, layouts = args.modes.split(","), args.layouts.split(",")
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"--modes {m!r}: choose from {', '.join(MODES)}")
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ConfigError(f"--layouts {layout!r}: choose from {', '.join(LAYOUTS)}")
    for a in archs:
        if not a.startswith("ghostnet_") and not Path(a).is_file():
            raise ConfigError(f"--archs {a}: no such file (or ghostnet_<width>x)")
    batches = [int(b) for b in args.batches.split(",")]
    import platform

    import torch

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        with open(out) as f:
            done = {(r["round"], r["arch"], r["mode"], r["batch"], r["layout"])
                    for r in csv.DictReader(f)}
    new = not out.exists()
    cpu = platform.processor() or platform.machine()
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        for rnd in range(args.rounds):
            for layout in ("1", "2"):
                key = (str(rnd), "matmul", "fp32", "2048", layout)
                if "matmul" in args.archs or key in done or layout not in layouts:
                    continue
                peak = _child(["matmul", "fp32", "2048", layout, "0"])["gflops_per_s"]
                w.writerow({"round": rnd, "arch": "matmul", "mode": "fp32", "batch": 2048,
                            "layout": layout, "gflops_per_s": round(peak, 1),
                            "torch": torch.__version__, "cpu": cpu})
                f.flush()
                print(f"round {rnd}: matmul fp32, {layout} thread(s): {peak:.1f} GFLOP/s",
                      flush=True)
            for arch in archs:
                for mode in modes:
                    for batch in batches:
                        for layout in layouts:
                            key = (str(rnd), arch, mode, str(batch), layout)
                            if key in done:
                                continue
                            r = run_layout(arch, mode, batch, layout, args.steps)
                            w.writerow({"round": rnd, "arch": arch, "mode": mode,
                                        "batch": batch, "layout": layout,
                                        **{k: round(v, 2) for k, v in r.items()},
                                        "torch": torch.__version__, "cpu": cpu})
                            f.flush()
                            print(f"round {rnd}: {arch} {mode} batch {batch} layout {layout}: "
                                  f"{r['images_per_s']:.0f} img/s, "
                                  f"{r['gflops_per_s']:.1f} GFLOP/s", flush=True)
    summarise(out)
    return 0


def summarise(path: Path) -> None:
    """Median images per second of each configuration over its rounds."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r["arch"] == "matmul":
            continue
        groups.setdefault((r["arch"], r["mode"], r["batch"], r["layout"]), []).append(
            float(r["images_per_s"]))
    for k, v in sorted(groups.items()):
        print(f"{Path(k[0]).parent.name or k[0]:>18} {k[1]:>7} batch {k[2]:>4} layout "
              f"{k[3]:>3}: {statistics.median(v):7.0f} img/s over {len(v)} round(s)")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--child":
    arch, mode, batch, threads, steps = sys.argv[2:7]
    if arch == "matmul":
        print(json.dumps({"gflops_per_s": matmul_peak(int(threads))}))
    else:
        print(json.dumps(measure_step(arch, mode, int(batch), int(threads), int(steps))))
