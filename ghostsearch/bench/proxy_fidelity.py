"""How well do cheap rankings order architectures?

With --ground-truth DIR (a table of `scripts/build_ground_truth.py`): every training-free
score, its size-free residual, #params and FLOPs, their rank average, the short proxies of
`scripts/build_proxy_table.py`, the long run's early epochs, ridge predictors under
cross-validation (and, with --supernet, inherited weights) against the table's *validation*
accuracy (what choices are made on; tau against test accuracy is reported beside it), by
Kendall tau with its bootstrap 95% interval and the precision of the top 20%, and the
CPU-seconds per architecture; a plot of tau against cost; each band and the whole table
separately, each with its ceiling, the tau a perfect ranking can expect against a truth
measured with the table's run-to-run noise.

Without it: samples architectures within a budget, trains each with the proxy protocol and
with a longer schedule, and reports Kendall tau and Spearman rho between the two rankings,
with the seeds' noise.

    python scripts/proxy_fidelity.py --ground-truth results/ground_truth --data imagefolder \\
        --data-dir /path/to/cifar10
    python scripts/proxy_fidelity.py --budget 200MFLOPs --data imagefolder --data-dir DIR \\
        --archs 12 --epochs 5 --factor 4
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ghostsearch import ConfigError, parse_budget
from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.provenance import provenance
from ghostsearch.search.scores import SCORE_NAMES
from ghostsearch.spaces.space import load_space
from ghostsearch.stats import rank_ceiling
from ghostsearch.train.data import load_data
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import Recipe

from .fidelity import proxy_fidelity, sample_within_budget


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="200MFLOPs")
    p.add_argument("--space", default="ghostnet")
    add_data_args(p, val_help="to rank on")
    p.add_argument("--archs", type=int, default=12, help="architectures (default 12)")
    p.add_argument("--epochs", type=int, default=5, help="proxy epochs (default 5)")
    p.add_argument("--factor", type=int, default=4, help="longer schedule = factor x epochs")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seeds", type=int, default=3, help="seeds for the noise estimate")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--ground-truth", default=None,
                   help="a ground-truth table folder: measure the scores against it")
    p.add_argument("--scores", default=",".join(SCORE_NAMES),
                   help="comma-separated scores for --ground-truth (default: all)")
    p.add_argument("--supernet", default=None,
                   help="a supernet checkpoint (folder or supernet.pt): rank the table with its "
                        "inherited weights too")
    p.add_argument("--supernet-calibration", type=int, default=512,
                   help="training images for the supernet's BatchNorm (default 512)")
    p.add_argument("--supernet-val-images", type=int, default=None,
                   help="rank with the supernet on the first N validation images (default all)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--bands", default="170:200,85:100",
                   help="FLOPs bands (LO:HI in MFLOPs, comma-separated) measured apart from the "
                        "whole table, on their sampled architectures (default: 170:200,85:100)")
    return p.parse_args(argv)


def against_ground_truth(args: argparse.Namespace) -> int:
    import torch

    from ghostsearch.train.recipe import GROUND_TRUTH_DATA

    from . import gt_fidelity as gf
    from .ground_truth import read_plan

    torch.set_num_threads(1)  # CPU-seconds per architecture, as a one-thread worker pays them
    for flag, value in (("--supernet-calibration", args.supernet_calibration),
                        ("--supernet-val-images", args.supernet_val_images)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    names = [n.strip() for n in args.scores.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCORE_NAMES]
    if unknown:
        raise ConfigError(f"--scores {unknown[0]!r}: unknown score (known: "
                          f"{', '.join(SCORE_NAMES)})")
    space = load_space(args.space)
    truth = gf.read_truth(args.ground_truth, space)
    meta = read_plan(Path(args.ground_truth))
    data = load_data(args.data, args.data_dir, val_size=meta["data"]["val_size"],
                     train_subset=meta["data"]["train_subset"],
                     seed=GROUND_TRUTH_DATA["split_seed"], resolution=args.resolution)
    scores = gf.score_table(args.ground_truth, list(truth.arch_id), names, data,
                            seed=args.seed, progress=None)
    methods = gf.score_methods(scores)
    methods.update(gf.proxy_methods(gf.read_proxies(args.ground_truth)))
    methods.update(gf.curve_methods(args.ground_truth))
    if args.supernet:
        methods.update(gf.supernet_methods(gf.supernet_scores(
            args.ground_truth, list(truth.arch_id), args.supernet, data,
            calibration=args.supernet_calibration, val_images=args.supernet_val_images,
            progress=lambda m: print(m, flush=True))))
    bands = [("all", None, None, False)] + [
        (f"{lo:g}-{hi:g} MFLOPs", lo, hi, True)
        for lo, hi in (map(float, b.split(":")) for b in args.bands.split(",") if b)]
    noise = gf.seed_noise(args.ground_truth)
    sections = {}
    for label, lo, hi, sampled in bands:
        sub = gf.in_band(truth, lo, hi, sampled_only=sampled)
        if len(sub) < 4:
            print(f"\n## {label}: {len(sub)} architectures, too few to rank")
            continue
        mine = {k: (v[0][v[0].index.isin(sub.arch_id)], v[1], v[2]) for k, v in methods.items()}
        mine.update(gf.size_free_methods(sub, mine))
        mine.update(gf.predictor_methods(sub, mine))
        table = gf.fidelity_table(sub, mine, boot=args.boot, seed=args.seed)
        s = gf.summary(table)
        print(f"\n## {label}: {len(sub)} architectures (Kendall tau against validation "
              "accuracy, bootstrap 95% interval, top-20% precision; tau against test beside)\n")
        print(table.to_markdown(index=False, floatfmt=".3f"))
        print(f"the bar (better of FLOPs and params): {s['bar_kendall']:.3f}; interval above "
              f"it: {', '.join(s['clear_with_interval']) or 'none'}")
        if noise:
            s["ceiling_kendall"] = rank_ceiling(sub.val_acc,
                                                noise["val_pooled_sd"] / np.sqrt(sub.seeds))
            print(f"the ceiling: a perfect ranking reaches about tau {s['ceiling_kendall']:.3f} "
                  f"against this truth (one run's validation sd {noise['val_pooled_sd']:.2f} "
                  f"points, over the spread of {len(sub)} architectures)")
        sections[label] = {"architectures": len(sub), **s, "table": table.to_dict("records")}
        if label == "all":
            gf.plot_fidelity(table, (Path(args.json) if args.json else Path(
                args.ground_truth) / "fidelity.json").with_suffix(".png"), len(sub))
    if noise:
        print(f"noise floor: {len(noise['architectures'])} architectures with two seeds or "
              f"more, one run's sd {noise['pooled_sd']:.2f} points (test); a one-seed "
              f"difference under {noise['one_seed_difference_95']:.2f} points is within noise")
    out = Path(args.json) if args.json else Path(args.ground_truth) / "fidelity.json"
    out.write_text(json.dumps({"truth": "mean validation accuracy over the finished seeds "
                               "(test accuracy reported beside)", "bands": sections,
                               "seed_noise": noise, "provenance": provenance(args)},
                              indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ground_truth:
        return against_ground_truth(args)
    budget = parse_budget(args.budget)
    space = load_space(args.space)
    proxy = Recipe(epochs=args.epochs, batch_size=args.batch_size)
    data = load_data(args.data, args.data_dir, val_size=args.val_size,
                     train_subset=args.train_subset,
                     resolution=args.resolution, seed=args.seed)
    configs = sample_within_budget(space, budget, args.archs, args.seed)
    result = proxy_fidelity(configs, data, proxy, args.factor, seeds=args.seeds,
                            device=str(pick_device(args.device)), progress=print)
    table = result.pop("table")
    shown = table.drop(columns=["code"]).assign(arch=table.arch.astype(str))
    print(shown.to_markdown(index=False, floatfmt=".2f"))
    tau = f"{result['kendall_tau']:.3f}"
    print(f"Kendall tau {tau}, Spearman rho {result['spearman_rho']:.3f} "
          f"({result['proxy_epochs']} vs {result['longer_epochs']} epochs, {len(table)} archs)")
    for n in result["seed_noise"]:
        print(f"arch {n['arch']}: {n['mean']:.2f}% +- {n['std']:.2f} over {n['seeds']} seeds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "table": table.to_dict("records"),
                       "provenance": provenance(args)}, f, indent=2)
    return 0

