"""The confirmation as one call: `run_confirm(settings)` does what `ghostsearch confirm` does
(retrain a search's best architectures and the reference GhostNets over seeds under each
recipe, resumably, and judge them) and returns a `Verdict`: the table under each recipe,
the verdict across them, and the confirmed winner written to best_arch.json."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..bank import Bank, data_fingerprint
from ..confirm import (
    DEFAULT_RECIPE,
    STALE_AFTER_S,
    BankLink,
    Candidate,
    bank_noise,
    candidates,
    design_verdicts,
    free_seeds,
    get_protocol,
    open_confirm_study,
    plan_looks,
    planned_looks,
    queue_unit,
    record_look,
    results,
    run_units,
    run_units_parallel,
    seeds_plan,
    unit_order,
    winner,
)
from ..errors import ConfigError
from ..log import logger
from ..provenance import write_atomic
from ..report.export import confirmed_winner, export_trial
from ..report.render import write_report
from ..search.estimate import default_n_jobs
from ..search.settings import DataSpec
from ..search.storage import existing_study_url, load_existing_study, make_storage, study_dir
from ..train.loop import pick_device
from ..train.recipe import Recipe
from ..train.runspec import device_class
from ..units import unfinished, unit_count
from ..verdict import across_recipes

DECIDED = ("beats", "loses to", "equivalent")


@dataclass(frozen=True)
class ConfirmSettings:
    """What a confirmation retrains and how; the defaults are `ghostsearch confirm`'s.

    `data` gives the images: its `val_size` and `train_subset` left at None take each
    recipe's (the ground-truth recipe: 10,000 training images and 2,000 held out)."""

    study_name: str
    storage: str | None = None  # the search's storage (default: <out>/study.db)
    out: str | None = None  # the search's output folder (default: results/<study_name>)
    top: int = 3  # best trials by proxy validation accuracy to retrain
    seeds: int = 3  # seeds an arm; a later call with more trains only the new ones
    recipes: tuple[str | Recipe, ...] = (DEFAULT_RECIPE,)  # a verdict under each, one across
    epochs: int | None = None  # overrides every recipe's epochs
    budget_reference_only: bool = False  # no GhostNet 1.0x arm beside the one at the budget
    data: DataSpec = field(default_factory=lambda: DataSpec(val_size=None))
    device: str = "auto"
    n_jobs: int | None = None  # worker processes (default: one single-thread one a core)
    until_decided: bool = False  # add a seed at a time to the leader until decided
    max_seeds: int = 10  # with until_decided, seeds an arm at most
    no_train: bool = False  # judge the units finished so far, train nothing
    effect: float = 1.0  # the difference in points the logged seed plan resolves
    stale_after_s: float = STALE_AFTER_S  # a unit silent this long lost its worker
    bank: str | None = None  # the reference bank CSV (default: beside the output folder)
    use_bank: bool = True

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ConfigError(f"--top {self.top}: must be >= 1")
        if self.seeds < 1:
            raise ConfigError(f"--seeds {self.seeds}: must be >= 1")
        if self.until_decided and self.max_seeds < self.seeds:
            raise ConfigError(f"--max-seeds {self.max_seeds} is below --seeds {self.seeds}")
        if self.n_jobs is not None and self.n_jobs < 1:
            raise ConfigError(f"--n-jobs {self.n_jobs}: must be >= 1")
        if not self.recipes:
            raise ConfigError("--recipe: give at least one recipe")


@dataclass(frozen=True)
class Verdict:
    """A confirmation's findings: one table a recipe (a row an architecture: test and
    validation means over seeds, the interval against the reference at the budget, the
    verdict words), the verdict across the recipes, and the confirmed winner (the best
    validation mean under the first recipe, among those with every seed)."""

    study_name: str
    recipes: tuple[str, ...]
    tables: dict[str, list[dict[str, Any]]]
    across: list[dict[str, Any]] | None  # None with one recipe
    winner: dict[str, Any] | None
    best_path: Path | None  # best_arch.json with the winner's confirmed figures
    report: dict[str, Path] | None
    out: Path

    def frame(self) -> pd.DataFrame:
        """Every recipe's rows in one frame (a `recipe` column tells them apart)."""
        return pd.DataFrame([r for rows in self.tables.values() for r in rows])

    def of(self, key: str, recipe: str | None = None) -> dict[str, Any]:
        """The row of architecture `key` (e.g. 'trial-10') under `recipe` (default: the
        first)."""
        rows = self.tables[recipe or self.recipes[0]]
        for r in rows:
            if r["key"] == key:
                return r
        raise KeyError(f"{key!r} is not among {[r['key'] for r in rows]}")


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


def protocol_data_spec(data: DataSpec, train: int | None, val: int) -> DataSpec:
    """`data` with the recipe's training subset and validation size where it left them out."""
    return dataclasses.replace(
        data, val_size=val if data.val_size is None else data.val_size,
        train_subset=train if data.train_subset is None else data.train_subset)


def run_confirm(settings: ConfirmSettings) -> Verdict:
    """Confirm the search `settings.study_name`: under each recipe, train the units its
    companion study still lacks (resuming; references from the bank where it holds them),
    write confirmed[-<recipe>].csv, confirmed-recipes.csv with more than one recipe, the
    report and best_arch.json for the winner, and return the Verdict. Progress goes to the
    `ghostsearch` logger."""
    recipes = [get_protocol(r, settings.epochs) for r in settings.recipes]  # all checked first
    labels = [r.name for r, _, _ in recipes]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--recipe: two recipes share the name {labels!r}; give each file "
                          "its own name")
    url = existing_study_url(settings.study_name, settings.storage, settings.out)
    study = load_existing_study(settings.study_name, url)
    cands = candidates(study, settings.top, with_1x=not settings.budget_reference_only)
    out = study_dir(settings.study_name, settings.out)
    device = pick_device(settings.device)
    n_jobs = default_n_jobs(device.type) if settings.n_jobs is None else settings.n_jobs
    tables = {}
    for protocol, train, val in recipes:
        table = confirm_under(settings, study, url, cands, out, device, n_jobs, protocol,
                              train, val, len(recipes))
        if table is not None:
            tables[protocol.name] = table
    if not tables:  # no_train before any unit finished: nothing to say, no file written
        return Verdict(settings.study_name, tuple(labels), {}, None, None, None, None, out)
    first = tables.get(labels[0], [])
    across = None
    if len(tables) > 1:
        across = across_recipes(tables)
        write_atomic(out / "confirmed-recipes.csv", pd.DataFrame(across).to_csv(index=False))
        logger.info(f"across {len(tables)} recipes (intervals adjusted for them too, "
                    "Bonferroni):")
        for row in across:
            logger.info(f"  {row['verdict']}")
    best = winner(first, settings.seeds)
    path = None
    if best is not None:
        path = write_winner(study, out / "best_arch.json", best,
                            {r.name: r for r, _, _ in recipes}, tables)
    report = write_report([study], out, url)
    return Verdict(settings.study_name, tuple(labels), tables, across, best, path, report, out)


def write_winner(study: Any, path: Path, best: dict[str, Any], recipes: dict[str, Recipe],
                 tables: dict[str, list[dict[str, Any]]]) -> Path:
    """best_arch.json for the winner `best`: its config, `confirmed` (its row under this run's
    first recipe) and `confirmed_under` (its row under every recipe it has been confirmed
    under, by name). A confirmation under another recipe adds its block and keeps the
    others, so a rerun under one recipe never erases the verdict under another; blocks of
    an earlier winner that is not this one are dropped."""
    under: dict[str, Any] = {}
    old = confirmed_winner(path)
    if old is not None and old.get("trial") == best["trial"]:
        previous = json.loads(path.read_text())["metadata"]
        under = previous.get("confirmed_under") or {old.get("recipe", {}).get("name", "?"): old}
    for name, table in tables.items():
        row = next((r for r in table if r["key"] == best["key"]), None)
        if row is not None:
            under[name] = {**{k: v for k, v in row.items() if k != "baseline"},
                           "protocol": recipes[name].identity(),
                           "recipe": recipes[name].to_dict(), "all": table}
    path = export_trial(study, best["trial"], path)
    data_json = json.loads(path.read_text())
    data_json["metadata"]["confirmed"] = under[next(iter(tables))]
    data_json["metadata"]["confirmed_under"] = under
    write_atomic(path, json.dumps(data_json, indent=2) + "\n")
    return path


def confirm_under(settings: ConfirmSettings, study: Any, url: str, cands: list[Candidate],
                  out: Path, device: Any, n_jobs: int, protocol: Recipe, train: int | None,
                  val: int, n_recipes: int = 1) -> list[dict[str, Any]] | None:
    """One recipe's confirmation: its companion study, units, bank and verdict table
    (written to confirmed.csv for the ground-truth recipe, confirmed-<recipe>.csv else), its
    intervals adjusted for the `n_recipes` read together; None when no_train finds no
    finished unit."""
    spec = protocol_data_spec(settings.data, train, val)
    data = spec.load()  # bad data is refused here, once, before any worker starts
    check_split(study, data.split_id)
    logger.info(f"{protocol.describe()}\n{data.summary()}")
    link = None
    if settings.use_bank:
        bank = Bank(Path(settings.bank)) if settings.bank else Bank.beside(out)
        link = BankLink.make(bank, cands, data, protocol, data_fingerprint(data),
                             f"confirm {settings.study_name}", device_class(device))
    units = unit_order(cands, settings.seeds)
    meta = {"protocol": protocol.identity(), "seeds": settings.seeds,
            "data": {"name": spec.name, "train": len(data.train), "val": len(data.val),
                     "split": data.split_id},
            "candidates": [dataclasses.asdict(c) for c in cands]}
    confirm = open_confirm_study(study, make_storage(url), units, meta, link, protocol,
                                 read_only=settings.no_train)
    if settings.until_decided:  # the first round, then a look a seed
        plan_looks(confirm, settings.max_seeds - settings.seeds + 1)
    looks = planned_looks(confirm)
    ref = next(c.key for c in cands if c.baseline)
    banked = 0
    if link is not None:
        synced = link.sync(confirm)
        banked = len(link.bank.runs(link.keys[ref]))
        from_bank = [r for r in results(confirm) if r["from_bank"]]
        logger.info(f"reference bank {link.bank.path}: {banked} run(s) of {ref} under this "
                    f"recipe and data; {len(from_bank)} reference unit(s) taken from it, not "
                    "trained" + (f"; {synced} run(s) of this confirmation stored in it"
                                 if synced else ""))
        old = link.legacy_runs()
        if old:
            logger.info(f"reference bank: {old} run(s) of these references stored before runs "
                        "were keyed by code version and device (ghostsearch < 0.5); not "
                        "reused, since what made them is unknown")
    plan = seeds_plan(bank_noise(link), sum(not c.baseline for c in cands), settings.effect,
                      results(confirm), settings.seeds, banked, looks)
    if plan:
        logger.info(f"at the noise measured under this recipe (one run's sd {plan['sd']:.2f} "
                    f"points, {plan['df']} df, from {plan['source']}), resolving "
                    f"{plan['effect']:g} point against the reference takes about "
                    f"{plan['seeds']} seeds an arm: {plan['units']} units, about "
                    f"{plan['cpu_hours']:.0f} CPU-hours on a 2-core CPU; --seeds "
                    f"{settings.seeds} gives about ±{plan['half_at_seeds']:.1f} points")
    finished = {(r["key"], r["seed"]) for r in results(confirm)}
    added = unit_count(confirm) - len(units)
    logger.info(f"confirming {len(cands)} architectures x {settings.seeds} seeds = "
                f"{len(units)} units" + (f" (+{added} added by --until-decided)" if added > 0
                                         else "") + ", "
                f"{unit_count(confirm) - len(finished)} to train ({protocol.epochs} epochs on "
                f"{len(data.train)} images each) on {device}, {n_jobs} worker(s)")
    cand_by_key = {c.key: c for c in cands}

    def run_round() -> None:
        if n_jobs == 1:
            run_units(confirm, cand_by_key, data, protocol, out, device=str(device),
                      stale_after_s=settings.stale_after_s, link=link)
        else:
            run_units_parallel(url, confirm.study_name, cand_by_key, spec, protocol, out,
                               n_jobs, device=str(device),
                               stale_after_s=settings.stale_after_s, link=link)

    if settings.no_train:
        done = len(results(confirm))
        left = len({*units, *unfinished(confirm)} - {(r["key"], r["seed"])
                                                    for r in results(confirm)})
        logger.info(f"no training: the verdict of the {done} unit(s) finished so far; "
                    f"{left} left for a call that trains")
        if not done:
            return None
    else:
        run_round()
        if settings.until_decided:
            until_decided(confirm, cands, settings.seeds, settings.max_seeds, run_round, link,
                          n_recipes)
        record_look(confirm, results(confirm), cands)  # a verdict on new seeds is a look
    table = design_verdicts(confirm, cands, results(confirm), recipes=n_recipes)
    for row in table:
        row["recipe"] = protocol.name
    out.mkdir(parents=True, exist_ok=True)
    csv_name = ("confirmed.csv" if protocol.name == DEFAULT_RECIPE
                else f"confirmed-{protocol.name}.csv")
    write_atomic(out / csv_name, pd.DataFrame(table).to_csv(index=False))
    for r in table:
        spread = "" if math.isnan(r["test_std"]) else f" ± {r['test_std']:.2f}"
        logger.info(f"[{protocol.name}] {r['key']}: test {r['test_mean']:.2f}{spread}, val "
                    f"{r['val_mean']:.2f} over {r['seeds']} seed(s)"
                    + (f"; {r['verdict']}" if r.get("verdict") else ""))
    return table


def until_decided(confirm: Any, cands: list[Candidate], seeds: int, max_seeds: int,
                  run_round: Any, link: BankLink | None = None,
                  recipes: int = 1) -> None:
    """After the first round: while the leading candidate (best confirmed validation mean) is
    undecided against the reference, give both one more seed and train them (a reference
    seed the bank holds is taken from it), up to `max_seeds` an arm.

    A verdict is looked at only when every queued unit has finished and both arms have as
    many seeds: a unit still running elsewhere stops the loop (a rerun goes on), and arms left
    uneven (by an interrupted round) are first evened without a look, so the verdicts taken
    stay within the looks of the stored design (`design_verdicts`)."""
    ref = next(c.key for c in cands if c.baseline)
    while True:
        left = unfinished(confirm)
        if left:
            names = ", ".join(f"{k} seed {s}" for k, s in left)
            logger.info(f"{len(left)} unit(s) not finished ({names}): running in another "
                        "worker, or lost (a rerun takes it back); no "
                        "verdict looked at, rerun to go on")
            return
        record_look(confirm, results(confirm), cands)
        table = design_verdicts(confirm, cands, results(confirm), recipes=recipes)
        lead = winner(table, seeds)
        if lead is None:
            return
        have = {r["key"]: r["seeds"] for r in table}
        target = max(have[lead["key"]], have[ref])
        if have[lead["key"]] == have[ref]:  # even arms: a look at the verdict
            if lead.get("decision") in DECIDED:
                logger.info(f"decided at {target} seeds: {lead['key']} {lead['verdict']}")
                return
            if target >= max_seeds:
                logger.info(f"still {lead.get('decision', 'undecided')} at --max-seeds "
                            f"{max_seeds}: {lead.get('verdict', '')}")
                return
            target += 1
            why = f"{lead['key']} is {lead.get('decision', 'undecided')} against {ref}"
        else:
            why = (f"{lead['key']} and {ref} have uneven seeds ({have[lead['key']]} and "
                   f"{have[ref]}), evened before the verdict is looked at")
        new = [(k, s) for k in (lead["key"], ref)
               for s in free_seeds(confirm, k, target - have[k])]
        done = len(results(confirm))  # before queueing: a seed the bank holds counts as done
        for key, seed in new:
            queue_unit(confirm, key, seed, unit_count(confirm), link)
        logger.info(f"{why}: {', '.join(f'{k} seed {s}' for k, s in new)}")
        run_round()
        if len(results(confirm)) == done:
            logger.info("the round finished no unit (their failures are in the report); "
                        "stopped")
            return


__all__ = ["ConfirmSettings", "Verdict", "run_confirm"]
