"""Confirmation: retrain a study's best architectures and the reference GhostNets with a long
protocol over several seeds, and state whether the found architecture beats the reference at
the budget, with a 95% interval from the run-to-run noise pooled over the compared arms.

Each (architecture, seed) is one unit of work: one trial, enqueued once, of a companion Optuna
study `<name>-confirm` in the search's own storage. Workers on any machine that reaches the
storage ask for the next waiting unit, so a cluster splits the work; each unit checkpoints
every epoch under the output folder and resumes from it after an interruption; the units
run through `units.py`, the runner the ground truth shares. A reference
run that the reference bank holds (`bank.py`) is added as a finished unit instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from . import units
from .arch.config import NetConfig
from .arch.counting import analytic_counts
from .bank import Bank, model_key, model_legacy_key
from .errors import ConfigError, StudyError
from .log import logger
from .search.estimate import worker_threads
from .search.proxy import proxy_config
from .search.settings import DataSpec
from .search.storage import make_storage
from .search.study import REFERENCE_WIDTHS_KEY, baseline_widths, width_name
from .search.workers import spawn_and_wait, stop_on_sigterm
from .spaces.limits import Limits
from .spaces.space import space_from_dict
from .stats import (
    DEFAULT_MARGIN,
    LEVEL,
    Comparison,
    compare,
    pooled_noise,
    seeds_needed,
    t_quantile,
    welch,
)
from .train.full import ModelSpec, run_spec, train_full
from .train.recipe import GROUND_TRUTH_DATA, Recipe, load_recipe
from .train.runspec import RunSpec, unit_folder
from .units import STALE_AFTER_S

DEFAULT_RECIPE = "ground-truth"  # the recipe whose companion and folders keep the plain names
SUFFIX = "-confirm"


def companion_name(study_name: str, recipe: Recipe) -> str:
    """The companion study of a confirmation under `recipe`: `<study>-confirm` for the
    ground-truth recipe (the name confirmations had before recipes were data), else
    `<study>-confirm-<recipe name>`."""
    if recipe.name in ("", DEFAULT_RECIPE):
        return study_name + SUFFIX
    return f"{study_name}{SUFFIX}-{recipe.name}"


def unit_checkpoint(root: Path, key: str, run: RunSpec) -> Path:
    """A unit's folder: `runspec.unit_folder` (label, seed and run key), or the folder of
    ghostsearch < 0.5 (`<key>-seed<N>`) while it holds a checkpoint, so that a unit
    interrupted under the old layout resumes instead of starting over."""
    legacy = root / f"{key.replace(' ', '_')}-seed{run.seed}"
    if (legacy / "last.pt").exists():
        return legacy
    return unit_folder(root, key, run)


def units_folder(out: Path, recipe: Recipe) -> Path:
    """Where the units of a confirmation under `recipe` checkpoint (out/confirm for the
    ground-truth recipe, out/confirm-<recipe name> else)."""
    if recipe.name in ("", DEFAULT_RECIPE):
        return Path(out) / "confirm"
    return Path(out) / f"confirm-{recipe.name}"
@dataclass(frozen=True)
class Candidate:
    key: str  # "trial-31", "GhostNet 1.2x"
    config: dict[str, Any]  # the deployment NetConfig
    flops: int
    baseline: bool
    proxy_val: float | None = None
    trial: int | None = None


@dataclass(frozen=True)
class BankLink:
    """A confirmation's tie to the reference bank: the run key of each reference (by candidate
    key) and the label its new runs are stored under."""

    bank: Bank
    keys: dict[str, str]
    source: str
    legacy: dict[str, str] = dataclasses.field(default_factory=dict)  # keys before RunSpec

    @classmethod
    def make(cls, bank: Bank, cands: list[Candidate], data: Any, protocol: Recipe,
             data_id: str, source: str, device: str = "cpu") -> BankLink:
        refs = [(c.key, NetConfig.from_dict(c.config)) for c in cands if c.baseline]
        return cls(bank, {k: model_key(cfg, data, protocol, data_id, device) for k, cfg in refs},
                   source, {k: model_legacy_key(cfg, data, protocol, data_id) for k, cfg in refs})

    def legacy_runs(self) -> int:
        """Runs of these references under this recipe and data stored before runs were keyed
        by RunSpec: their code and device are unknown, so they are not reused."""
        return sum(len(self.bank.runs(k)) for k in self.legacy.values())

    def stored(self, key: str, seed: int) -> dict[str, Any] | None:
        return self.bank.runs(self.keys[key]).get(seed) if key in self.keys else None

    def store(self, key: str, seed: int, record: dict[str, Any], **extra: Any) -> bool:
        """Store a reference's finished run (`train_full`'s record, or a row of `results`)."""
        if key not in self.keys:
            return False
        curve = [h["val_acc"] for h in record["history"]] if "history" in record else None
        return self.bank.add(self.keys[key], key, seed, record["val_acc"], record["test_acc"],
                             record.get("train_seconds", 0.0), self.source, val_curve=curve,
                             **extra)

    def sync(self, confirm: optuna.Study) -> int:
        """Store the references' runs that this confirmation trained and the bank lacks (runs
        made before the bank existed; their thread count was not kept), those only that this
        code made under these keys (their RunSpec key is the bank's); returns how many were
        stored."""
        return sum(self.store(r["key"], r["seed"], r, threads="",
                              finished_at=r["finished_at"])
                   for r in results(confirm)
                   if not r["from_bank"] and r.get("run_key") == self.keys.get(r["key"]))


def queue_unit(confirm: optuna.Study, key: str, seed: int, unit: int,
               link: BankLink | None = None, **attrs: Any) -> bool:
    """Queue one (architecture, seed) unit, or, when the bank holds that reference run, add it
    as a finished unit marked `from_bank` (nothing trained). True when it was queued."""
    run = link.stored(key, seed) if link is not None else None
    if run is None:
        units.queue(confirm, key, seed, unit, **attrs)
        return True
    units.add_finished(confirm, key, seed, unit, run["val_acc"], val_acc=run["val_acc"],
                       test_acc=run["test_acc"], train_seconds=0.0, from_bank=True,
                       bank_train_seconds=run["train_seconds"])
    return False


def bank_noise(link: BankLink | None) -> dict[str, Any] | None:
    """What one run under this confirmation's recipe and data varies by and costs, from the
    reference bank: the sd of one run's test accuracy pooled over the references' banked
    seeds (with its degrees of freedom), and the median CPU-seconds of a banked run (its wall
    time by its threads). None when the bank holds no reference with two seeds under them."""
    if link is None:
        return None
    arms: dict[str, list[float]] = {}
    cpu_s: list[float] = []
    for name, key in link.keys.items():
        for run in link.bank.runs(key).values():
            arms.setdefault(name, []).append(float(run["test_acc"]))
            threads = int(run["threads"]) if str(run.get("threads") or "").isdigit() else 1
            cpu_s.append(float(run["train_seconds"]) * threads)
    noise = pooled_noise(arms)
    if not noise.known:
        return None
    return {"sd": noise.sd, "df": noise.df, "unit_cpu_s": statistics.median(cpu_s),
            "source": f"the reference bank, {len(cpu_s)} runs of {len(arms)} reference(s)"}


def seeds_plan(known: dict[str, Any] | None, n_candidates: int, effect: float = 1.0,
               done: list[dict[str, Any]] | None = None, seeds: int = 3,
               banked: int = 0, looks: int = 1) -> dict[str, Any] | None:
    """Seeds an arm that would resolve a difference of `effect` points between a candidate
    and the reference, at the `known` noise of the recipe (`bank_noise`), or the noise pooled
    over this confirmation's finished units when they hold more degrees of freedom, and what
    that costs in CPU-hours for the candidates and the reference (less its `banked` runs,
    which the bank already holds). None while no noise is measured under the recipe."""
    if known is None:
        return None
    sd, df, source = known["sd"], known["df"], known["source"]
    if done:
        arms: dict[str, list[float]] = {}
        for r in done:
            arms.setdefault(r["key"], []).append(r["test_acc"])
        noise = pooled_noise(arms)
        if noise.known and noise.df > df:
            sd, df, source = noise.sd, noise.df, "this confirmation"
    m = max(1, n_candidates) * max(1, looks)
    n = seeds_needed(sd, effect, m=m)
    units = n * n_candidates + max(0, n - banked)
    half = t_quantile(1 - 0.025 / m, df) * sd * math.sqrt(2 / seeds)  # at `seeds` an arm
    return {"sd": sd, "df": df, "source": source, "effect": effect, "seeds": n,
            "units": units, "cpu_hours": units * known["unit_cpu_s"] / 3600,
            "half_at_seeds": half}


def get_protocol(name: str | Recipe,
                 epochs: int | None = None) -> tuple[Recipe, int | None, int]:
    """A recipe (or one by name or file), its training images (None: all after the hold-out)
    and the held-out validation images of confirmations (the ground truth's 2,000)."""
    recipe = load_recipe(name) if isinstance(name, str) else name
    if epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=epochs)
    return recipe, recipe.train_images, GROUND_TRUTH_DATA["val_size"]


def candidates(study: optuna.Study, top: int, with_1x: bool = True) -> list[Candidate]:
    """The `top` completed feasible trials by proxy validation accuracy, then the reference at
    the widest width within the study's limits (FLOPs, and latency when it had a limit) and
    1.0x (unless `with_1x` is False), trained under the confirmation's recipe whatever the
    study did."""
    if top < 1:
        raise ConfigError(f"--top {top}: must be >= 1")
    done = [t for t in study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("val_acc") is not None
            and not t.user_attrs.get("baseline")]
    if not done:
        raise StudyError(f"study {study.study_name!r} has no completed trial within its limits "
                         "to confirm; run or resume the search first")
    done.sort(key=lambda t: (-t.user_attrs["val_acc"], t.number))
    out = [Candidate(f"trial-{t.number}", t.user_attrs["config"], t.user_attrs["flops"],
                     False, t.user_attrs["val_acc"], t.number) for t in done[:top]]
    settings = study.user_attrs.get("settings", {})
    space = space_from_dict(study.user_attrs["space"], study.study_name)
    stored = study.user_attrs.get(REFERENCE_WIDTHS_KEY)  # what the study itself compared with
    widths = (dict(stored) if stored is not None else  # a study made before they were stored
              dict(baseline_widths(space, Limits(settings.get("budget_flops"), band=0))))
    wanted = [w for name, w in widths.items() if "widest" in name] + ([1.0] if with_1x else [])
    for w in dict.fromkeys(wanted):
        if w not in widths.values():
            continue
        cfg = space.build_config(space.reference_params(w))
        out.append(Candidate(width_name(w), cfg.to_dict(), analytic_counts(cfg).flops, True))
    return out


def unit_order(cands: list[Candidate], seeds: int) -> list[tuple[str, int]]:
    """Every (architecture, seed) unit, in the order a partial confirmation answers best: the
    verdict's inputs first (the top architecture and the references, all their seeds), then
    the other architectures; seed by seed within each group, so that every architecture of a
    group has a first run before any has a second."""
    first = [cands[0].key] + [c.key for c in cands[1:] if c.baseline]
    rest = [c.key for c in cands if c.key not in first]
    return [(k, s) for group in (first, rest) for s in range(seeds) for k in group]


def open_confirm_study(study: optuna.Study, storage: Any, units: list[tuple[str, int]],
                       meta: dict[str, Any], link: BankLink | None = None,
                       recipe: Recipe | None = None, read_only: bool = False) -> optuna.Study:
    """The companion study; its units are enqueued once, by whoever creates it. Rerun with
    more seeds, it enqueues the new seeds' units (to narrow the intervals without retraining
    what is done); a companion made for other architectures, another protocol or more seeds
    is refused. Reference runs that the bank of `link` holds are added finished instead of
    queued. `read_only` (a verdict of what is done: --no-train) changes nothing in a companion
    that exists: fewer seeds are not refused and more are not queued (a look at what is
    done never leaves units behind for a later call to train unasked)."""
    name = companion_name(study.study_name, recipe or Recipe(name=DEFAULT_RECIPE))
    try:
        confirm = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        confirm.set_user_attr("meta", meta)
        confirm.set_user_attr(DESIGN_KEY, Design.of(meta).to_dict())
        for i, (key, seed) in enumerate(units):
            queue_unit(confirm, key, seed, i, link)
        return confirm
    except optuna.exceptions.DuplicatedStudyError:
        confirm = optuna.load_study(study_name=name, storage=storage)
    old = confirm.user_attrs.get("meta", {})
    # the same recipe and data; the arms asked may leave out arms the companion holds (a
    # reference over the budget, with --budget-reference-only), never add new ones
    asked, held = meta.get("candidates", []), old.get("candidates", [])
    same = {**old, "seeds": None, "candidates": None} == {**meta, "seeds": None,
                                                          "candidates": None}
    if not same or any(c not in held for c in asked):
        raise StudyError(f"study {name!r} confirms other architectures or another protocol; "
                         "rerun with its original options")
    meta = {**meta, "candidates": held}
    if read_only:
        return confirm
    if meta["seeds"] < old["seeds"]:
        raise StudyError(f"study {name!r} was started with {old['seeds']} seeds; pass --seeds "
                         f"{old['seeds']} or more")
    if meta["seeds"] > old["seeds"]:
        have = {(t.user_attrs.get("key"), t.user_attrs.get("seed"))
                for t in confirm.get_trials(deepcopy=False)}
        for i, (key, seed) in enumerate(units):
            if seed >= old["seeds"] and (key, seed) not in have:
                queue_unit(confirm, key, seed, i, link)
        confirm.set_user_attr("meta", meta)
    return confirm


def free_seeds(confirm: optuna.Study, key: str, n: int) -> list[int]:
    """The `n` lowest seeds no unit of `key` has used (a unit failed for good keeps its
    seed, so the next seed is not simply the count of finished ones)."""
    used = {t.user_attrs["seed"] for t in confirm.get_trials(deepcopy=False)
            if t.user_attrs.get("key") == key}
    out, seed = [], 0
    while len(out) < n:
        if seed not in used:
            out.append(seed)
        seed += 1
    return out


def run_units(confirm: optuna.Study, cands: dict[str, Candidate], data: Any,
              protocol: Recipe, out: Path, device: str = "cpu",
              log: Callable[[str], None] = logger.info,
              stale_after_s: float = STALE_AFTER_S, link: BankLink | None = None) -> None:
    """Train the companion's waiting units through the unit runner (`units.run`: leases,
    heartbeats, retries, units taken back from lost workers, never trained twice); each
    completed unit records its accuracies and run key, and a reference's run goes into the
    bank of `link`. `log` gets a line as a unit starts, after each of its epochs and when it
    is done."""

    def train(key: str, seed: int, beat: units.Beat, step_beat: units.StepBeat) -> dict:
        cfg = NetConfig.from_dict(cands[key].config)
        spec = ModelSpec(config=proxy_config(cfg, data, protocol).to_dict(),
                         num_classes=data.num_classes)
        folder = unit_checkpoint(units_folder(out, protocol), key,
                                 run_spec(spec, data, protocol, seed, device))
        return train_full(spec, data, protocol, folder, seed=seed, device=device, log=beat,
                          on_step=step_beat)

    def bank(unit: units.Unit, record: dict[str, Any]) -> None:
        if link is not None and link.store(*unit, record):
            log(f"{unit[0]}, seed {unit[1]}: stored in the reference bank {link.bank.path}")

    units.run(confirm, train, on_done=bank,
              done=lambda: {(r["key"], r["seed"]) for r in results(confirm)},
              keep=("val_acc", "test_acc", "train_seconds", "run_key"), log=log,
              stale_after_s=stale_after_s)


def _unit_worker(url: str, name: str, cands: dict[str, Candidate], data: DataSpec,
                 protocol: Recipe, out: Path, device: str, threads: int,
                 stale_after_s: float = STALE_AFTER_S, link: BankLink | None = None) -> None:
    try:  # an interrupted unit re-enqueues itself; the parent reports, no traceback here
        stop_on_sigterm()
        torch.set_num_threads(threads)
        confirm = optuna.load_study(study_name=name, storage=make_storage(url))
        run_units(confirm, cands, data.load(progress=False), protocol, out, device=device,
                  stale_after_s=stale_after_s, link=link)
    except KeyboardInterrupt:
        return


def run_units_parallel(url: str, name: str, cands: dict[str, Candidate], data: DataSpec,
                       protocol: Recipe, out: Path, n_jobs: int,
                       device: str = "cpu", stale_after_s: float = STALE_AFTER_S,
                       link: BankLink | None = None) -> None:
    """`run_units` in `n_jobs` spawned processes sharing the companion study at `url`, each
    loading the data itself (from the decoded cache) and, on a CPU, taking its share of the
    cores: on 2 cores two one-thread workers finish about 1.8x the units of one two-thread
    process."""
    threads = worker_threads(n_jobs)
    spawn_and_wait(_unit_worker, [(url, name, cands, data, protocol, out, device, threads,
                                   stale_after_s, link)] * n_jobs,
                   "confirm workers")


def companion(study: optuna.Study, storage: Any,
              recipe: Recipe | None = None) -> optuna.Study | None:
    """The confirmation study of `study` under `recipe` (default: the ground-truth recipe) in
    `storage` (the URL or storage `study` was loaded from), or None when it has none."""
    if isinstance(storage, str):
        storage = make_storage(storage)
    name = companion_name(study.study_name, recipe or Recipe(name=DEFAULT_RECIPE))
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def confirmed_table(study: optuna.Study, storage: Any) -> list[dict[str, Any]] | None:
    """The verdict rows of a study's confirmation, from its companion study in `storage`, or
    None when it has none (or no finished unit)."""
    confirm = companion(study, storage)
    if confirm is None:
        return None
    cands = [Candidate(**c) for c in confirm.user_attrs.get("meta", {}).get("candidates", [])]
    rows = results(confirm)
    return design_verdicts(confirm, cands, rows) if cands and rows else None


LOOKS_KEY = "looks"  # companion attribute of ghostsearch < 0.6: the looks planned
LOOKS_TAKEN_KEY = "looks_taken"  # companion study attribute: the seeds an arm at each look
DESIGN_KEY = "design"  # companion study attribute: the confirmation's `Design`


@dataclass(frozen=True)
class Design:
    """The sequential design of a confirmation, stored in its companion study when the
    confirmation is created and read by every look, whatever entry point or rerun takes it
    (the command, `run_confirm`, the report): the most looks planned (--until-decided's
    first round and one look a seed after it; 1 without it), the confidence level and the
    equivalence margin of every verdict, and the arms compared (the found candidates and the
    reference at the budget, over whose runs the noise is pooled)."""

    max_looks: int = 1
    level: float = LEVEL
    margin: float = DEFAULT_MARGIN
    arms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "arms": list(self.arms)}

    @classmethod
    def of(cls, meta: dict[str, Any], max_looks: int = 1) -> Design:
        """The design of a companion whose `meta` lists its candidates (defaults else)."""
        cands = [Candidate(**c) for c in meta.get("candidates", [])]
        return cls(max_looks=max_looks, arms=tuple(c.key for c in compared_arms(cands)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Design:
        return cls(int(d["max_looks"]), float(d["level"]), float(d["margin"]),
                   tuple(d["arms"]))


def design(confirm: optuna.Study) -> Design:
    """The companion's stored design; for a companion made before designs were stored, the
    one it was run under (its planned looks, the default level and margin)."""
    stored = confirm.user_attrs.get(DESIGN_KEY)
    if stored is not None:
        return Design.from_dict(stored)
    return Design.of(confirm.user_attrs.get("meta", {}),
                     int(confirm.user_attrs.get(LOOKS_KEY, 1)))


def plan_looks(confirm: optuna.Study, looks: int) -> Design:
    """Raise the design's planned looks to `looks` (--until-decided asked for more rounds
    than the design planned); the stored design, which every later look reads."""
    d = design(confirm)
    if looks > d.max_looks:
        d = dataclasses.replace(d, max_looks=looks)
        confirm.set_user_attr(DESIGN_KEY, d.to_dict())
    return d


def planned_looks(confirm: optuna.Study) -> int:
    """The looks a confirmation's every verdict is adjusted for: the most of the looks its
    design planned and the looks already taken (a rerun with more --seeds is a look too).
    Every verdict, in the report too, uses it."""
    taken = confirm.user_attrs.get(LOOKS_TAKEN_KEY, [])
    return max(design(confirm).max_looks, len(taken))


def design_verdicts(confirm: optuna.Study, cands: list[Candidate], rows: list[dict[str, Any]],
                    recipes: int = 1, effect: float = 1.0) -> list[dict[str, Any]]:
    """`verdicts` under the companion's stored design: its level and margin, adjusted for
    its looks (`planned_looks`) and for the `recipes` read together."""
    d = design(confirm)
    return verdicts(cands, rows, margin=d.margin, effect=effect, looks=planned_looks(confirm),
                    recipes=recipes, level=d.level)


def record_look(confirm: optuna.Study, rows: list[dict[str, Any]],
                arms: list[Candidate]) -> int:
    """Count a look at the verdict of `rows` when the compared arms have even seeds (once per
    seed count: rerunning on the same units is the same look; arms left uneven by an
    interrupted round are evened before a look, see `until_decided`); returns the looks the
    verdict must now be adjusted for."""
    have = {c.key: sum(1 for r in rows if r["key"] == c.key) for c in compared_arms(arms)}
    state = sorted([k, n] for k, n in have.items())
    taken = list(confirm.user_attrs.get(LOOKS_TAKEN_KEY, []))
    if state not in taken and min(have.values(), default=0) > 0 and len(set(have.values())) == 1:
        taken.append(state)
        confirm.set_user_attr(LOOKS_TAKEN_KEY, taken)
    return planned_looks(confirm)


def winner(table: list[dict[str, Any]], seeds: int) -> dict[str, Any] | None:
    """The confirmed winner: of the found architectures with every seed done, the best by
    mean validation accuracy (the test set only reports)."""
    found = [r for r in table if not r["baseline"] and r["seeds"] >= seeds]
    return max(found, key=lambda r: r["val_mean"]) if found else None


def busy_seconds(intervals: list[tuple[datetime.datetime, datetime.datetime]]) -> float:
    """Wall time during which at least one interval was running: the length of their union,
    so pauses between resumed runs are not counted and parallel workers are counted once."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def study_seconds(study: optuna.Study) -> float:
    """Wall time of a study's trials (the union of their start-to-end intervals)."""
    return busy_seconds([(t.datetime_start, t.datetime_complete)
                         for t in study.get_trials(deepcopy=False)
                         if t.datetime_start and t.datetime_complete])


def confirm_summary(study: optuna.Study, storage: Any) -> dict[str, Any] | None:
    """A study's confirmation at a glance: its protocol and seeds, units done of all (and how
    many of them came from the reference bank), the wall time spent on units (interrupted
    ones included) and their summed training time (banked runs cost nothing here)."""
    confirm = companion(study, storage)
    if confirm is None:
        return None
    trials = [t for t in confirm.get_trials(deepcopy=False) if "key" in t.user_attrs]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {**confirm.user_attrs.get("meta", {}),
            "units": len({(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials}),
            "units_done": len(done),
            "units_from_bank": sum(bool(t.user_attrs.get("from_bank")) for t in done),
            "wall_seconds": study_seconds(confirm),
            "train_seconds": sum(t.user_attrs.get("train_seconds", 0.0) for t in done)}


def results(confirm: optuna.Study) -> list[dict[str, Any]]:
    """One row per finished unit: key, seed, accuracies (a unit finished twice, by a worker
    thought lost, counts once: its first result)."""
    return [{"key": k, "seed": s, "val_acc": t.user_attrs["val_acc"],
             "test_acc": t.user_attrs["test_acc"],
             "train_seconds": t.user_attrs.get("train_seconds", 0.0),
             "from_bank": bool(t.user_attrs.get("from_bank")),
             "run_key": t.user_attrs.get("run_key"),
             "finished_at": (t.datetime_complete.isoformat(timespec="seconds")
                             if t.datetime_complete else None)}
            for (k, s), t in units.finished(confirm).items()]


def verdicts(cands: list[Candidate], rows: list[dict[str, Any]],
             margin: float = DEFAULT_MARGIN, effect: float = 1.0,
             looks: int = 1, recipes: int = 1, level: float = LEVEL) -> list[dict[str, Any]]:
    """Mean and std over seeds of each candidate, and against the reference at the budget
    width (the first baseline): the test-accuracy difference with its interval from the
    run-to-run noise pooled over the compared arms (`compared_arms`), adjusted (Bonferroni)
    for the number of found candidates times `looks`, the verdicts --until-decided may take
    before it stops (a verdict checked after every added seed would otherwise say "beats"
    more often than 5% of the time when nothing differs), times `recipes`, the recipes an
    across-recipe verdict reads together (`verdict.across_recipes`); the verdict in words
    (`stats.compare`), and Welch's interval as a check."""
    import statistics

    by = {c.key: [r for r in rows if r["key"] == c.key] for c in cands}
    ref = next((c for c in cands if c.baseline), None)
    noise = pooled_noise({c.key: [r["test_acc"] for r in by[c.key]]
                          for c in compared_arms(cands)})
    m = (max(1, sum(1 for c in cands if not c.baseline and by[c.key])) * max(1, looks)
         * max(1, recipes))
    out = []
    for c in cands:
        rs = by[c.key]
        if not rs:
            continue
        test, val = [r["test_acc"] for r in rs], [r["val_acc"] for r in rs]
        row = {"key": c.key, "baseline": c.baseline, "MFLOPs": c.flops / 1e6, "seeds": len(rs),
               "test_mean": statistics.fmean(test),
               "test_std": statistics.stdev(test) if len(test) > 1 else math.nan,
               "val_mean": statistics.fmean(val),
               "val_std": (statistics.stdev(val) if len(val) > 1
                           and not any(math.isnan(x) for x in val) else math.nan),
               "proxy_val": c.proxy_val, "trial": c.trial}
        if ref is not None and c.key != ref.key and by[ref.key]:
            ref_test = [r["test_acc"] for r in by[ref.key]]
            cmp = compare(test, ref_test, noise, m=m, level=level, margin=margin,
                          effect=effect)
            _, welch_half = welch(test, ref_test)
            row.update(diff_vs_ref=cmp.diff, ci_half=cmp.half, noise_sd=noise.sd,
                       noise_df=noise.df, comparisons=m, looks=max(1, looks),
                       welch_half=welch_half, seeds_needed=cmp.seeds_needed,
                       decision=cmp.verdict, verdict=verdict_text(c, ref, cmp)
                       + (f" (interval adjusted for up to {looks} looks)"
                          if looks > 1 and not math.isnan(cmp.half) else ""))
        out.append(row)
    return out


def compared_arms(cands: list[Candidate]) -> list[Candidate]:
    """The arms whose runs the verdict's noise is pooled over: the found candidates and the
    reference at the budget (the first baseline). Other references (over the budget, such as
    GhostNet 1.0x) are reported, never pooled into someone else's interval."""
    ref = next((c for c in cands if c.baseline), None)
    return [c for c in cands if not c.baseline or c is ref]


def verdict_text(c: Candidate, ref: Candidate, cmp: Comparison) -> str:
    """The verdict in words; "beats" and "loses to" only when the adjusted 95% interval
    excludes 0."""
    target = f"{ref.key} ({ref.flops / 1e6:.0f} MFLOPs)"
    at = f"at {c.flops / 1e6:.0f} MFLOPs"
    d, h = cmp.diff, cmp.half
    if cmp.verdict == "one seed":
        return f"{d:+.2f} points against {target} {at}: one seed, no interval"
    if cmp.verdict == "no noise estimate":
        return f"{d:+.2f} points against {target} {at}: no run-to-run spread to measure noise"
    if cmp.verdict == "beats":
        return f"beats {target} by {d:.2f} ± {h:.2f} points {at}"
    if cmp.verdict == "loses to":
        return f"loses to {target} by {-d:.2f} ± {h:.2f} points {at}"
    if cmp.verdict == "equivalent":
        return (f"equivalent to {target} within ±{cmp.margin:g} points: {d:+.2f} ± {h:.2f} "
                f"{at}")
    return (f"inconclusive against {target}: {d:+.2f} ± {h:.2f} points {at}; about "
            f"{cmp.seeds_needed} seeds an arm would resolve 1 point at this noise")
