"""Does depth still hurt at a fixed size under the full-data recipe? The architectures were
chosen before training (choice.json: the four shallowest and four deepest of the ground
truth's 85-100 MFLOPs architectures); this reads their full-data runs and their 12-epoch
ground-truth runs and sets the two recipes side by side: per architecture, validation and
test accuracy; per recipe, the size-adjusted depth correlation (Spearman rho of blocks
against validation accuracy less its least-squares fit on log FLOPs) and the shallow-minus-
deep difference of validation means with its Welch interval (architectures as the unit);
across recipes, the rank agreement of the eight.

    python scripts/depth_full_data.py
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats as scipy_stats

from ghostsearch.errors import ConfigError
from ghostsearch.provenance import write_atomic
from ghostsearch.stats import rank_correlations, size_free, welch

RESULTS = Path("results")
MIN_FOR_P = 5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="depth_full_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--choice", default=str(RESULTS / "depth-full-data" / "choice.json"))
    p.add_argument("--units", default=str(RESULTS / "depth-full-data"),
                   help="the folders <arch_id>-seed<N> that `ghostsearch train --out` wrote")
    p.add_argument("--ground-truth", default=str(RESULTS / "ground_truth" / "runs.csv"),
                   help="the 12-epoch runs (scripts/build_ground_truth.py)")
    p.add_argument("--out", default=str(RESULTS / "depth-full-data" / "depth.csv"))
    return p.parse_args(argv)


def finished_runs(folder: Path, arch_id: str) -> list[dict[str, Any]]:
    """The finished full-data runs of `arch_id` (every epoch of its recipe, a test figure)."""
    out = []
    for rec in sorted(folder.glob(f"{arch_id}-seed*/record.json")):
        r = json.loads(rec.read_text())
        if r.get("test_acc") is not None and len(r.get("history", [])) == r["recipe"]["epochs"]:
            out.append(r)
    return out


def table(choice: dict[str, Any], units: Path, gt: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group in ("shallow", "deep"):
        for a in choice[group]:
            runs = finished_runs(units, a["arch_id"])
            short = gt[gt.arch_id == a["arch_id"]]
            if short.empty:
                raise ConfigError(f"--ground-truth: no 12-epoch run of {a['arch_id']}")
            rows.append({
                "arch_id": a["arch_id"], "group": group, "blocks": a["blocks"],
                "mflops": a["mflops"], "full_seeds": len(runs),
                "full_val": statistics.fmean(r["val_acc"] for r in runs) if runs else math.nan,
                "full_test": statistics.fmean(r["test_acc"] for r in runs) if runs else math.nan,
                "full_train_min": (statistics.fmean(r["train_seconds"] for r in runs) / 60
                                   if runs else math.nan),
                "short_seeds": len(short), "short_val": short.val_acc.mean(),
                "short_test": short.test_acc.mean()})
    return pd.DataFrame(rows)


def depth_effect(df: pd.DataFrame, col: str) -> dict[str, Any]:
    """Size-adjusted Spearman rho of blocks against `col`, and shallow minus deep."""
    d = df[df[col].notna()]
    adj = size_free(d[col].to_numpy(), d.mflops.to_numpy())
    rho = scipy_stats.spearmanr(d.blocks, adj) if len(d) >= 3 else None
    sh, dp = d[d.group == "shallow"][col].tolist(), d[d.group == "deep"][col].tolist()
    diff, half = welch(sh, dp) if sh and dp else (math.nan, math.nan)
    return {"n": len(d), "rho": float(rho.statistic) if rho is not None else math.nan,
            # scipy's p of a rank correlation of fewer than 5 pairs means nothing
            "p": float(rho.pvalue) if rho is not None and len(d) >= MIN_FOR_P else math.nan,
            "shallow_minus_deep": diff, "half": half, "shallow_n": len(sh), "deep_n": len(dp)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    choice = json.loads(Path(args.choice).read_text())
    df = table(choice, Path(args.units), pd.read_csv(args.ground_truth))
    done = df[df.full_seeds > 0]
    recipes = {"ground-truth (12 epochs, 10,000 images)": "short",
               "full-data (6 epochs, 48,000 images)": "full"}
    summary: dict[str, Any] = {
        "recipes": {name: {m: depth_effect(done, f"{col}_{m}") for m in ("val", "test")}
                    for name, col in recipes.items()},
        # the 12-epoch effect over all the chosen, trained under full-data or not yet
        "ground-truth, all chosen": {m: depth_effect(df, f"short_{m}") for m in ("val", "test")},
        "trained": f"{len(done)} of {len(df)}", "archs": done.arch_id.tolist()}
    if len(done) >= 3:
        summary["rank_agreement_val"] = rank_correlations(done.short_val, done.full_val)
    out = Path(args.out)
    write_atomic(out, df.to_csv(index=False, float_format="%.2f"))
    write_atomic(out.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for name, eff in summary["recipes"].items():
        for metric, e in eff.items():
            print(f"{name}, {metric}: size-adjusted rho(blocks, accuracy) {e['rho']:+.2f} "
                  f"(p {e['p']:.3f}, n {e['n']}); shallow - deep {e['shallow_minus_deep']:+.2f}"
                  f" ± {e['half']:.2f} ({e['shallow_n']} vs {e['deep_n']} architectures)")
    for metric, e in summary["ground-truth, all chosen"].items():
        print(f"ground-truth over all {e['n']} chosen, {metric}: rho {e['rho']:+.2f} "
              f"(p {e['p']:.3f}); shallow - deep {e['shallow_minus_deep']:+.2f} ± {e['half']:.2f}")
    if "rank_agreement_val" in summary:
        r = summary["rank_agreement_val"]
        print(f"rank agreement of the {len(done)} (validation): Kendall {r['kendall']:+.2f}, "
              f"Spearman {r['spearman']:+.2f}")
    print(f"wrote {out} and {out.with_suffix('.json')} ({summary['trained']} trained)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
