"""Which choices of the space go with accuracy at a fixed size: a design-space analysis of a
ground-truth table, in the spirit of RegNet's (Radosavovic et al., CVPR 2020).

Every sampled architecture is reduced to a few numbers (width, total and per-stage depth, the
per-stage choices averaged over stages, the share of stages at each level of a categorical
choice). Size is taken out first: each feature is correlated (Spearman) with the residual of
validation accuracy after a least-squares fit on log FLOPs, and separately within each
independent sample of the table (the first uniform draw, then each band's draws), so that an
effect found in one sample can be checked in another. A feature whose sign agrees in every
sample, with p < 0.05 pooled, is a candidate for narrowing the space; the analysis does not
say why, nor whether it holds under another training protocol.

    python scripts/design_space.py --ground-truth results/ground_truth
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance
from ghostsearch.spaces.space import load_space
from ghostsearch.stats import size_free

FIRST_TABLE = "first table"


def network_features(params: dict[str, Any]) -> dict[str, float]:
    """A sampled point of a space (`stageN.choice` keys and global ones) as numbers: global
    numeric choices as they are, per-stage numeric choices averaged over the stages (depth
    summed, and kept per stage), per-stage categorical ones as the share of stages at each
    level."""
    per_stage: dict[str, list[Any]] = {}
    out: dict[str, float] = {}
    for key, value in params.items():
        if "." not in key:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
            continue
        stage, choice = key.split(".", 1)
        per_stage.setdefault(choice, []).append(value)
        if choice == "depth":
            out[f"{stage}.depth"] = float(value)
    for choice, values in per_stage.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[f"{choice} (total)" if choice == "depth" else f"{choice} (mean)"] = float(
                np.sum(values) if choice == "depth" else np.mean(values))
        else:
            for level in sorted({str(v) for v in values}):
                out[f"{choice} = {level} (share)"] = float(np.mean([str(v) == level
                                                                   for v in values]))
    return out


def choice_effects(table: pd.DataFrame, features: pd.DataFrame,
                   min_size: int = 8) -> pd.DataFrame:
    """Spearman rho (and p) of each feature with the size residual, pooled and within each
    sample of `table` (columns arch_id, sample, val_acc, mflops) with at least `min_size`
    architectures; `features` is indexed by arch_id. Sorted by pooled |rho|."""
    from scipy.stats import spearmanr

    table = table.set_index("arch_id")
    groups = [("pooled", table)] + [(name, g) for name, g in table.groupby("sample", sort=False)
                                    if len(g) >= min_size]
    rows = []
    for feature in features.columns:
        row: dict[str, Any] = {"feature": feature}
        signs = []
        for name, g in groups:
            x = features.loc[g.index, feature]
            if x.nunique() < 2:
                row[f"{name} rho"] = row[f"{name} p"] = float("nan")
                continue
            rho, p = spearmanr(x, size_free(g.val_acc, g.mflops))
            row[f"{name} rho"], row[f"{name} p"] = float(rho), float(p)
            if name != "pooled":
                signs.append(np.sign(rho))
        row["same sign in every sample"] = bool(signs) and len(set(signs)) == 1
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.reindex(out["pooled rho"].abs().sort_values(ascending=False).index)


def subspace_check(table: pd.DataFrame, inside: pd.Series) -> dict[str, Any]:
    """How the table's architectures that a narrower space holds (`inside`, by arch_id) fare
    against the others once size is taken out: the mean difference of their accuracy less its
    fit on log FLOPs, with Welch's p."""
    from scipy.stats import ttest_ind

    resid = size_free(table.val_acc, table.mflops)
    mask = inside.loc[table.arch_id].to_numpy(bool)
    if mask.sum() < 2 or (~mask).sum() < 2:
        return {"inside": int(mask.sum()), "outside": int((~mask).sum())}
    return {"inside": int(mask.sum()), "outside": int((~mask).sum()),
            "residual_difference": float(resid[mask].mean() - resid[~mask].mean()),
            "welch_p": float(ttest_ind(resid[mask], resid[~mask], equal_var=False).pvalue),
            "val_acc_inside": float(table.val_acc[mask].mean()),
            "val_acc_outside": float(table.val_acc[~mask].mean())}


def read_table(table_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sampled architectures of a ground truth with their sample (the first table or the
    band whose draws added them), and their features."""
    from . import gt_fidelity as gf
    from .ground_truth import Band, read_plan

    meta = read_plan(table_dir)
    truth = gf.read_truth(table_dir, load_space(meta["space"]))
    truth = truth[(truth.kind == "sampled") & truth.val_acc.notna()].copy()
    bands = [Band(**b) for b in meta.get("bands", [])]
    prefixes = [(b.prefix, f"band {b.low:g}-{b.high:g} MFLOPs") for b in bands]
    truth["sample"] = [next((name for p, name in prefixes if a.startswith(p)), FIRST_TABLE)
                       for a in truth.arch_id]
    feats = {a: network_features(json.loads((table_dir / "configs" / f"{a}.json").read_text())
                                 ["metadata"]["space_params"]) for a in truth.arch_id}
    frame = pd.DataFrame.from_dict(feats, orient="index")
    shares = [c for c in frame.columns if c.endswith("(share)")]
    frame[shares] = frame[shares].fillna(0.0)  # a level no stage took has share 0
    return truth, frame.loc[:, frame.nunique() > 1]  # a choice the space fixes says nothing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ground-truth", required=True, help="the ground-truth table folder")
    p.add_argument("--min-size", type=int, default=8,
                   help="a sample with fewer architectures is pooled only (default 8)")
    p.add_argument("--space-check", default=None, metavar="SPACE",
                   help="also compare the architectures that SPACE (a narrower space) holds "
                        "with the rest, size taken out")
    p.add_argument("--json", default=None,
                   help="write the table here (default: design-space.json in the table)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    narrow = load_space(args.space_check) if args.space_check else None  # refused before work
    table_dir = Path(args.ground_truth)
    truth, feats = read_table(table_dir)
    effects = choice_effects(truth, feats, args.min_size)
    sizes = truth.groupby("sample", sort=False).size()
    print(f"{len(truth)} sampled architectures: "
          + ", ".join(f"{name} {n}" for name, n in sizes.items())
          + "; Spearman rho of each feature with validation accuracy less its fit on log FLOPs\n")
    print(effects.to_markdown(index=False, floatfmt=".3f"))
    check = None
    if narrow is not None:
        params = {a: json.loads((table_dir / "configs" / f"{a}.json").read_text())
                  ["metadata"]["space_params"] for a in truth.arch_id}
        check = {"space": narrow.name, **subspace_check(
            truth, pd.Series({a: narrow.contains(p) for a, p in params.items()}))}
        print(f"\n{narrow.name}: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in check.items()
            if k != "space"))
    out = Path(args.json) if args.json else table_dir / "design-space.json"
    out.write_text(json.dumps({"architectures": int(len(truth)),
                               "samples": {k: int(v) for k, v in sizes.items()},
                               "effects": effects.to_dict("records"), "space_check": check,
                               "provenance": provenance(args)}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
