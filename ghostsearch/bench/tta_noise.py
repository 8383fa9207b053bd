"""Does flip test-time augmentation lower the run-to-run noise of a confirmation?

    python scripts/tta_noise.py --units results/STUDY/confirm --data imagefolder \\
        --data-dir /path/to/cifar10 --out results/protocol-noise/tta.csv

A verdict's interval is proportional to the run-to-run standard deviation of one run's
accuracy, so a protocol that lowers it buys power at no CPU cost when it is only evaluation.
This takes every finished unit of confirmations (a folder with record.json and the final
last.pt, written by `ghostsearch confirm`), evaluates its final weights on the validation and
test splits as trained (plain) and with the logits of each image and its mirror image
averaged (flip), and writes one row per unit (resumable: units in --out are skipped). Then it
prints, per mode, the standard deviation pooled over the arms (architectures) with its
degrees of freedom, the flip/plain ratio with a bootstrap interval over runs (the same runs
in both modes, so the comparison is paired), and flip's mean gain.

The plain re-evaluation must reproduce the test accuracy the unit recorded; a unit that does
not (other data, another split) is refused in one line. Decide on validation; test reports.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.confirm import get_protocol
from ghostsearch.errors import ConfigError
from ghostsearch.search.settings import DataSpec
from ghostsearch.stats import pooled_noise, t_quantile
from ghostsearch.train.full import ModelSpec
from ghostsearch.train.loop import eval_loader, evaluate
from ghostsearch.workflow.confirm import protocol_data_spec

MODES = ("val_plain", "val_flip", "test_plain", "test_flip")
FIELDS = ("arm", "seed", *MODES, "recorded_test")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="tta_noise", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", nargs="+", required=True, metavar="DIR",
                   help="folders of confirmation units (OUT/confirm of ghostsearch confirm)")
    add_data_args(p)
    p.add_argument("--protocol", default="ground-truth",
                   help="the units' protocol: fixes the training subset and validation split")
    p.add_argument("--out", required=True, help="CSV of one row per unit (appended, resumed)")
    p.add_argument("--boot", type=int, default=4000, help="bootstrap resamples of the runs")
    return p.parse_args(argv)


def finished_units(roots: Sequence[str]) -> list[tuple[str, int, Path]]:
    """(arm, seed, folder) of every unit whose final checkpoint is its last epoch."""
    out = []
    for root in roots:
        if not Path(root).is_dir():
            raise ConfigError(f"--units {root}: not a folder")
        for d in sorted(Path(root).iterdir()):
            if not ((d / "record.json").exists() and (d / "last.pt").exists()):
                continue
            arm, _, seed = d.name.rpartition("-seed")
            if arm and seed.isdigit():
                out.append((f"{Path(root).parent.name}/{arm}", int(seed), d))
    return out


def evaluate_unit(folder: Path, data: Any) -> dict[str, float]:
    record = json.loads((folder / "record.json").read_text())
    state = torch.load(folder / "last.pt", map_location="cpu", weights_only=False)
    if state["epoch"] != state["recipe"]["epochs"]:
        raise ConfigError(f"{folder}: its checkpoint is from epoch {state['epoch']}, not the last")
    model = ModelSpec(**state["spec"]).build()
    model.load_state_dict(state["model"])
    model = model.to(memory_format=torch.channels_last)
    row = {"recorded_test": record["test_acc"]}
    for split in ("val", "test"):
        loader = eval_loader(data, getattr(data, split), torch.device("cpu"))
        row[f"{split}_plain"] = evaluate(model, loader, amp=False)
        row[f"{split}_flip"] = evaluate(model, loader, amp=False, flip=True)
    if abs(row["test_plain"] - record["test_acc"]) > 1e-6:
        raise ConfigError(f"{folder}: re-evaluated test {row['test_plain']:.2f}% is not the "
                          f"recorded {record['test_acc']:.2f}%; pass the data and --protocol "
                          "the unit was trained with")
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: (v if k == "arm" else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]


def arms(rows: list[dict[str, Any]], mode: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["arm"], []).append(float(r[mode]))
    return out


def sd_ratio(rows: list[dict[str, Any]], split: str, boot: int, seed: int = 0) -> dict[str, float]:
    """Pooled sd of flip over plain on `split`, with a 95% bootstrap interval that resamples
    runs within each arm (a run keeps both its modes: the comparison is paired)."""
    rng = np.random.default_rng(seed)
    groups = [np.array([[r[f"{split}_plain"], r[f"{split}_flip"]] for r in rows
                        if r["arm"] == a]) for a in sorted({r["arm"] for r in rows})]
    groups = [g for g in groups if len(g) > 1]

    def ratio(gs: list[np.ndarray]) -> float:
        ss = sum(((g - g.mean(0)) ** 2).sum(0) for g in gs)
        return float(math.sqrt(ss[1] / ss[0])) if ss[0] > 0 else math.nan

    draws = [ratio([g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(boot)]
    draws = [d for d in draws if math.isfinite(d)]
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan)
    return {"ratio": ratio(groups), "low": float(lo), "high": float(hi)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    units = finished_units(args.units)
    if not units:
        raise ConfigError(f"--units {' '.join(args.units)}: no finished unit (record.json and "
                          "last.pt) in these folders")
    out = Path(args.out)
    done = {(r["arm"], int(r["seed"])) for r in read_rows(out)}
    todo = [u for u in units if (u[0], u[1]) not in done]
    if todo:
        _, train, val = get_protocol(args.protocol)
        given = DataSpec(args.data, args.data_dir, val_size=args.val_size,
                         train_subset=args.train_subset, resolution=args.resolution,
                         split_seed=args.split_seed, max_data_gb=args.max_data_gb)
        data = protocol_data_spec(given, train, val).load()
        out.parent.mkdir(parents=True, exist_ok=True)
        new = not out.exists()
        for i, (arm, seed, folder) in enumerate(todo, 1):
            row = {"arm": arm, "seed": seed, **evaluate_unit(folder, data)}
            with out.open("a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    w.writeheader()
                    new = False
                w.writerow(row)
            print(f"{i}/{len(todo)} {arm} seed {seed}: val {row['val_plain']:.2f} -> "
                  f"{row['val_flip']:.2f}, test {row['test_plain']:.2f} -> "
                  f"{row['test_flip']:.2f}", flush=True)
    rows = read_rows(out)
    print(f"{len(rows)} runs in {len(arms(rows, 'val_plain'))} arms ({out})")
    for mode in MODES:
        noise = pooled_noise(arms(rows, mode))
        print(f"{mode:>10}: pooled sd {noise.sd:.3f} points ({noise.df} df)")
    for split in ("val", "test"):
        r = sd_ratio(rows, split, args.boot)
        gain = np.array([x[f"{split}_flip"] - x[f"{split}_plain"] for x in rows])
        half = t_quantile(0.975, len(gain) - 1) * gain.std(ddof=1) / math.sqrt(len(gain))
        print(f"{split}: sd flip/plain {r['ratio']:.2f} (95% bootstrap {r['low']:.2f}-"
              f"{r['high']:.2f}); flip gains {gain.mean():+.2f} ± {half:.2f} points")
    return 0
