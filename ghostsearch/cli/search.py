"""Search GhostNet-family architectures for a FLOPs budget with Optuna and short proxy trainings.

Every candidate is counted from its config first: one over the budget is recorded as
infeasible and never trained. Reference GhostNets (0.5x, 1.0x and the widest within the budget)
are trained under the same protocol in the same study. Rerunning the same command resumes it.

Presets name a measured proxy protocol and data subset: gpu (the default: 5 epochs on the
whole training split), cpu (3 epochs on 5,000 images; 3 candidates drawn from the
band are trained, beside the references) and quick (1 epoch on 1,000 images, for trying the
tool). --epochs, --batch-size, --train-subset, --val-size, --prescreen, --pool, --top and
--pruner override a preset.

Examples:
  ghostsearch search --budget 200MFLOPs --data imagefolder --data-dir /path/to/cifar10
  ghostsearch search --budget 200MFLOPs --preset cpu --n-jobs 2 --data-dir /path/to/cifar10 \
      --data imagefolder
  ghostsearch search --budget 200M --objectives accuracy,flops --sampler nsga2
  ghostsearch search --budget 200MFLOPs --data synthetic --trials 3 --epochs 1 --device cpu

Outputs in results/<study-name>/ (or --out): study.db (the Optuna storage), best_arch.json
(rebuild with ghostsearch.load_config + build_model; carries the preprocessing), the report
(report.md, report.html, pareto_flops.png, trials.csv, pareto.csv) and run.json (resolved
arguments, versions, commit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ghostsearch import ConfigError, parse_budget
from ghostsearch.arch.budget import format_flops
from ghostsearch.arch.counting import analytic_counts
from ghostsearch.cli.common import (
    ArgumentParser,
    add_data_args,
    add_recipe_arg,
    recipe_from_args,
)
from ghostsearch.errors import StudyError
from ghostsearch.latency.table import LatencyTable
from ghostsearch.provenance import provenance, write_atomic
from ghostsearch.report.export import confirmed_winner, export_best
from ghostsearch.report.frame import summary_table
from ghostsearch.report.measure import measure_front
from ghostsearch.report.render import write_report
from ghostsearch.search.estimate import (
    busy_warning,
    default_n_jobs,
    estimate_search,
    format_duration,
    trial_threads,
)
from ghostsearch.search.limits import DEFAULT_BAND, Limits
from ghostsearch.search.prescreen import PRESCREEN_KEY, ensure_prescreen, picked_params
from ghostsearch.search.presets import PRESETS, Preset, get_preset
from ghostsearch.search.sampler import TPE_STARTUP
from ghostsearch.search.settings import (
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    DataSpec,
    SearchSettings,
)
from ghostsearch.search.space import load_space
from ghostsearch.search.storage import default_storage, study_dir
from ghostsearch.search.study import (
    baseline_widths,
    best_feasible,
    open_study,
    replace_unstarted,
    trained_count,
    width_name,
)
from ghostsearch.search.workers import run_search
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import SCHEDULES, Recipe

DEFAULTS = Recipe()
# a CPU estimate above this many seconds is announced before the search starts
LONG_SEARCH_S = 3600


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch search", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to search")
    g.add_argument("--budget", default="200MFLOPs",
                   help="FLOPs limit in the paper's convention (multiply-adds of conv and linear "
                        "layers) at the space's deployment resolution, e.g. 200MFLOPs, 0.2G, "
                        "150MMACs (default: 200MFLOPs)")
    g.add_argument("--space", default="ghostnet",
                   help="a search_spaces/ name (ghostnet: 224x224/1000 classes deployment; "
                        "ghostnet_cifar: 32x32/10 classes) or a YAML file (default: ghostnet)")
    g.add_argument("--objectives", default="accuracy",
                   help=f"'accuracy' (single-objective, budget as constraint, pruning) or "
                        f"accuracy plus any of {', '.join(OBJECTIVES[1:])}, comma-separated "
                        "(multi-objective, no pruning) (default: accuracy)")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="tpe (multivariate, grouped), nsga2 or random; "
                        "every one restricted to the band (default: tpe)")
    g.add_argument("--band", type=float, default=DEFAULT_BAND,
                   help="train and score only candidates in [BAND x limit, limit]: on the "
                        "latency limit when --latency-ms is given, else on the FLOPs budget; "
                        f"0 = anything under the limit (default: {DEFAULT_BAND})")
    g.add_argument("--trials", type=int, default=None,
                   help="trained trials to reach, baselines included; over-budget candidates "
                        "are not trained and not counted (default: --top plus the baselines "
                        "with --prescreen; else "
                        f"{PRESETS['cpu'].candidates} plus the baselines for cpu, 40 for gpu "
                        "and quick)")
    g.add_argument("--prescreen", default=None, metavar="SCORE",
                   help="rank a pool of candidates with this training-free score (see "
                        "ghostsearch.SCORE_NAMES), or 'supernet' (validation accuracy with "
                        "weights inherited from --supernet), and train only the best --top; "
                        "'none' trains what the sampler proposes (default: none)")
    g.add_argument("--supernet", default=None, metavar="DIR",
                   help="a checkpoint of ghostsearch supernet train, for --prescreen supernet")
    g.add_argument("--pool", type=int, default=None,
                   help="candidates within the limits that --prescreen scores (default: the "
                        f"preset's, {PRESETS['cpu'].pool} for cpu, else "
                        f"{PRESETS['gpu'].pool})")
    g.add_argument("--top", type=int, default=None,
                   help="of the pool, how many are trained with the proxy (default: the "
                        f"preset's, {PRESETS['cpu'].top} for cpu, else {PRESETS['gpu'].top})")
    g.add_argument("--timeout", type=float, default=None,
                   help="stop starting new trials after this many seconds")
    g.add_argument("--latency-ms", type=float, default=None,
                   help="hard limit on the deployment latency predicted by --latency-table; "
                        "candidates over it are never trained")
    g.add_argument("--latency-of", type=float, default=None, metavar="WIDTH",
                   help="set --latency-ms to the latency that --latency-table predicts for the "
                        "reference GhostNet of this width (e.g. 1.0): a limit relative to "
                        "GhostNet, unaffected by how fast the machine was when the table was "
                        "timed")
    g.add_argument("--latency-table", default=None,
                   help="latency table of the target device and runtime (ghostsearch table: "
                        "eager PyTorch, onnxruntime float32 or int8), for --latency-ms and the "
                        "latency objective; the final Pareto set is measured on that runtime")
    g.add_argument("--no-baselines", action="store_true",
                   help="do not train the reference GhostNets in the study")
    g.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="Optuna pruner on per-epoch validation accuracy: median, hyperband, "
                        "sha (successive halving) or none; single-objective only "
                        "(default: the preset's, none for cpu, else median)")
    g.add_argument("--no-prune", action="store_true", help="the same as --pruner none")
    g = p.add_argument_group("data (the proxy task)")
    add_data_args(g)
    g = p.add_argument_group("proxy training")
    g.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                   help="; ".join(f"{k}: {v.about}" for k, v in PRESETS.items())
                   + " (default: auto, gpu on a CUDA device and cpu otherwise)")
    add_recipe_arg(g, "the preset's proxy recipe")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs per candidate (default: the preset's)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: the preset's)")
    g.add_argument("--lr", type=float, default=None,
                   help=f"peak SGD learning rate at batch 512, scaled linearly with the batch "
                        f"size (default: {DEFAULTS.lr})")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help=f"learning-rate schedule (default: {DEFAULTS.schedule})")
    g.add_argument("--device", default="auto",
                   help="cuda, cuda:N or cpu (default: cuda when available)")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="replay each training step's forward and backward as CUDA graphs "
                        "(fewer kernel launches; not yet measured, so off by default)")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds the sampler, the prescreen pool and every trial's training; "
                        "the held-out validation images are --split-seed's (default: 0)")
    g = p.add_argument_group("storage and workers")
    g.add_argument("--study-name", default=None,
                   help="default: <space>-<budget>-<data>, so the same command resumes")
    g.add_argument("--storage", default=None,
                   help="any Optuna storage URL, or journal:PATH (default: sqlite in "
                        "results/<study-name>/study.db)")
    g.add_argument("--out", default=None,
                   help="output folder, also holding study.db unless --storage is given "
                        "(default: results/<study-name> under the working directory)")
    g.add_argument("--n-jobs", type=int, default=None,
                   help="worker processes sharing the study on one machine (default: on a CPU "
                        "one single-thread worker per core, at most 8, the fastest measured "
                        "way to use the cores; on a GPU 1)")
    g.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between a running trial's heartbeats in an RDB storage; a "
                        "trial whose worker died is failed after 3 missed beats and its "
                        "configuration retried once (default: 30)")
    g.add_argument("--devices", default=None,
                   help="comma-separated devices to spread the workers over, e.g. cuda:0,cuda:1")
    return p.parse_args(argv)


def resolve_latency_of(args: argparse.Namespace, space: Any) -> str | None:
    """With --latency-of WIDTH, set args.latency_ms to the table's prediction for that
    reference GhostNet (to 4 decimals, so that it meets its own limit) and return its name."""
    if args.latency_of is None:
        return None
    if args.latency_ms is not None:
        raise ConfigError("--latency-of sets the latency limit: drop --latency-ms")
    if args.latency_table is None:
        raise ConfigError("--latency-of needs --latency-table FILE (make one with ghostsearch "
                          "table)")
    cfg = space.reference_config(args.latency_of, "latency-of")
    predicted = LatencyTable.load(args.latency_table).predict(cfg)
    args.latency_ms = math.ceil(predicted * 1e4) / 1e4
    return width_name(args.latency_of)


def _measure_front(study, settings: SearchSettings) -> None:
    """Measure the final Pareto set where the latency table was built (all training is over)."""
    table = LatencyTable.load(settings.latency_table)
    try:
        measured = measure_front(study, table, limit_ms=settings.latency_ms)
    except ConfigError as e:
        print(f"the final Pareto set was not measured: {e}")
        return
    if measured.empty:
        return
    over = measured[(measured.within_limit == False) & (measured.baseline == "")]  # noqa: E712
    print(f"measured the final Pareto set ({len(measured)} architectures, baselines included) "
          f"on {table.describe()}: predicted vs measured mean absolute error "
          f"{measured.error_pct.abs().mean():.1f}%"
          + (f"; found architectures over the limit when measured: trials "
             f"{', '.join(map(str, over.trial))}"
             if len(over) else ""))


def _announce_estimate(settings: SearchSettings, dataset, device, preset: str,
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
        print(f"prescreen: {len(pool['pool'])} candidates within the limits scored with "
              f"{pool['score']} in {pool['cpu_seconds']:.0f} CPU-s; training the best "
              f"{pool['top']} (every candidate goes to pool.csv)")
        picked = [space.build_config(p) for p in picked_params(study)]
        cfgs = picked + (refs if settings.baselines and widths else []) or cfgs
    warning = busy_warning(load, trial_threads(settings.n_jobs))
    if warning:
        print(warning)
    est = estimate_search(settings, dataset, cfgs, device)
    print(f"estimate: {est.describe(settings.trials, settings.n_jobs)}"
          + ("; pruning shortens it" if settings.pruner != "none" else ""))
    if est.total_s > LONG_SEARCH_S:
        if preset == "cpu":
            hint = "fewer --trials, --top or --epochs shorten it"
        else:
            cpu = PRESETS["cpu"]
            trials = cpu.candidates + (len(widths) if settings.baselines else 0)
            scale = (cpu.protocol.epochs / settings.protocol.epochs
                     * min(1.0, cpu.train_cap / max(1, len(dataset.train)))
                     * min(1.0, trials / settings.trials))
            hint = (f"--preset cpu ({cpu.candidates} candidates, 3 epochs on 5,000 images) "
                    f"shortens it to about "
                    f"{format_duration(scale * est.total_s)}")
        print(f"warning: this search will take up to {format_duration(est.total_s)} on this "
              f"CPU with the {preset} protocol; {hint}")


def band_record(study, settings: SearchSettings) -> dict[str, Any]:
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


def refuse_if_all_failed(study: Any) -> None:
    """A search in which trials ran and every one failed is an error (exit 2, one line with
    the first reason), not a finished search: a rerun would train nothing new."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if failed and not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        why = failed[0].user_attrs.get("reason") or "no reason recorded"
        raise StudyError(f"every trial of study {study.study_name!r} failed ({len(failed)}; "
                         f"the first: {why}); fix the cause and rerun with a new --study-name")


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


def search_mode(args: argparse.Namespace, preset: Preset) -> dict[str, Any]:
    """The prescreen, pool, top and pruner: each flag given, else the preset's."""
    prescreen = preset.prescreen if args.prescreen is None else args.prescreen
    return {"prescreen": None if prescreen in (None, "none") else prescreen,
            "pool": preset.pool if args.pool is None else args.pool,
            "top": preset.top if args.top is None else args.top,
            "pruner": "none" if args.no_prune else (args.pruner or preset.pruner)}


def main(argv: Sequence[str] | None = None) -> int:
    load = os.getloadavg()[0]  # before this command adds its own work
    args = parse_args(argv)
    budget = parse_budget(args.budget)
    space = load_space(args.space)
    preset, why = resolve_preset(args.preset, args.devices.split(",")[0] if args.devices
                                 else args.device)
    # the preset is in the default name: a study of another protocol is another study
    name = args.study_name or (f"{space.name}-{budget / 1e6:g}M-{args.data}-{preset.name}"
                               + (f"-{Path(args.recipe).stem}" if args.recipe else ""))
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '-', '_' and '.'")
    out = study_dir(name, args.out)
    print(f"preset {preset.name} ({why})")
    mode = search_mode(args, preset)
    latency_of = resolve_latency_of(args, space)
    limits_table = (LatencyTable.load(args.latency_table)
                    if args.latency_ms is not None and args.latency_table else None)
    limits = Limits(budget, args.latency_ms, args.band, limits_table)
    trials = args.trials
    if trials is None:
        baselines = 0 if args.no_baselines else len(baseline_widths(space, limits))
        trials = (mode["top"] + baselines if mode["prescreen"]
                  else preset.candidates + baselines if preset.candidates else 40)
    protocol = recipe_from_args(args, preset.protocol)
    train_cap = preset.train_cap if protocol.train_images is None else protocol.train_images
    data = DataSpec(args.data, args.data_dir, args.val_size, args.train_subset, args.resolution,
                    args.split_seed, args.max_data_gb, train_cap, preset.val_cap)
    settings = SearchSettings(
        study_name=name, storage=args.storage or default_storage(out),
        space=space, data=data, protocol=protocol, budget_flops=budget,
        objectives=tuple(o.strip() for o in args.objectives.split(",")), sampler=args.sampler,
        trials=trials, timeout=args.timeout, seed=args.seed, device=args.device,
        n_jobs=1 if args.n_jobs is None else args.n_jobs,
        pruner=mode["pruner"], baselines=not args.no_baselines, prescreen=mode["prescreen"],
        pool=mode["pool"] if mode["prescreen"] else 0, top=mode["top"] if mode["prescreen"] else 0,
        heartbeat_s=args.heartbeat, latency_ms=args.latency_ms,
        latency_table=args.latency_table, cuda_graphs=args.cuda_graphs, band=args.band,
        supernet=args.supernet)
    dataset = data.load()  # bad data is refused here, once, before any worker starts
    device = pick_device(args.devices.split(",")[0] if args.devices else args.device)
    if args.n_jobs is None:
        settings = replace(settings, n_jobs=default_n_jobs(device.type))
    print(dataset.summary())
    print(f"study {name!r}: budget {format_flops(budget)}FLOPs at "
          f"{space.deployment.resolution}x{space.deployment.resolution}, "
          f"{space.deployment.num_classes} classes"
          + (f", latency <= {args.latency_ms:g} ms ({limits_table.describe()}) predicted by "
             f"{args.latency_table}" if args.latency_ms else "")
          + (f" (its prediction for {latency_of})" if latency_of else "")
          + f"; storage {settings.storage}")
    how = (f"a pool of {settings.pool} drawn uniformly, its best {settings.top} by "
           f"{settings.prescreen} trained" if settings.prescreen
           else f"drawn by {settings.sampler}" + (
               f" (at random: TPE models only after {TPE_STARTUP} trials)"
               if settings.sampler == "tpe" and settings.trials <= TPE_STARTUP else ""))
    print(f"candidates: {limits.describe_band()} (--band {settings.band:g}), {how}; the "
          "reference GhostNets within the budget are trained beside them")
    print(f"device {device} ({settings.n_jobs} worker(s)); proxy protocol (preset {preset.name}): "
          f"{protocol.epochs} epochs on {len(dataset.train)} images, batch "
          f"{protocol.batch_size}, {protocol.schedule} lr {protocol.lr} at batch 512, "
          f"{len(dataset.val)} held out for selection")
    replaced = replace_unstarted(settings)
    if replaced:
        print(f"study {name!r} had no trained trial and other {', '.join(replaced)}: "
              "replaced by this command's")
    if device.type == "cpu":
        _announce_estimate(settings, dataset, device, preset.name, load)
    devices = args.devices.split(",") if args.devices else None
    interrupted = False
    try:
        run_search(settings, dataset, devices=devices)
    except KeyboardInterrupt:
        interrupted = True
    study = open_study(settings)
    if settings.latency_table is not None and not interrupted:
        _measure_front(study, settings)

    out.mkdir(parents=True, exist_ok=True)
    report = write_report([study], out, settings.storage)
    if interrupted:
        print(f"\ninterrupted: {trained_count(study)} trained trials are saved in "
              f"{settings.storage}; rerun the same command to resume", file=sys.stderr)
    run = {**provenance(args), "band": band_record(study, settings),
           "history": run_history(out / "run.json")}
    write_atomic(out / "run.json", json.dumps(run, indent=2, default=str) + "\n")
    if not interrupted:
        refuse_if_all_failed(study)
    best_path = export_best(study, out)
    table = summary_table(study)
    if not table.empty:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    best = best_feasible(study)
    if best is None:
        print("no feasible trial completed yet; rerun the same command to continue")
    else:
        a = best.user_attrs
        tag = f" ({a['baseline']})" if a.get("baseline") else ""
        print(f"best within budget: trial {best.number}{tag}, {a['flops'] / 1e6:.2f} MFLOPs, "
              f"{a['params'] / 1e6:.2f}M params, val {a['val_acc']:.2f}%, "
              f"test {a['test_acc']:.2f}%")
        kept = confirmed_winner(best_path) if best_path else None
        if kept:
            print(f"{best_path} keeps the confirmed winner ({kept['key']}: "
                  f"{kept.get('verdict', '')}); the proxy's best, trial {best.number}: "
                  f"ghostsearch export --study-name "
                  f"{name} --trial {best.number}")
        else:
            print(f"wrote {best_path}")
    plots = ", ".join(str(v) for k, v in report.items() if k.startswith("pareto_"))
    print(f"report: {report['md']}, {report['html']}, {plots} "
          f"(also trials.csv, pareto.csv, run.json in {out})")
    return 130 if interrupted else 0

