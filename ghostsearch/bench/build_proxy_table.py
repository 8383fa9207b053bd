"""Short proxy trainings of every architecture of a ground-truth table, for ranking fidelity and
search simulations: each architecture trained with each short protocol (by default 1, 2 and 4
epochs on 2,000 and 5,000 images, batch 64), validated on the table's own held-out split.
One row per (architecture, variant) in `proxies.csv` beside the table, written as each
finishes; rerun the same command to resume.

    python scripts/build_proxy_table.py --ground-truth results/ground_truth \\
        --data imagefolder --data-dir /path/to/cifar10
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ghostsearch import ConfigError, load_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.search.proxy import proxy_config
from ghostsearch.train.data import DATASETS
from ghostsearch.train.loop import train_proxy
from ghostsearch.train.recipe import GROUND_TRUTH_DATA, Recipe

from .ground_truth import append_row, machine, read_plan
from .pool import worker_pool

DEFAULT_VARIANTS = "1x2000,2x2000,4x2000,1x5000,2x5000,4x5000"
COLUMNS = ("arch_id", "variant", "epochs", "images", "batch_size", "seed", "val_acc",
           "val_curve", "train_seconds", "cpu_seconds", "threads", "finished_at")


@dataclasses.dataclass(frozen=True)
class Variant:
    epochs: int
    images: int

    @property
    def name(self) -> str:
        return f"{self.epochs}x{self.images}"


def parse_variants(text: str, max_images: int) -> list[Variant]:
    """`1x2000,2x5000` -> variants; one line naming the bad entry otherwise."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            e, n = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--variants {item!r}: expected EPOCHSxIMAGES, like 2x5000") from None
        if e < 1 or not 1 <= n <= max_images:
            raise ConfigError(f"--variants {item!r}: epochs >= 1 and images between 1 and "
                              f"{max_images} (the table's training subset)")
        out.append(Variant(e, n))
    if not out:
        raise ConfigError("--variants: give at least one, like 2x5000")
    return out


def select_archs(archs: Sequence[str], text: str) -> list[str]:
    """The table's architectures that `text` (ids or shell patterns, comma-separated) names, in
    table order: a second seed for a few architectures measures a proxy's noise at a fraction
    of the cost of a second seed everywhere."""
    patterns = [t.strip() for t in text.split(",") if t.strip()]
    out = [a for a in archs if any(fnmatch.fnmatchcase(a, p) for p in patterns)]
    if not out:
        raise ConfigError(f"--archs {text!r} matches no architecture of the table; its ids look "
                          f"like {', '.join(archs[:3])}")
    return out


def done(path: Path) -> set[tuple[str, str, int]]:
    if not path.exists():
        return set()
    with path.open() as f:
        return {(r["arch_id"], r["variant"], int(r["seed"])) for r in csv.DictReader(f)}


_data = None


def _init(threads: int, data_kwargs: dict[str, Any]) -> None:
    import torch

    from ghostsearch.train.data import load_data

    global _data
    torch.set_num_threads(threads)
    _data = load_data(**data_kwargs, progress=False)


def train_variant(table: str, arch_id: str, epochs: int, images: int, batch_size: int,
                  seed: int) -> dict[str, Any]:
    """One short proxy on the first `images` training images of the table's subset."""
    import torch

    from ghostsearch.train.data import Split

    assert _data is not None
    data = dataclasses.replace(_data, train=Split(_data.train.images[:images],
                                                  _data.train.labels[:images]))
    proto = Recipe(epochs=epochs, batch_size=batch_size)
    cfg = proxy_config(load_config(Path(table) / "configs" / f"{arch_id}.json"), data, proto)
    cpu0 = time.process_time()
    result = train_proxy(cfg, data, proto, seed=seed, device="cpu", evaluate_test=False)
    return {"arch_id": arch_id, "variant": f"{epochs}x{images}", "epochs": epochs,
            "images": images, "batch_size": batch_size, "seed": seed,
            "val_acc": result.val_acc, "val_curve": json.dumps(result.val_curve),
            "train_seconds": round(result.train_seconds, 2),
            "cpu_seconds": round(time.process_time() - cpu0, 2),
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ground-truth", required=True, help="the ground-truth table folder")
    p.add_argument("--data", choices=DATASETS, default="imagefolder")
    p.add_argument("--data-dir", required=True, help="the data set the table was built on")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"EPOCHSxIMAGES, comma-separated (default {DEFAULT_VARIANTS})")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", default="0",
                   help="comma-separated training seeds; a second seed measures the proxy's "
                        "own run-to-run noise (default: 0)")
    p.add_argument("--archs", default="*",
                   help="comma-separated architecture ids or patterns, like 'b170-200-*,ref-*' "
                        "(default: every architecture of the table)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from concurrent.futures import FIRST_COMPLETED, wait

    args = parse_args(argv)
    table = Path(args.ground_truth)
    meta = read_plan(table)
    if args.workers < 1 or args.threads < 1 or args.batch_size < 1:
        raise ConfigError("--workers, --threads and --batch-size must be >= 1")
    variants = parse_variants(args.variants, meta["data"]["train_subset"])
    out = table / "proxies.csv"
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: comma-separated integers, like 0,1") from None
    archs = select_archs(meta["archs"], args.archs)
    have = done(out)
    todo = [(a, v, s) for s in seeds for v in variants for a in archs
            if (a, v.name, s) not in have]
    print(f"{out}: {len(archs) * len(variants) * len(seeds)} runs, {len(todo)} to do; "
          f"seeds {args.seeds}, variants "
          f"{', '.join(v.name for v in variants)}, batch {args.batch_size}; {args.workers} "
          f"workers x {args.threads} thread(s) on {machine()}", flush=True)
    if not todo:
        return 0
    data_kwargs = {"name": args.data, "data_dir": args.data_dir,
                   "val_size": meta["data"]["val_size"],
                   "train_subset": meta["data"]["train_subset"],
                   "seed": GROUND_TRUTH_DATA["split_seed"]}
    start, n = time.time(), 0
    with worker_pool(args.workers, _init, (args.threads, data_kwargs)) as pool:
        queue, running = list(todo), set()
        while queue or running:
            while queue and len(running) < args.workers:
                a, v, seed = queue.pop(0)
                running.add(pool.submit(train_variant, str(table), a, v.epochs, v.images,
                                        args.batch_size, seed))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                row = fut.result()
                append_row(out, row, COLUMNS)
                n += 1
                print(json.dumps({"done": f"{n}/{len(todo)}", "arch": row["arch_id"],
                                  "variant": row["variant"], "seed": row["seed"],
                                  "val": row["val_acc"],
                                  "cpu_s": row["cpu_seconds"],
                                  "elapsed_min": round((time.time() - start) / 60, 1)}),
                      flush=True)
    return 0
