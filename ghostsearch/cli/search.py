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
import sys
from collections.abc import Sequence
from typing import Any

from ghostsearch.cli.common import (
    RECIPE_FLAGS,
    ArgumentParser,
    add_data_args,
    add_recipe_arg,
    recipe_from_args,
)
from ghostsearch.search.presets import PRESETS, Preset
from ghostsearch.search.settings import OBJECTIVES, PRUNERS, SAMPLERS, DataSpec, SearchSettings
from ghostsearch.search.study import trained_count
from ghostsearch.spaces.limits import DEFAULT_BAND
from ghostsearch.train.recipe import SCHEDULES, Recipe
from ghostsearch.workflow.search import resolve_preset, run_search, search_settings

DEFAULTS = Recipe()


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


def search_mode(args: argparse.Namespace, preset: Preset) -> dict[str, Any]:
    """The prescreen, pool, top and pruner: each flag given, else the preset's."""
    prescreen = preset.prescreen if args.prescreen is None else args.prescreen
    return {"prescreen": None if prescreen in (None, "none") else prescreen,
            "pool": preset.pool if args.pool is None else args.pool,
            "top": preset.top if args.top is None else args.top,
            "pruner": "none" if args.no_prune else (args.pruner or preset.pruner)}


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    """The SearchSettings the options describe (`ghostsearch.search_settings` fills the rest
    as the preset says)."""
    device = args.devices.split(",")[0] if args.devices else args.device
    preset, _ = resolve_preset(args.preset, device)
    mode = search_mode(args, preset)
    data = DataSpec(args.data, args.data_dir, args.val_size, args.train_subset, args.resolution,
                    args.split_seed, args.max_data_gb)
    return search_settings(
        args.budget, space=args.space, data=data, preset=args.preset,
        recipe=recipe_from_args(args, preset.protocol) if args.recipe or any(
            getattr(args, f, None) is not None for f in RECIPE_FLAGS) else None,
        study_name=args.study_name, out=args.out, storage=args.storage, device=device,
        n_jobs=args.n_jobs, trials=args.trials, prescreen=mode["prescreen"] or "none",
        pool=mode["pool"], top=mode["top"], pruner=mode["pruner"],
        baselines=not args.no_baselines, latency_ms=args.latency_ms,
        latency_of_width=args.latency_of, latency_table=args.latency_table, band=args.band,
        objectives=tuple(o.strip() for o in args.objectives.split(",")),
        sampler=args.sampler, seed=args.seed, timeout=args.timeout,
        heartbeat_s=args.heartbeat, cuda_graphs=args.cuda_graphs, supernet=args.supernet)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    res = run_search(settings, devices=args.devices.split(",") if args.devices else None,
                     record={k: v for k, v in vars(args).items() if not callable(v)})
    if res.interrupted:
        print(f"\ninterrupted: {trained_count(res.study)} trained trials are saved in "
              f"{settings.storage}; rerun the same command to resume", file=sys.stderr)
    if not res.table.empty:
        print(res.table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if res.best is None:
        print("no feasible trial completed yet; rerun the same command to continue")
    else:
        a = res.best
        tag = f" ({a['baseline']})" if a.get("baseline") else ""
        print(f"best within budget: trial {a['trial']}{tag}, {a['flops'] / 1e6:.2f} MFLOPs, "
              f"{a['params'] / 1e6:.2f}M params, val {a['val_acc']:.2f}%, "
              f"test {a['test_acc']:.2f}%")
        if res.kept:
            print(f"{res.best_path} keeps the confirmed winner ({res.kept['key']}: "
                  f"{res.kept.get('verdict', '')}); the proxy's best, trial {a['trial']}: "
                  f"ghostsearch export --study-name {settings.study_name} --trial {a['trial']}")
        else:
            print(f"wrote {res.best_path}")
    plots = ", ".join(str(v) for k, v in res.report.items() if k.startswith("pareto_"))
    print(f"report: {res.report['md']}, {res.report['html']}, {plots} "
          f"(also trials.csv, pareto.csv, run.json in {res.out})")
    return 130 if res.interrupted else 0
