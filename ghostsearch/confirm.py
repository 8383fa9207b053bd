"""Confirmation: retrain a study's best architectures and the reference GhostNets with a long
protocol over several seeds, and state whether the found architecture beats the reference at
the budget, with a Welch 95% interval.

Each (architecture, seed) is one unit of work: one trial, enqueued once, of a companion Optuna
study `<name>-confirm` in the search's own storage. Workers on any machine that reaches the
storage ask for the next waiting unit, so a cluster splits the work; each unit checkpoints
every epoch under the output folder and resumes from it after an interruption.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from .arch.config import NetConfig
from .arch.counting import analytic_counts
from .errors import ConfigError, StudyError
from .search.estimate import worker_threads
from .search.presets import GROUND_TRUTH_DATA, GROUND_TRUTH_PROTOCOL
from .search.proxy import ProxyProtocol
from .search.settings import DataSpec
from .search.space import space_from_dict
from .search.storage import make_storage
from .search.study import baseline_widths, width_name
from .search.workers import spawn_and_wait
from .stats import DEFAULT_MARGIN, Comparison, compare, pooled_noise, welch

# Named long protocols: (proxy protocol, training images, held-out images)
PROTOCOLS: dict[str, tuple[ProxyProtocol, int, int]] = {
    "ground-truth": (GROUND_TRUTH_PROTOCOL, GROUND_TRUTH_DATA["train_subset"],
                     GROUND_TRUTH_DATA["val_size"]),
}
SUFFIX = "-confirm"


@dataclass(frozen=True)
class Candidate:
    key: str  # "trial-31", "GhostNet 1.2x"
    config: dict[str, Any]  # the deployment NetConfig
    flops: int
    baseline: bool
    proxy_val: float | None = None
    trial: int | None = None


def get_protocol(name: str, epochs: int | None = None) -> tuple[ProxyProtocol, int, int]:
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol {name!r}: unknown (known: {', '.join(PROTOCOLS)})")
    protocol, train, val = PROTOCOLS[name]
    if epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=epochs)
    return protocol, train, val


def candidates(study: optuna.Study, top: int) -> list[Candidate]:
    """The `top` completed feasible trials by proxy validation accuracy, then the reference at
    the widest width within the budget and 1.0x (trained fresh, whatever the study did)."""
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
    widths = dict(baseline_widths(space, settings.get("budget_flops")))
    wanted = [w for name, w in widths.items() if "widest" in name] + [1.0]
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
                       meta: dict[str, Any]) -> optuna.Study:
    """The companion study; its units are enqueued once, by whoever creates it. Rerun with
    more seeds, it enqueues the new seeds' units (to narrow the intervals without retraining
    what is done); a companion made for other architectures, another protocol or more seeds
    is refused."""
    name = study.study_name + SUFFIX
    try:
        confirm = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        confirm.set_user_attr("meta", meta)
        for i, (key, seed) in enumerate(units):
            confirm.enqueue_trial({"unit": i}, user_attrs={"key": key, "seed": seed})
        return confirm
    except optuna.exceptions.DuplicatedStudyError:
        confirm = optuna.load_study(study_name=name, storage=storage)
    old = confirm.user_attrs.get("meta", {})
    if {**old, "seeds": None} != {**meta, "seeds": None}:
        raise StudyError(f"study {name!r} confirms other architectures or another protocol; "
                         "rerun with its original options")
    if meta["seeds"] < old["seeds"]:
        raise StudyError(f"study {name!r} was started with {old['seeds']} seeds; pass --seeds "
                         f"{old['seeds']} or more")
    if meta["seeds"] > old["seeds"]:
        have = {(t.user_attrs.get("key"), t.user_attrs.get("seed"))
                for t in confirm.get_trials(deepcopy=False)}
        for i, (key, seed) in enumerate(units):
            if seed >= old["seeds"] and (key, seed) not in have:
                confirm.enqueue_trial({"unit": i}, user_attrs={"key": key, "seed": seed})
        confirm.set_user_attr("meta", meta)
    return confirm


def _say(line: str) -> None:
    print(line, flush=True)  # workers write to a shared stdout, often a file: no buffering


def run_units(confirm: optuna.Study, cands: dict[str, Candidate], data: Any,
              protocol: ProxyProtocol, out: Path, n_units: int, device: str = "cpu",
              log: Callable[[str], None] = _say) -> None:
    """Train waiting units until none is left; each completed unit records its accuracies.
    `log` gets a line as a unit starts, after each of its epochs and when it is done."""
    from .compress.train import ModelSpec, train_full
    from .search.proxy import proxy_config

    waiting = optuna.trial.TrialState.WAITING
    while confirm.get_trials(deepcopy=False, states=(waiting,)):
        with warnings.catch_warnings():  # ask/tell on a heartbeat storage: units checkpoint
            warnings.simplefilter("ignore", UserWarning)  # themselves, no heartbeat needed
            trial = confirm.ask()
        if "key" not in trial.user_attrs:  # another worker took the last unit
            confirm.tell(trial, state=optuna.trial.TrialState.PRUNED)
            break
        unit = trial.suggest_int("unit", 0, max(0, n_units - 1))
        key, seed = trial.user_attrs["key"], trial.user_attrs["seed"]
        cfg = NetConfig.from_dict(cands[key].config)
        pcfg = proxy_config(cfg, data, protocol)
        spec = ModelSpec(config=pcfg.to_dict(), num_classes=data.num_classes)
        folder = out / "confirm" / f"{key.replace(' ', '_')}-seed{seed}"
        tag = f"unit {unit + 1}/{n_units}: {key}, seed {seed}"
        log(f"{tag}: started")
        try:
            record = train_full(spec, data, protocol, folder, seed=seed, device=device,
                                log=lambda m, tag=tag: log(f"{tag}: {m}"))
        except KeyboardInterrupt:
            confirm.tell(trial, state=optuna.trial.TrialState.FAIL)
            confirm.enqueue_trial({"unit": unit}, user_attrs={"key": key, "seed": seed})
            raise
        for k in ("val_acc", "test_acc", "train_seconds"):
            trial.set_user_attr(k, record[k])
        confirm.tell(trial, record["val_acc"])
        log(f"{tag}: done, val {record['val_acc']:.2f}%, test {record['test_acc']:.2f}%, "
            f"{record['train_seconds'] / 60:.1f} min")


def _unit_worker(url: str, name: str, cands: dict[str, Candidate], data: DataSpec,
                 protocol: ProxyProtocol, out: Path, n_units: int, device: str,
                 threads: int) -> None:
    try:  # an interrupted unit re-enqueues itself; the parent reports, no traceback here
        torch.set_num_threads(threads)
        confirm = optuna.load_study(study_name=name, storage=make_storage(url))
        run_units(confirm, cands, data.load(progress=False), protocol, out, n_units,
                  device=device)
    except KeyboardInterrupt:
        return


def run_units_parallel(url: str, name: str, cands: dict[str, Candidate], data: DataSpec,
                       protocol: ProxyProtocol, out: Path, n_units: int, n_jobs: int,
                       device: str = "cpu") -> None:
    """`run_units` in `n_jobs` spawned processes sharing the companion study at `url`, each
    loading the data itself (from the decoded cache) and, on a CPU, taking its share of the
    cores: on 2 cores two one-thread workers finish about 1.8x the units of one two-thread
    process."""
    threads = worker_threads(n_jobs)
    spawn_and_wait(_unit_worker, [(url, name, cands, data, protocol, out, n_units, device,
                                   threads)] * n_jobs, "confirm workers")


def confirmed_table(study: optuna.Study) -> list[dict[str, Any]] | None:
    """The verdict rows of a study's confirmation, from its companion study in the same
    storage, or None when it has none (or no finished unit)."""
    try:
        confirm = optuna.load_study(study_name=study.study_name + SUFFIX,
                                    storage=study._storage)
    except KeyError:
        return None
    cands = [Candidate(**c) for c in confirm.user_attrs.get("meta", {}).get("candidates", [])]
    rows = results(confirm)
    return verdicts(cands, rows) if cands and rows else None


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


def confirm_summary(study: optuna.Study) -> dict[str, Any] | None:
    """A study's confirmation at a glance: its protocol and seeds, units done of all, the
    wall time spent on units (interrupted ones included) and their summed training time."""
    try:
        confirm = optuna.load_study(study_name=study.study_name + SUFFIX,
                                    storage=study._storage)
    except KeyError:
        return None
    trials = [t for t in confirm.get_trials(deepcopy=False) if "key" in t.user_attrs]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {**confirm.user_attrs.get("meta", {}),
            "units": len({(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials}),
            "units_done": len(done),
            "wall_seconds": study_seconds(confirm),
            "train_seconds": sum(t.user_attrs.get("train_seconds", 0.0) for t in done)}


def results(confirm: optuna.Study) -> list[dict[str, Any]]:
    """One row per finished unit: key, seed, accuracies."""
    return [{"key": t.user_attrs["key"], "seed": t.user_attrs["seed"],
             "val_acc": t.user_attrs["val_acc"], "test_acc": t.user_attrs["test_acc"]}
            for t in confirm.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))]


def verdicts(cands: list[Candidate], rows: list[dict[str, Any]],
             margin: float = DEFAULT_MARGIN, effect: float = 1.0) -> list[dict[str, Any]]:
    """Mean and std over seeds of each candidate, and against the reference at the budget
    width (the first baseline): the test-accuracy difference with its interval from the
    run-to-run noise pooled over every arm, adjusted for the number of found candidates
    (Bonferroni), the verdict in words (`stats.compare`), and Welch's interval as a check."""
    import statistics

    by = {c.key: [r for r in rows if r["key"] == c.key] for c in cands}
    ref = next((c for c in cands if c.baseline), None)
    noise = pooled_noise({k: [r["test_acc"] for r in rs] for k, rs in by.items() if rs})
    m = max(1, sum(1 for c in cands if not c.baseline and by[c.key]))
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
            cmp = compare(test, ref_test, noise, m=m, margin=margin, effect=effect)
            _, welch_half = welch(test, ref_test)
            row.update(diff_vs_ref=cmp.diff, ci_half=cmp.half, noise_sd=noise.sd,
                       noise_df=noise.df, comparisons=m, welch_half=welch_half,
                       seeds_needed=cmp.seeds_needed, decision=cmp.verdict,
                       verdict=verdict_text(c, ref, cmp))
        out.append(row)
    return out


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
