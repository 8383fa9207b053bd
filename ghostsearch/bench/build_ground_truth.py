"""Build (or resume) a ground-truth table for a search space: N architectures sampled uniformly
within a budget plus the reference GhostNets (0.5x, 1.0x, the widest within the budget), each
trained with one long protocol (10,000 images x 12 epochs) and tested on the full test set;
some trained with a second seed to state the noise floor. One CSV row per (architecture,
seed), written as it finishes; rerun the same command to resume.

    python scripts/build_ground_truth.py --data imagefolder --data-dir /path/to/cifar10 \\
        --out results/ground_truth

With `--retrain-top K`, once the table is complete the references and the K best sampled
architectures (by seed-0 validation accuracy) are trained again up to `--retrain-seeds`
seeds: how much of a one-seed lead over GhostNet survives more seeds.

With `--band LO:HI:N[:K]` (repeatable), the table is extended with architectures sampled
uniformly within [LO, HI] MFLOPs until that band holds N sampled ones, K of the new ones with a
second seed, plus the widest reference GhostNet within HI (three seeds): a ground truth of the
band where a search at that budget makes its choice.

Reference runs are shared through the reference bank (reference_bank.csv beside --out): a
reference unit whose run the bank holds for this protocol and data is written from it (its
total_seconds 0), and a reference trained here is added to it for `ghostsearch confirm`.

    python scripts/build_ground_truth.py --data imagefolder --data-dir /path/to/cifar10 \\
        --out results/ground_truth --band 170:200:30:6 --band 85:100:12:3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ghostsearch import ConfigError, parse_budget
from ghostsearch.bank import Bank
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance
from ghostsearch.search.study import baseline_widths
from ghostsearch.spaces.limits import Limits
from ghostsearch.spaces.space import load_space
from ghostsearch.train.data import DATASETS, load_data
from ghostsearch.train.recipe import GROUND_TRUTH_DATA, Recipe, load_recipe

from .ground_truth import (
    Band,
    BankUse,
    Unit,
    against_reference,
    done_units,
    extend_plan,
    machine,
    plan,
    read_plan,
    read_rows,
    retrain_units,
    run_units,
    write_plan,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=DATASETS, default="imagefolder")
    p.add_argument("--data-dir", required=True, help="the data set (train/ and test/ folders)")
    p.add_argument("--out", default="results/ground_truth", help="table folder")
    p.add_argument("--space", default="ghostnet")
    p.add_argument("--budget", default="200MFLOPs")
    p.add_argument("--archs", type=int, default=40, help="sampled architectures (default 40)")
    p.add_argument("--second-seed", type=int, default=6,
                   help="architectures also trained with seed 1: the references and the first "
                        "sampled ones (default 6)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--recipe", default="ground-truth", metavar="NAME|FILE",
                   help="the training recipe of every unit: a named one or a YAML/JSON file "
                        "(default: ground-truth, 12 epochs on 10,000 images)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--train-subset", type=int, default=None,
                   help="override the recipe's training images")
    p.add_argument("--val-size", type=int, default=GROUND_TRUTH_DATA["val_size"])
    p.add_argument("--retrain-top", type=int, default=0,
                   help="after the table: retrain the references and this many best sampled "
                        "architectures with more seeds (default 0: none)")
    p.add_argument("--retrain-seeds", type=int, default=3,
                   help="seeds of each retrained architecture, seed 0 included (default 3)")
    p.add_argument("--band", action="append", default=[], metavar="LO:HI:N[:K]",
                   help="extend the table with architectures sampled uniformly within [LO, HI] "
                        "MFLOPs until the band holds N, K of the new ones with a second seed, "
                        "plus the widest reference within HI (repeatable)")
    p.add_argument("--bank", default=None, metavar="CSV",
                   help="reference bank: reference runs it holds for this protocol and data are "
                        "taken from it, references trained here are added (default: "
                        "reference_bank.csv beside --out)")
    p.add_argument("--no-bank", action="store_true", help="leave the reference bank alone")
    p.add_argument("--plan-only", action="store_true", help="write the configs, train nothing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = parse_budget(args.budget)
    space = load_space(args.space)
    if args.archs < 1 or args.workers < 1 or args.threads < 1:
        raise ConfigError("--archs, --workers and --threads must be >= 1")
    if args.retrain_top < 0 or args.retrain_seeds < 1:
        raise ConfigError("--retrain-top must be >= 0 and --retrain-seeds >= 1")
    protocol = load_recipe(args.recipe)
    if args.epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=args.epochs)
    if args.train_subset is None:
        args.train_subset = protocol.train_images
    data_kwargs = {"name": args.data, "data_dir": args.data_dir, "val_size": args.val_size,
                   "train_subset": args.train_subset, "seed": GROUND_TRUTH_DATA["split_seed"]}
    identity = {"budget_flops": budget, "protocol": protocol.identity(),
                "data": {k: v for k, v in data_kwargs.items() if k != "data_dir"}}
    out = Path(args.out)
    if (out / "protocol.json").exists():
        meta = read_plan(out)
        if meta.get("space_sha256") != space.fingerprint():
            raise ConfigError(f"{out}: a table of another space ({meta.get('space')}); pass "
                              "a new --out")
        changed = sorted(k for k in identity if meta.get(k) != identity[k])
        if changed:
            raise ConfigError(f"{out}: built with other {', '.join(changed)}; rerun with its "
                              "original options or pass a new --out")
        units = [Unit(**u) for u in meta["units"]]
    else:
        widths = [w for _, w in baseline_widths(space, Limits(budget, band=0))]
        archs = plan(space, budget, args.archs, widths, second_seed=1)
        ids = [a["arch_id"] for a in archs]
        units = [Unit(i, 0) for i in ids] + [Unit(i, 1) for i in ids[:args.second_seed]]
        write_plan(out, space, archs, units, {
            **identity, "recipe": protocol.to_dict(),
            "images_seen": protocol.epochs * (args.train_subset or 0) or None,
            "test": "the full test split", "threads_per_worker": args.threads,
            "workers": args.workers, "machine": machine(), "provenance": provenance(args)})
    bands = [Band.parse(b) for b in args.band]
    if bands:
        added = extend_plan(out, space, bands)
        if added:
            print(f"{out}: {len(added)} architectures added for the bands "
                  + ", ".join(f"[{b.low:g}, {b.high:g}] MFLOPs" for b in bands), flush=True)
        units = [Unit(**u) for u in read_plan(out)["units"]]
    done = done_units(out / "runs.csv")
    if args.retrain_top and set(units) <= done:
        units = _with_retrain_units(out, units, args)
    print(f"{out}: {len(units)} units, {len(done & set(units))} done; protocol "
          f"{protocol.epochs} epochs x {args.train_subset} images, batch {protocol.batch_size}; "
          f"{args.workers} workers x {args.threads} thread(s) on {machine()}", flush=True)
    if args.plan_only:
        return 0
    start = time.time()
    bank = None if args.no_bank else _bank_use(out, units, done, protocol, data_kwargs, args)
    n = _run(out, units, protocol, data_kwargs, args, len(done & set(units)), start, bank)
    if args.retrain_top:
        units = _with_retrain_units(out, units, args)
        bank = None if args.no_bank else _bank_use(out, units, done_units(out / "runs.csv"),
                                                   protocol, data_kwargs, args)
        _run(out, units, protocol, data_kwargs, args, n, start, bank)
        rows = read_rows(out / "runs.csv")
        retrained = list(dict.fromkeys(u.arch_id for u in units if u.seed > 0))
        widest = [a for a in retrained if a.startswith("ref-")][-1:]  # plan order: widest last
        for r in against_reference(rows, retrained, widest[0]) if widest else []:
            print(f"{r['name']}: test " + " / ".join(f"{x:.2f}" for x in r["test_acc"])
                  + ("" if r["arch_id"] == widest[0] else f"; {r['verdict']}"), flush=True)
    return 0


def _with_retrain_units(out: Path, units: list[Unit], args: argparse.Namespace) -> list[Unit]:
    """The plan's units plus the retraining ones (chosen from the finished table), recorded in
    protocol.json so that a rerun resumes them."""
    extra = [u for u in retrain_units(read_rows(out / "runs.csv"), args.retrain_top,
                                      args.retrain_seeds) if u not in units]
    if extra:
        units = units + extra
        meta = read_plan(out)
        meta["units"] = [dataclasses.asdict(u) for u in units]
        (out / "protocol.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"retraining the references and the {args.retrain_top} best sampled "
              f"architectures with {args.retrain_seeds} seeds: {len(extra)} new units: "
              + ", ".join(f"{u.arch_id}/{u.seed}" for u in extra), flush=True)
    return units


def _bank_use(out: Path, units: list[Unit], done: set[Unit], protocol: Recipe,
              data_kwargs: dict[str, Any], args: argparse.Namespace) -> BankUse | None:
    """The bank's keys of the references still to train (the data is loaded here to key them
    by content), or None when no reference is left."""
    refs = sorted({u.arch_id for u in units if u not in done and u.arch_id.startswith("ref-")})
    if not refs:
        return None
    bank = Bank(Path(args.bank)) if args.bank else Bank.beside(out)
    use = BankUse.make(bank, out, refs, protocol, load_data(**data_kwargs, progress=False))
    held = sum(u.arch_id in use.keys and u.seed in bank.runs(use.keys[u.arch_id])
               for u in units if u not in done)
    print(f"reference bank {bank.path}: {held} of the references' units left are in it",
          flush=True)
    return use


def _run(out: Path, units: list[Unit], protocol: Recipe, data_kwargs: dict[str, Any],
         args: argparse.Namespace, n: int, start: float, bank: BankUse | None = None) -> int:
    """Train the units not yet in the table (a reference run the bank holds is taken from it),
    printing one JSON line per finished unit."""
    for row in run_units(out, units, protocol, data_kwargs, args.workers, args.threads,
                         bank=bank):
        n += 1
        print(json.dumps({"done": f"{n}/{len(units)}", "arch": row["arch_id"],
                          "seed": row["seed"], "MFLOPs": row["mflops"],
                          "test": row["test_acc"], "s": row["total_seconds"],
                          "elapsed_min": round((time.time() - start) / 60, 1)}), flush=True)
    return n
