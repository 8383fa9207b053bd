"""The search as one call: `run_search(settings)` does what `ghostsearch search` does (load
and check the data, estimate the time on a CPU, train the trials, measure the final Pareto
set, write the report, run.json and best_arch.json) and returns a `SearchResult`;
`search_settings` builds the settings the way the command's defaults do."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ..arch.budget import format_flops, parse_budget
from ..arch.counting import analytic_counts
from ..errors import ConfigError, StudyError
from ..latency.table import LatencyTable
from ..log import logger
from ..provenance import provenance, write_atomic
from ..report.export import confirmed_winner, export_best
from ..report.frame import summary_table
from ..report.measure import measure_front
from ..report.render import write_report
from ..search.estimate import (
    busy_warning,
    default_n_jobs,
    estimate_search,
    format_duration,
    trial_threads,
)
from ..search.prescreen import PRESCREEN_KEY, ensure_prescreen, picked_params
from ..search.presets import PRESETS, Preset, get_preset
from ..search.settings import DataSpec, SearchSettings
from ..search.storage import default_storage, study_dir
from ..search.study import (
    baseline_widths,
    best_feasible,
    open_study,
    replace_unstarted,
    width_name,
)
from ..search.workers import run_trials
from ..spaces.limits import DEFAULT_BAND, Limits
from ..spaces.sampler import TPE_STARTUP
from ..spaces.space import SearchSpace, load_space
from ..train.loop import pick_device
from ..train.recipe import Recipe, load_recipe

# a CPU estimate above this many seconds is announced as a warning before the search starts
LONG_SEARCH_S = 3600


@dataclass(frozen=True)
class SearchResult:
    """What a search left: its study, where it wrote, the trained trials and the best one."""

    settings: SearchSettings
    out: Path  # report.md, report.html, plots, trials.csv, pareto.csv, run.json, best_arch.json
    study: optuna.Study
    table: pd.DataFrame  # one row per trained trial, baselines included
    best: dict[str, Any] | None  # the best trial within the limits: number, figures, baseline
    best_path: Path | None  # best_arch.json: the best, or the confirmed winner it keeps
    kept: dict[str, Any] | None  # the confirmed winner that best_arch.json keeps, if any
    report: dict[str, Path]
    interrupted: bool = False


def resolve_preset(name: str, device: str) -> tuple[Preset, str]:
    """The preset and why it was chosen: `auto` follows the device, since the gpu protocol on
    a CPU takes a day."""
    if name != "auto":
        return get_preset(name), "chosen with --preset"
    dev = pick_device(device)
    if dev.type == "cuda":
        return get_preset("gpu"), f"auto: {dev} found; --preset cpu for the CPU protocol"
    return get_preset("cpu"), ("auto: no CUDA device, so the protocol measured on a 2-core "
                               "CPU; --preset gpu for the GPU one")


def latency_of(width: float, table: str | None, space: SearchSpace) -> float:
    """The latency limit that `table` predicts for the reference GhostNet of `width` (rounded
    up to 4 decimals, so that the reference meets its own limit): a limit relative to
    GhostNet, unaffected by how fast the machine was when the table was timed."""
    if table is None:
        raise ConfigError("--latency-of needs --latency-table FILE (make one with ghostsearch "
                          "table)")
    cfg = space.reference_config(width, "latency-of")
    return math.ceil(LatencyTable.load(table).predict(cfg) * 1e4) / 1e4


def search_settings(budget: str | int = "200MFLOPs", *, space: str | SearchSpace = "ghostnet",
                    data: DataSpec | None = None, preset: str = "auto",
                    recipe: Recipe | str | None = None, study_name: str | None = None,
                    out: str | Path | None = None, storage: str | None = None,
                    device: str = "auto", n_jobs: int | None = None,
                    trials: int | None = None, prescreen: str | None = None,
                    pool: int | None = None, top: int | None = None,
                    pruner: str | None = None, baselines: bool = True,
                    latency_ms: float | None = None, latency_of_width: float | None = None,
                    latency_table: str | None = None, band: float = DEFAULT_BAND,
                    objectives: tuple[str, ...] = ("accuracy",), sampler: str = "tpe",
                    seed: int = 0, timeout: float | None = None, heartbeat_s: int = 30,
                    cuda_graphs: bool = False, supernet: str | None = None) -> SearchSettings:
    """The settings of a search, every option left out taken as `ghostsearch search` takes
    it: the preset (auto: by the device) gives the proxy recipe (unless `recipe`, a Recipe,
    a named recipe or a file, is given), the data subset, the mode
    (prescreen, pool, top, pruner) and the trial count; the study is named
    <space>-<budget>M-<data>-<preset>[-<recipe>] so that the same call resumes it. A bad
    option raises ConfigError with one line naming it."""
    flops = parse_budget(budget) if isinstance(budget, str) else int(budget)
    space = load_space(space) if isinstance(space, str) else space
    data = data or DataSpec()
    chosen, why = resolve_preset(preset, device)
    logger.info(f"preset {chosen.name} ({why})")
    recipe = load_recipe(recipe) if isinstance(recipe, str) else recipe
    protocol = recipe or chosen.protocol
    # the preset and the recipe are in the default name: another protocol is another study
    name = study_name or (f"{space.name}-{flops / 1e6:g}M-{data.name}-{chosen.name}"
                          + (f"-{protocol.name}" if recipe is not None and protocol.name else ""))
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '-', '_' and '.'")
    folder = study_dir(name, None if out is None else str(out))
    if latency_of_width is not None:
        if latency_ms is not None:
            raise ConfigError("--latency-of sets the latency limit: drop --latency-ms")
        latency_ms = latency_of(latency_of_width, latency_table, space)
        logger.info(f"latency limit {latency_ms:g} ms: {latency_table}'s prediction for "
                    f"{width_name(latency_of_width)}")
    prescreen = chosen.prescreen if prescreen is None else prescreen
    prescreen = None if prescreen in (None, "none") else prescreen
    pool = chosen.pool if pool is None else pool
    top = chosen.top if top is None else top
    if trials is None:
        table = (LatencyTable.load(latency_table)
                 if latency_ms is not None and latency_table else None)
        n_refs = len(baseline_widths(space, Limits(flops, latency_ms, band, table))
                     ) if baselines else 0
        trials = (top + n_refs if prescreen
                  else chosen.candidates + n_refs if chosen.candidates else 40)
    train_cap = chosen.train_cap if protocol.train_images is None else protocol.train_images
    data = replace(data, train_cap=train_cap, val_cap=chosen.val_cap)
    if n_jobs is None:
        n_jobs = default_n_jobs(pick_device(device).type)
    return SearchSettings(
        study_name=name, storage=storage or default_storage(folder), space=space, data=data,
        protocol=protocol, budget_flops=flops, objectives=tuple(objectives), sampler=sampler,
        trials=trials, timeout=timeout, seed=seed, device=device, n_jobs=n_jobs,
        pruner=pruner or chosen.pruner, baselines=baselines, prescreen=prescreen,
        pool=pool if prescreen else 0, top=top if prescreen else 0, heartbeat_s=heartbeat_s,
        latency_ms=latency_ms, latency_table=latency_table, cuda_graphs=cuda_graphs,
        band=band, supernet=supernet, out=str(folder), preset=chosen.name)


def run_search(settings: SearchSettings, *, devices: list[str] | None = None,
               record: dict[str, Any] | None = None) -> SearchResult:
    """Run the search of `settings` to its trial count (resuming a stored study), then write
    the report, run.json (`record`: the resolved options, beside versions and commit, kept
    per invocation) and best_arch.json into `settings.out`. Progress goes to the `ghostsearch`
    logger. Ctrl-C stops the training, saves what finished and still writes the report
    (`interrupted` in the result). Raises StudyError when every trial failed."""
    load = os.getloadavg()[0]  # before this call adds its own work
    out = study_dir(settings.study_name, settings.out)
    limits = Limits.of(settings)
    dataset = settings.data.load()  # bad data is refused here, once, before any worker starts
    device = pick_device(devices[0] if devices else settings.device)
    protocol = settings.protocol
    logger.info(dataset.summary())
    logger.info(
        f"study {settings.study_name!r}: budget {format_flops(settings.budget_flops)}FLOPs at "
        f"{settings.space.deployment.resolution}x{settings.space.deployment.resolution}, "
        f"{settings.space.deployment.num_classes} classes"
        + (f", latency <= {settings.latency_ms:g} ms ({limits.table.describe()}) predicted by "
           f"{settings.latency_table}" if settings.latency_ms else "")
        + f"; storage {settings.storage}")
    how = (f"a pool of {settings.pool} drawn uniformly, its best {settings.top} by "
           f"{settings.prescreen} trained" if settings.prescreen
           else f"drawn by {settings.sampler}" + (
               f" (at random: TPE models only after {TPE_STARTUP} trials)"
               if settings.sampler == "tpe" and settings.trials <= TPE_STARTUP else ""))
    logger.info(f"candidates: {limits.describe_band()} (--band {settings.band:g}), {how}; the "
                "reference GhostNets within the budget are trained beside them")
    logger.info(f"device {device} ({settings.n_jobs} worker(s)); proxy protocol (preset "
                f"{settings.preset}): {protocol.epochs} epochs on {len(dataset.train)} "
                f"images, batch {protocol.batch_size}, {protocol.schedule} lr {protocol.lr} "
                f"at batch 512, {len(dataset.val)} held out for selection")
    replaced = replace_unstarted(settings)
    if replaced:
        logger.info(f"study {settings.study_name!r} had no trained trial and other "
                    f"{', '.join(replaced)}: replaced by these settings'")
    if device.type == "cpu":
        announce_estimate(settings, dataset, device, load)
    interrupted = False
    try:
        run_trials(settings, dataset, devices=devices)
    except KeyboardInterrupt:
        interrupted = True
    study = open_study(settings)
    if settings.latency_table is not None and not interrupted:
        _measure_front(study, settings)
    out.mkdir(parents=True, exist_ok=True)
    report = write_report([study], out, settings.storage)
    run = {**provenance(), "args": record or {}, "band": band_record(study, settings),
           "history": run_history(out / "run.json")}
    write_atomic(out / "run.json", json.dumps(run, indent=2, default=str) + "\n")
    if not interrupted:
        refuse_if_all_failed(study)
    best_path = export_best(study, out)
    best = best_feasible(study)
    return SearchResult(
        settings=settings, out=out, study=study, table=summary_table(study),
        best=None if best is None else {"trial": best.number, **best.user_attrs},
        best_path=best_path, kept=confirmed_winner(best_path) if best_path else None,
        report=report, interrupted=interrupted)


def _measure_front(study: optuna.Study, settings: SearchSettings) -> None:
    """Measure the final Pareto set where the latency table was built (all training is over)."""
    table = LatencyTable.load(settings.latency_table)
    try:
        measured = measure_front(study, table, limit_ms=settings.latency_ms)
    except ConfigError as e:
        logger.warning(f"the final Pareto set was not measured: {e}")
        return
    if measured.empty:
        return
    over = measured[(measured.within_limit == False) & (measured.baseline == "")]  # noqa: E712
    logger.info(f"measured the final Pareto set ({len(measured)} architectures, baselines "
                f"included) on {table.describe()}: predicted vs measured mean absolute error "
                f"{measured.error_pct.abs().mean():.1f}%"
                + (f"; found architectures over the limit when measured: trials "
                   f"{', '.join(map(str, over.trial))}" if len(over) else ""))


def announce_estimate(settings: SearchSettings, dataset: Any, device: Any,
                      load: float = 0.0) -> None:
    """On a CPU, say how long the search will take before it starts: run the prescreen (if
    any) first, then time a few training steps of what will be trained (the picked candidates
    and the references, else the widest reference); a GPU-sized protocol on a CPU is named as
    such, with the way out."""
    space = settings.space
    widths = [w for _, w in baseline_widths(space, Limits.of(settings))]
    refs = [space.build_config(space.reference_params(w)) for w in widths] or [
        space.build_config(space.smallest_params())]
    cfgs = [max(refs, key=lambda c: analytic_counts(c).flops)]
    if settings.prescreen:
        study = open_study(settings)
        ensure_prescreen(study, settings, dataset, progress=True)
        pool = study.user_attrs[PRESCREEN_KEY]
        logger.info(f"prescreen: {len(pool['pool'])} candidates within the limits scored with "
                    f"{pool['score']} in {pool['cpu_seconds']:.0f} CPU-s; training the best "
                    f"{pool['top']} (every candidate goes to pool.csv)")
        picked = [space.build_config(p) for p in picked_params(study)]
        cfgs = picked + (refs if settings.baselines and widths else []) or cfgs
    warning = busy_warning(load, trial_threads(settings.n_jobs))
    if warning:
        logger.warning(warning)
    est = estimate_search(settings, dataset, cfgs, device)
    logger.info(f"estimate: {est.describe(settings.trials, settings.n_jobs)}"
                + ("; pruning shortens it" if settings.pruner != "none" else ""))
    if est.total_s > LONG_SEARCH_S:
        if settings.preset == "cpu":
            hint = "fewer --trials, --top or --epochs shorten it"
        else:
            cpu = PRESETS["cpu"]
            trials = cpu.candidates + (len(widths) if settings.baselines else 0)
            scale = (cpu.protocol.epochs / settings.protocol.epochs
                     * min(1.0, cpu.train_cap / max(1, len(dataset.train)))
                     * min(1.0, trials / settings.trials))
            hint = (f"--preset cpu ({cpu.candidates} candidates, 3 epochs on 5,000 images) "
                    f"shortens it to about {format_duration(scale * est.total_s)}")
        logger.warning(f"warning: this search will take up to {format_duration(est.total_s)} "
                       f"on this CPU with the {settings.preset} protocol; {hint}")


def band_record(study: optuna.Study, settings: SearchSettings) -> dict[str, Any]:
    """Where the candidates lay and what the rejection cost: the prescreen pool's draws and
    the sampler's proposals per sampled trial (a value above 64 is a uniform fallback)."""
    pool = study.user_attrs.get(PRESCREEN_KEY, {})
    draws = [t.user_attrs["band_draws"] for t in study.get_trials(deepcopy=False)
             if t.user_attrs.get("band_draws")]
    return {"band": settings.band, "range": Limits.of(settings).describe_band(),
            "prescreen_draws": pool.get("draws"),
            "sampler_proposals": {"trials": len(draws), "total": sum(draws),
                                  "max": max(draws, default=0)}}


def run_history(path: Path) -> list[dict[str, Any]]:
    """The earlier invocations recorded in an existing run.json (their arguments, commit and
    versions), oldest first, so that a rerun adds to the record instead of replacing it."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    keep = ("ghostsearch", "git_commit", "torch", "python", "argv", "args")
    return [*old.get("history", []), {k: old.get(k) for k in keep}]


def refuse_if_all_failed(study: optuna.Study) -> None:
    """A search in which trials ran and every one failed is an error (exit 2, one line with
    the first reason), not a finished search: a rerun would train nothing new."""
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if failed and not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        why = failed[0].user_attrs.get("reason") or "no reason recorded"
        raise StudyError(f"every trial of study {study.study_name!r} failed ({len(failed)}; "
                         f"the first: {why}); fix the cause and rerun with a new --study-name")


__all__ = ["SearchResult", "latency_of", "resolve_preset", "run_search", "search_settings"]
