"""Confirm a search: retrain its best architectures and the reference GhostNets (the widest
within the budget, and 1.0x) with a long protocol over several seeds, and say whether the
found architecture beats the reference at the budget, with a 95% interval from the run-to-run
noise pooled over the compared arms (the reference and the candidates at the budget),
adjusted for several candidates, recipes and, with --until-decided, every verdict it may take
before it stops. `ghostsearch.run_confirm` does the same from Python.

    ghostsearch confirm --study-name NAME --data imagefolder --data-dir /path/to/cifar10
    ghostsearch confirm --study-name NAME --top 3 --seeds 3 --protocol ground-truth

Each (architecture, seed) is one unit in the study's own storage: run the same command on
several machines (with --storage) and they split the units; rerun it after an interruption and
it resumes (every unit checkpoints each epoch under OUT/confirm/). The references' runs are
kept in a reference bank (a CSV file beside the output folder) keyed by what determines a run
(model, recipe, data content, device class, code version): a later confirmation on the same
data takes them from there and trains only its candidates. Writes confirmed.csv, the report
with a Confirmed section and confirmed.png, and best_arch.json for the confirmed winner (with
its proxy and confirmed figures) into the study's output folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.confirm import DEFAULT_RECIPE, STALE_AFTER_S
from ghostsearch.search.settings import DataSpec
from ghostsearch.train.recipe import recipe_names
from ghostsearch.workflow.confirm import ConfirmSettings, Verdict, run_confirm


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch confirm", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-name", required=True, help="the search to confirm")
    p.add_argument("--storage", default=None, help="its storage URL (default: --out/study.db)")
    p.add_argument("--out", default=None, help="the search's output folder "
                                               "(default: results/<study-name>)")
    p.add_argument("--top", type=int, default=3,
                   help="best trials by proxy validation accuracy to retrain (default: 3)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per architecture (default: 3); rerun with more to narrow the "
                        "intervals: only the new seeds are trained")
    p.add_argument("--recipe", action="append", default=None, metavar="NAME|FILE",
                   help="the training recipe of the units: a named one "
                        f"({', '.join(recipe_names())}) or a YAML/JSON file of recipe fields "
                        "(docs/recipes.md); repeat it for a verdict under each recipe and "
                        "one across them (default: ground-truth, 12 epochs on 10,000 images)")
    p.add_argument("--protocol", default=None, help=argparse.SUPPRESS)  # the old name
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--budget-reference-only", action="store_true",
                   help="train only the reference at the budget, not GhostNet 1.0x beside it "
                        "(an arm over the budget is reported, never in the verdict's noise)")
    add_data_args(p, val_help="to select the winner on")
    p.add_argument("--device", default="auto")
    p.add_argument("--until-decided", action="store_true",
                   help="after the first round, add one seed at a time to the leading "
                        "candidate and the reference until its verdict is decided (beats, "
                        "loses to, equivalent) or --max-seeds is reached")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: write the verdict, confirmed.csv, the report and "
                        "best_arch.json from the units finished so far (where a long "
                        "confirmation stands; it queues no unit, so more --seeds here "
                        "train nothing later; rerun without it to go on)")
    p.add_argument("--max-seeds", type=int, default=10,
                   help="seeds an arm at most with --until-decided (default 10)")
    p.add_argument("--effect", type=float, default=1.0,
                   help="the difference in points the printed seed plan resolves (default 1)")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="SECONDS",
                   help="on a journal storage, a unit silent this long (it beats every "
                        "60 s while it trains) lost its worker and is queued again "
                        f"(default: {STALE_AFTER_S:g}); RDB storages use Optuna's heartbeat "
                        "instead (30 s beats, 90 s grace), and a unit whose worker on this "
                        "machine is gone is queued again at once")
    p.add_argument("--bank", default=None, metavar="CSV",
                   help="the reference bank: runs of the references stored once per model, "
                        "protocol and data, reused here and added to by this confirmation "
                        "(default: reference_bank.csv beside the study's output folder)")
    p.add_argument("--no-bank", action="store_true",
                   help="train the references here and leave the bank alone")
    p.add_argument("--n-jobs", type=int, default=None,
                   help="worker processes on this machine splitting the units (default: on a "
                        "CPU one single-thread worker per core, at most 8; on a GPU 1)")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> ConfirmSettings:
    """The ConfirmSettings the options describe."""
    return ConfirmSettings(
        study_name=args.study_name, storage=args.storage, out=args.out, top=args.top,
        seeds=args.seeds, recipes=tuple(args.recipe or [args.protocol or DEFAULT_RECIPE]),
        epochs=args.epochs, budget_reference_only=args.budget_reference_only,
        data=DataSpec(args.data, args.data_dir, val_size=args.val_size,
                      train_subset=args.train_subset, resolution=args.resolution,
                      split_seed=args.split_seed, max_data_gb=args.max_data_gb),
        device=args.device, n_jobs=args.n_jobs, until_decided=args.until_decided,
        max_seeds=args.max_seeds, no_train=args.no_train, effect=args.effect,
        stale_after_s=args.stale_after, bank=args.bank, use_bank=not args.no_bank)


def main(argv: Sequence[str] | None = None) -> int:
    verdict: Verdict = run_confirm(settings_from_args(parse_args(argv)))
    if verdict.across is not None:
        print(f"wrote {verdict.out / 'confirmed-recipes.csv'}")
    if verdict.winner is not None:
        print(f"confirmed winner: {verdict.winner['key']} (under {verdict.recipes[0]}): "
              f"{verdict.winner.get('verdict', '')}; wrote {verdict.best_path}")
    if verdict.report is not None:
        print(f"report: {verdict.report['md']}")
    return 0
