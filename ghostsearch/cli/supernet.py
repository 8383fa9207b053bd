"""Train a weight-sharing supernet of a GhostNet space, rank candidates with its inherited
weights, or export one of its sub-networks as an ordinary model.

    ghostsearch supernet train --space ghostnet --data imagefolder --data-dir /path/to/cifar10 \\
        --train-subset 10000 --val-size 2000 --band 170:200 --epochs 12 --out runs/supernet
    ghostsearch supernet rank --supernet runs/supernet --data imagefolder \\
        --data-dir /path/to/cifar10 --train-subset 10000 --val-size 2000 --band 170:200 \\
        --candidates 1000 --out runs/supernet/ranked.csv
    ghostsearch supernet export --supernet runs/supernet --params '{"width": 1.2, ...}' \\
        --out sub.json

train: every step trains the largest sub-network on the labels, then the smallest and
--random-subnets drawn uniformly from the --band (deployment MFLOPs) on the largest one's
softened outputs (sandwich rule, in-place distillation); a checkpoint after every epoch, and
the same command resumes it. rank: each candidate's sub-network is extracted, its BatchNorm
statistics re-estimated on --calibration training images, and its accuracy measured on the
held-out validation split; a CSV, best first. export: the sub-network's deployment config
(JSON, as every export) and its inherited weights for the training task (a timm-format
state_dict beside it), for `ghostsearch train --config ... --init ...` to fine-tune.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from ghostsearch.arch.config import save_config
from ghostsearch.cli.common import ArgumentParser, add_data_args, load_data_args
from ghostsearch.errors import ConfigError
from ghostsearch.spaces.space import load_space
from ghostsearch.supernet.rank import CALIBRATION_IMAGES, search_subnets
from ghostsearch.supernet.train import Plan, load_supernet, train_supernet
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import GROUND_TRUTH_PROTOCOL


def band(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--band {text!r}: expected LO:HI in deployment MFLOPs, e.g. "
                          "170:200") from None
    if not 0 <= low < high:
        raise ConfigError(f"--band {text}: needs 0 <= LO < HI")
    return low, high


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch supernet", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    t = sub.add_parser("train", help="train (or resume) a supernet")
    t.add_argument("--space", default="ghostnet", help="a shipped space or a YAML file")
    add_data_args(t)
    t.add_argument("--band", default=None, metavar="LO:HI",
                   help="deployment MFLOPs the random sub-networks are drawn from (default: "
                        "the whole space)")
    t.add_argument("--random-subnets", type=int, default=2,
                   help="random sub-networks a step beside the largest and smallest (default 2)")
    t.add_argument("--no-distill", action="store_true",
                   help="train every sub-network on the labels instead of the largest's outputs")
    t.add_argument("--epochs", type=int, default=GROUND_TRUTH_PROTOCOL.epochs)
    t.add_argument("--batch-size", type=int, default=GROUND_TRUTH_PROTOCOL.batch_size)
    t.add_argument("--lr", type=float, default=GROUND_TRUTH_PROTOCOL.lr,
                   help="peak SGD lr at batch 512, scaled with the batch (default 0.4)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--out", required=True, help="folder of the checkpoint (supernet.pt)")
    r = sub.add_parser("rank", help="rank in-band candidates with inherited weights")
    r.add_argument("--supernet", required=True, help="its folder or supernet.pt")
    add_data_args(r)
    r.add_argument("--band", default=None, metavar="LO:HI",
                   help="deployment MFLOPs of the candidates (default: the supernet's band)")
    r.add_argument("--candidates", type=int, default=200,
                   help="distinct candidates drawn uniformly from the band (default 200)")
    r.add_argument("--sampler", choices=("random", "tpe"), default="random",
                   help="random: distinct uniform draws from the band; tpe: Optuna's TPE "
                        "restricted to the band, steered by the accuracies it has seen (over 80 "
                        "candidates its proposals scored 0.7 points higher on average, its best "
                        "0.5, one seed: docs/supernet.md) (default: random)")
    r.add_argument("--calibration", type=int, default=CALIBRATION_IMAGES,
                   help=f"training images for BatchNorm (default {CALIBRATION_IMAGES})")
    r.add_argument("--val-images", type=int, default=None,
                   help="evaluate on the first N held-out images: cheaper, noisier (default all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto")
    r.add_argument("--out", required=True, help="the CSV to write")
    e = sub.add_parser("export", help="a sub-network's config and inherited weights")
    e.add_argument("--supernet", required=True, help="its folder or supernet.pt")
    e.add_argument("--params", required=True,
                   help="the point of the space: JSON, or a file holding it (an exported "
                        "architecture's `space_params` metadata works)")
    e.add_argument("--out", required=True, help="config JSON; the weights go beside it (.pth)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return {"train": _train, "rank": _rank, "export": _export}[args.command](args)


def _train(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    recipe = dataclasses.replace(GROUND_TRUTH_PROTOCOL, epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr)
    plan = Plan(recipe, band(args.band), args.random_subnets, not args.no_distill, args.seed)
    data = load_data_args(args)
    print(f"supernet of {space.name!r}: largest, smallest and {plan.random_subnets} random "
          f"sub-networks a step"
          + (f" from [{plan.band_mflops[0]:g}, {plan.band_mflops[1]:g}] MFLOPs"
             if plan.band_mflops else "") + f", {recipe.epochs} epochs", flush=True)
    record = train_supernet(space, data, plan, args.out, device=pick_device(args.device),
                            log=lambda m: print(m, flush=True))
    print(f"trained in {record['train_seconds'] / 3600:.2f} h; checkpoint: "
          f"{Path(args.out) / 'supernet.pt'}")
    return 0


def _rank(args: argparse.Namespace) -> int:
    import pandas as pd

    sn, state = load_supernet(args.supernet, pick_device(args.device))
    plan = Plan.from_dict(state["plan"])
    lo_hi = band(args.band) or plan.band_mflops
    for flag, value in (("--candidates", args.candidates), ("--calibration", args.calibration),
                        ("--val-images", args.val_images)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    data = load_data_args(args)
    if (data.num_classes, data.resolution) != (sn.task.num_classes, sn.task.resolution):
        raise ConfigError(f"this data has {data.num_classes} classes at {data.resolution} px; "
                          f"the supernet was trained for {sn.task.num_classes} at "
                          f"{sn.task.resolution} px: pass the data it was trained on")
    low, high = ((int(lo_hi[0] * 1e6), int(lo_hi[1] * 1e6)) if lo_hi else (None, None))
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        if len(rows) % 25 == 0 or len(rows) == args.candidates:
            print(f"{len(rows)}/{args.candidates} ranked, "
                  f"{sum(r['cpu_s'] for r in rows) / len(rows):.2f} CPU-s a candidate",
                  flush=True)

    search_subnets(sn, data, args.candidates, low_flops=low, high_flops=high,
                   sampler=args.sampler, seed=args.seed, calibration=args.calibration,
                   val_images=args.val_images, on_row=report)
    table = [{"rank": 0, **{k: v for k, v in r.items() if k != "params"},
              "params": json.dumps(r["params"])} for r in rows]
    frame = pd.DataFrame(table).sort_values("supernet_val_acc", ascending=False)
    frame["rank"] = range(1, len(frame) + 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.head(10).drop(columns="params").to_string(index=False))
    print(f"wrote {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    text = args.params
    if not text.lstrip().startswith("{") and Path(text).is_file():
        loaded = json.loads(Path(text).read_text())
        text = json.dumps(loaded.get("metadata", {}).get("space_params", loaded))
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError("--params: not JSON nor a JSON file") from None
    sn, _ = load_supernet(args.supernet)
    if not sn.space.contains(params):
        raise ConfigError(f"--params: not a point of space {sn.space.name!r}")
    model = sn.extract(params)
    out = Path(args.out)
    # the deployment config, as every export; `ghostsearch train` turns it into the proxy form
    # these weights fit
    save_config(sn.space.build_config(params), out,
                metadata={"space_params": params, "from_supernet": str(args.supernet)})
    weights = out.with_suffix(".pth")
    torch.save(model.state_dict(), weights)
    print(f"wrote {out} and {weights}")
    return 0
