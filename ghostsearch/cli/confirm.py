"""Confirm a search: retrain its best architectures and the reference GhostNets (the widest
within the budget, and 1.0x) with a long protocol over several seeds, and say whether the
found architecture beats the reference at the budget, with a 95% interval from the run-to-run
noise pooled over every arm (adjusted for several candidates, and with --until-decided for
every verdict it may take before it stops).

    ghostsearch confirm --study-name NAME --data imagefolder --data-dir /path/to/cifar10
    ghostsearch confirm --study-name NAME --top 3 --seeds 3 --protocol ground-truth

Each (architecture, seed) is one unit in the study's own storage: run the same command on
several machines (with --storage) and they split the units; rerun it after an interruption and
it resumes (every unit checkpoints each epoch under OUT/confirm/). The references' runs are
kept in a reference bank (a CSV file beside the output folder) keyed by model, protocol and
data content: a later confirmation on the same data takes them from there and trains only its
candidates. Writes confirmed.csv, the report with a Confirmed section and confirmed.png, and
best_arch.json for the confirmed winner (with its proxy and confirmed figures) into the
study's output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ghostsearch.bank import Bank, data_fingerprint
from ghostsearch.cli.common import ArgumentParser, add_data_args
from ghostsearch.confirm import (
    DEFAULT_RECIPE,
    LOOKS_KEY,
    STALE_AFTER_S,
    BankLink,
    candidates,
    free_seeds,
    get_protocol,
    open_confirm_study,
    planned_looks,
    queue_unit,
    record_look,
    results,
    run_units,
    run_units_parallel,
    seeds_plan,
    unfinished,
    unit_count,
    unit_order,
    verdicts,
    winner,
)
from ghostsearch.errors import ConfigError
from ghostsearch.provenance import write_atomic
from ghostsearch.report.export import export_trial
from ghostsearch.report.render import write_report
from ghostsearch.search.estimate import default_n_jobs
from ghostsearch.search.settings import DataSpec
from ghostsearch.search.storage import (
    existing_study_url,
    load_existing_study,
    make_storage,
    study_dir,
)
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import recipe_names
from ghostsearch.verdict import across_recipes


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
                        "confirmation stands; rerun without it to go on)")
    p.add_argument("--max-seeds", type=int, default=10,
                   help="seeds an arm at most with --until-decided (default 10)")
    p.add_argument("--effect", type=float, default=1.0,
                   help="the difference in points the printed seed plan resolves (default 1)")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="SECONDS",
                   help="a unit left running this long without a finished epoch lost its "
                        "worker (killed, out of memory) and is queued again (default: "
                        f"{STALE_AFTER_S:g})")
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


def check_split(study: Any, split_id: str) -> None:
    """Refuse data whose held-out validation images differ from the ones the search selected
    on: its training images could then include them, and the confirmation would reward what
    the search chose on."""
    known = study.user_attrs.get("split")
    if known is None or known == split_id:
        return
    d = (study.user_attrs.get("settings") or {}).get("data", {})
    val = d.get("val_size") or d.get("val_cap")
    option = (f"--val-size {val} " if val else "") + f"--split-seed {d.get('split_seed', 0)}"
    raise ConfigError(f"this data holds out validation split {split_id}, but study "
                      f"{study.study_name!r} selected on split {known}; pass {option} (the "
                      "study's) so that no image the search selected on is trained on")


def protocol_data_spec(args: argparse.Namespace, train: int | None, val: int) -> DataSpec:
    """The data options of `add_data_args`, with the protocol's training subset and validation
    size where the command line left them out."""
    return DataSpec(args.data, args.data_dir,
                    val_size=val if args.val_size is None else args.val_size,
                    train_subset=train if args.train_subset is None else args.train_subset,
                    resolution=args.resolution, split_seed=args.split_seed,
                    max_data_gb=args.max_data_gb)


DECIDED = ("beats", "loses to", "equivalent")


def until_decided(confirm: Any, cands: list, seeds: int, max_seeds: int, run_round: Any,
                  link: BankLink | None = None, looks: int = 1, recipes: int = 1) -> None:
    """After the first round: while the leading candidate (best confirmed validation mean) is
    undecided against the reference, give both one more seed and train them (a reference
    seed the bank holds is taken from it), up to `max_seeds` an arm.

    A verdict is looked at only when every queued unit has finished and both arms have as
    many seeds: a unit still running elsewhere stops the loop (a rerun goes on), and arms left
    uneven (by an interrupted round) are first evened without a look, so the verdicts taken
    stay within the `looks` their interval is adjusted for."""
    ref = next(c.key for c in cands if c.baseline)
    while True:
        left = unfinished(confirm)
        if left:
            names = ", ".join(f"{k} seed {s}" for k, s in left)
            print(f"{len(left)} unit(s) not finished ({names}): running in another "
                  "worker, or lost and taken back after --stale-after seconds; no verdict "
                  "looked at, rerun to go on")
            return
        looks = record_look(confirm, results(confirm), cands)
        table = verdicts(cands, results(confirm), looks=looks, recipes=recipes)
        lead = winner(table, seeds)
        if lead is None:
            return
        have = {r["key"]: r["seeds"] for r in table}
        target = max(have[lead["key"]], have[ref])
        if have[lead["key"]] == have[ref]:  # even arms: a look at the verdict
            if lead.get("decision") in DECIDED:
                print(f"decided at {target} seeds: {lead['key']} {lead['verdict']}")
                return
            if target >= max_seeds:
                print(f"still {lead.get('decision', 'undecided')} at --max-seeds {max_seeds}: "
                      f"{lead.get('verdict', '')}")
                return
            target += 1
            why = f"{lead['key']} is {lead.get('decision', 'undecided')} against {ref}"
        else:
            why = f"{lead['key']} and {ref} have uneven seeds ({have[lead['key']]} and " \
                  f"{have[ref]}), evened before the verdict is looked at"
        new = [(k, s) for k in (lead["key"], ref)
               for s in free_seeds(confirm, k, target - have[k])]
        done = len(results(confirm))  # before queueing: a seed the bank holds counts as done
        for key, seed in new:
            queue_unit(confirm, key, seed, unit_count(confirm), link)
        print(f"{why}: {', '.join(f'{k} seed {s}' for k, s in new)}")
        run_round()
        if len(results(confirm)) == done:
            print("the round finished no unit (their failures are in the report); stopped")
            return


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.top < 1:
        raise ConfigError(f"--top {args.top}: must be >= 1")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
    if args.until_decided and args.max_seeds < args.seeds:
        raise ConfigError(f"--max-seeds {args.max_seeds} is below --seeds {args.seeds}")
    if args.n_jobs is not None and args.n_jobs < 1:
        raise ConfigError(f"--n-jobs {args.n_jobs}: must be >= 1")
    names = args.recipe or [args.protocol or DEFAULT_RECIPE]
    recipes = [get_protocol(n, args.epochs) for n in names]  # every recipe refused up front
    labels = [r.name for r, _, _ in recipes]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--recipe: two recipes share the name {labels!r}; give each file "
                          "its own name")
    url = existing_study_url(args.study_name, args.storage, args.out)
    study = load_existing_study(args.study_name, url)
    cands = candidates(study, args.top, with_1x=not args.budget_reference_only)
    out = study_dir(args.study_name, args.out)
    device = pick_device(args.device)
    n_jobs = default_n_jobs(device.type) if args.n_jobs is None else args.n_jobs
    tables = {}
    for protocol, train, val in recipes:
        table = confirm_under(args, study, url, cands, out, device, n_jobs, protocol, train,
                              val, len(recipes))
        if table is not None:
            tables[protocol.name] = table
    if not tables:  # --no-train before any unit finished
        return 0
    first = tables.get(recipes[0][0].name, [])
    if len(tables) > 1:
        across = across_recipes(tables)
        pd.DataFrame(across).to_csv(out / "confirmed-recipes.csv", index=False)
        print(f"across {len(tables)} recipes (intervals adjusted for them too, Bonferroni):")
        for row in across:
            print(f"  {row['key']}: {row['verdict']}")
        print(f"wrote {out / 'confirmed-recipes.csv'}")
    best = winner(first, args.seeds)
    if best is not None:
        path = export_trial(study, best["trial"], out / "best_arch.json")
        data_json = json.loads(path.read_text())
        data_json["metadata"]["confirmed"] = {
            **{k: v for k, v in best.items() if k != "baseline"},
            "protocol": recipes[0][0].identity(), "recipe": recipes[0][0].to_dict(),
            "all": first}
        write_atomic(path, json.dumps(data_json, indent=2) + "\n")
        print(f"confirmed winner: {best['key']} (under {recipes[0][0].name}): "
              f"{best.get('verdict', '')}; wrote {path}")
    files = write_report([study], out, url)
    print(f"report: {files['md']}")
    return 0


def confirm_under(args: argparse.Namespace, study: Any, url: str, cands: list, out: Path,
                  device: Any, n_jobs: int, protocol: Any, train: int | None,
                  val: int, n_recipes: int = 1) -> list[dict[str, Any]] | None:
    """One recipe's confirmation: its companion study, units, bank and verdict table
    (written to confirmed.csv for the ground-truth recipe, confirmed-<recipe>.csv else), its
    intervals adjusted for the `n_recipes` read together; None when --no-train finds no
    finished unit."""
    spec = protocol_data_spec(args, train, val)
    data = spec.load()  # bad data is refused here, once, before any worker starts
    check_split(study, data.split_id)
    print(f"{protocol.describe()}\n{data.summary()}")
    link = None
    if not args.no_bank:
        bank = Bank(Path(args.bank)) if args.bank else Bank.beside(out)
        link = BankLink.make(bank, cands, data, protocol, data_fingerprint(data),
                             f"confirm {args.study_name}")
    units = unit_order(cands, args.seeds)
    meta = {"protocol": protocol.identity(), "seeds": args.seeds,
            "data": {"name": args.data, "train": len(data.train), "val": len(data.val),
                     "split": data.split_id},
            "candidates": [dataclasses.asdict(c) for c in cands]}
    confirm = open_confirm_study(study, make_storage(url), units, meta, link, protocol,
                                 read_only=args.no_train)
    looks = planned_looks(confirm)
    if args.until_decided and args.max_seeds - args.seeds + 1 > looks:
        looks = args.max_seeds - args.seeds + 1  # the first round, then a seed at a time
        confirm.set_user_attr(LOOKS_KEY, looks)
    ref = next(c.key for c in cands if c.baseline)
    banked = 0
    if link is not None:
        synced = link.sync(confirm)
        banked = len(link.bank.runs(link.keys[ref]))
        from_bank = [r for r in results(confirm) if r["from_bank"]]
        print(f"reference bank {link.bank.path}: {banked} run(s) of {ref} under this recipe "
              f"and data; {len(from_bank)} reference unit(s) taken from it, not trained"
              + (f"; {synced} run(s) of this confirmation stored in it" if synced else ""))
    plan = seeds_plan(protocol.name, sum(not c.baseline for c in cands), args.effect,
                      results(confirm), args.seeds, banked, looks)
    if plan:
        print(f"at the noise known for this recipe (one run's sd {plan['sd']:.2f} points, "
              f"{plan['df']} df, from {plan['source']}), resolving {plan['effect']:g} point "
              f"against the reference takes about {plan['seeds']} seeds an arm: "
              f"{plan['units']} units, about {plan['cpu_hours']:.0f} CPU-hours on a 2-core "
              f"CPU; --seeds {args.seeds} gives about ±{plan['half_at_seeds']:.1f} points")
    finished = {(r["key"], r["seed"]) for r in results(confirm)}
    added = unit_count(confirm) - len(units)
    print(f"confirming {len(cands)} architectures x {args.seeds} seeds = {len(units)} units"
          + (f" (+{added} added by --until-decided)" if added > 0 else "") + ", "
          f"{unit_count(confirm) - len(finished)} to train "
          f"({protocol.epochs} epochs on {len(data.train)} images each) on {device}, "
          f"{n_jobs} worker(s)")
    cand_by_key = {c.key: c for c in cands}

    def run_round() -> None:
        if n_jobs == 1:
            run_units(confirm, cand_by_key, data, protocol, out, device=str(device),
                      stale_after_s=args.stale_after, link=link)
        else:
            run_units_parallel(url, confirm.study_name, cand_by_key, spec, protocol, out,
                               n_jobs, device=str(device),
                               stale_after_s=args.stale_after, link=link)

    if args.no_train:
        done = len(results(confirm))
        print(f"--no-train: the verdict of the {done} unit(s) finished so far; "
              f"{unit_count(confirm) - done} left for a rerun without --no-train")
        if not done:
            return None  # nothing to say: no file is written
    else:
        run_round()
        if args.until_decided:
            until_decided(confirm, cands, args.seeds, args.max_seeds, run_round, link, looks,
                          n_recipes)
    if not args.no_train:  # a verdict on new seeds is a look, whatever made them
        looks = record_look(confirm, results(confirm), cands)
    looks = planned_looks(confirm)
    table = verdicts(cands, results(confirm), looks=looks, recipes=n_recipes)
    for row in table:
        row["recipe"] = protocol.name
    out.mkdir(parents=True, exist_ok=True)
    csv_name = ("confirmed.csv" if protocol.name == DEFAULT_RECIPE
                else f"confirmed-{protocol.name}.csv")
    write_atomic(out / csv_name, pd.DataFrame(table).to_csv(index=False))
    for r in table:
        spread = "" if math.isnan(r["test_std"]) else f" ± {r['test_std']:.2f}"
        print(f"[{protocol.name}] {r['key']}: test {r['test_mean']:.2f}{spread}, val "
              f"{r['val_mean']:.2f} over {r['seeds']} seed(s)" +
              (f"; {r['verdict']}" if r.get("verdict") else ""))
    return table
