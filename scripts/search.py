#!/usr/bin/env python
"""Search GhostNet-family architectures for a FLOPs budget with Optuna and short proxy trainings.

Every candidate is counted from its config first: one over the budget is recorded as
infeasible and never trained. Reference GhostNets (0.5x, 1.0x and the widest within the budget)
are trained under the same protocol in the same study. Rerunning the same command resumes it.

Examples:
  python scripts/search.py --budget 200MFLOPs --data imagefolder --data-dir /data/cifar10
  python scripts/search.py --budget 200M --objectives accuracy,flops --sampler nsga2
  python scripts/search.py --budget 12M --space ghostnet_cifar --data cifar10 --data-dir ./cifar

Outputs in results/<study-name>/: study.db (the Optuna storage), best_arch.json (rebuild with
ghostsearch.load_config + build_model), the report (report.md, report.html, pareto_flops.png,
trials.csv, pareto.csv) and run.json (resolved arguments, versions, commit).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ghostsearch import parse_budget
from ghostsearch.budget import format_flops
from ghostsearch.cli import ArgumentParser, add_data_args, provenance, run_cli
from ghostsearch.config import ConfigError
from ghostsearch.export import export_best
from ghostsearch.latency_table import LatencyTable
from ghostsearch.measure import measure_front
from ghostsearch.proxy import SCHEDULES, ProxyProtocol
from ghostsearch.report import summary_table, write_report
from ghostsearch.search import (
    OBJECTIVES,
    SAMPLERS,
    DataSpec,
    SearchSettings,
    best_feasible,
    default_storage,
    open_study,
    run_search,
    trained_count,
)
from ghostsearch.space import load_space

DEFAULTS = ProxyProtocol()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__,
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
                   help="tpe (multivariate for several objectives), nsga2 or random "
                        "(default: tpe)")
    g.add_argument("--trials", type=int, default=40,
                   help="trained trials to reach, baselines included; over-budget candidates "
                        "are not trained and not counted (default: 40)")
    g.add_argument("--timeout", type=float, default=None,
                   help="stop starting new trials after this many seconds")
    g.add_argument("--latency-ms", type=float, default=None,
                   help="hard limit on the deployment latency predicted by --latency-table; "
                        "candidates over it are never trained")
    g.add_argument("--latency-table", default=None,
                   help="latency table of the target device (scripts/build_latency_table.py), "
                        "for --latency-ms and the latency objective")
    g.add_argument("--no-baselines", action="store_true",
                   help="do not train the reference GhostNets in the study")
    g.add_argument("--no-prune", action="store_true",
                   help="single-objective: train every trial to the end")
    g = p.add_argument_group("data (the proxy task)")
    add_data_args(g)
    g = p.add_argument_group("proxy training")
    g.add_argument("--epochs", type=int, default=DEFAULTS.epochs,
                   help=f"epochs per candidate (default: {DEFAULTS.epochs})")
    g.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                   help=f"images per step (default: {DEFAULTS.batch_size})")
    g.add_argument("--lr", type=float, default=DEFAULTS.lr,
                   help=f"peak SGD learning rate at batch 512, scaled linearly with the batch "
                        f"size (default: {DEFAULTS.lr})")
    g.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS.schedule,
                   help=f"learning-rate schedule (default: {DEFAULTS.schedule})")
    g.add_argument("--device", default="auto",
                   help="cuda, cuda:N or cpu (default: cuda when available)")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="replay each training step's forward and backward as CUDA graphs "
                        "(fewer kernel launches; not yet measured, so off by default)")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds the sampler, the hold-out split and every trial (default: 0)")
    g = p.add_argument_group("storage and workers")
    g.add_argument("--study-name", default=None,
                   help="default: <space>-<budget>-<data>, so the same command resumes")
    g.add_argument("--storage", default=None,
                   help="any Optuna storage URL, or journal:PATH (default: sqlite in "
                        "results/<study-name>/study.db)")
    g.add_argument("--out", default=None, help="output folder (default: results/<study-name>)")
    g.add_argument("--n-jobs", type=int, default=1,
                   help="worker processes sharing the study on one machine (default: 1)")
    g.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between a running trial's heartbeats in an RDB storage; a "
                        "trial whose worker died is failed after 3 missed beats and its "
                        "configuration retried once (default: 30)")
    g.add_argument("--devices", default=None,
                   help="comma-separated devices to spread the workers over, e.g. cuda:0,cuda:1")
    return p.parse_args(argv)


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
          f"on {measured.device.iloc[0]}: predicted vs measured mean absolute error "
          f"{measured.error_pct.abs().mean():.1f}%"
          + (f"; found architectures over the limit when measured: trials "
             f"{', '.join(map(str, over.trial))}"
             if len(over) else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = parse_budget(args.budget)
    space = load_space(args.space)
    name = args.study_name or f"{space.name}-{budget / 1e6:g}M-{args.data}"
    out = Path(args.out or Path("results") / name)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '-', '_' and '.'")
    protocol = ProxyProtocol(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             schedule=args.schedule)
    data = DataSpec(args.data, args.data_dir, args.val_size, args.train_subset, args.resolution,
                    args.seed)
    settings = SearchSettings(
        study_name=name, storage=args.storage or default_storage(name, out.parent),
        space=space, data=data, protocol=protocol, budget_flops=budget,
        objectives=tuple(o.strip() for o in args.objectives.split(",")), sampler=args.sampler,
        trials=args.trials, timeout=args.timeout, seed=args.seed, device=args.device,
        n_jobs=args.n_jobs, prune=not args.no_prune, baselines=not args.no_baselines,
        heartbeat_s=args.heartbeat, latency_ms=args.latency_ms,
        latency_table=args.latency_table, cuda_graphs=args.cuda_graphs)
    dataset = data.load() if args.n_jobs == 1 else None  # bad data fails here, before Optuna
    if dataset is not None:
        print(dataset.summary())
    print(f"study {name!r}: budget {format_flops(budget)}FLOPs at "
          f"{space.deployment.resolution}x{space.deployment.resolution}, "
          f"{space.deployment.num_classes} classes"
          + (f", latency <= {args.latency_ms:g} ms predicted by {args.latency_table}"
             if args.latency_ms else "") + f"; storage {settings.storage}")
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
    report = write_report([study], out)
    if interrupted:
        print(f"\ninterrupted: {trained_count(study)} trained trials are saved in "
              f"{settings.storage}; rerun the same command to resume", file=sys.stderr)
    (out / "run.json").write_text(json.dumps(provenance(args), indent=2, default=str) + "\n")
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
        print(f"wrote {best_path}")
    plots = ", ".join(str(v) for k, v in report.items() if k.startswith("pareto_"))
    print(f"report: {report['md']}, {report['html']}, {plots} "
          f"(also trials.csv, pareto.csv, run.json in {out})")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
