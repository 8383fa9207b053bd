"""Does the short proxy rank architectures as a longer training does? Samples architectures
within a budget, trains each with the proxy protocol and with a longer schedule, and reports
Kendall tau and Spearman rho between the two rankings, with the seeds' noise.

    python scripts/proxy_fidelity.py --budget 200MFLOPs --data imagefolder --data-dir DIR \\
        --archs 12 --epochs 5 --factor 4
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from benchmarks.fidelity import proxy_fidelity, sample_within_budget
from ghostsearch import parse_budget
from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.provenance import provenance
from ghostsearch.search.data import load_data
from ghostsearch.search.proxy import ProxyProtocol, pick_device
from ghostsearch.search.space import load_space


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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = parse_budget(args.budget)
    space = load_space(args.space)
    proxy = ProxyProtocol(epochs=args.epochs, batch_size=args.batch_size)
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

