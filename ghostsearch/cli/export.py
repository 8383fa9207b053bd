"""Export trials of a study as config files that rebuild the exact models.

    ghostsearch export --study-name NAME                 # best_arch.json
    ghostsearch export --study-name NAME --trial 17      # trial_17.json
    ghostsearch export --study-name NAME --pareto        # the accuracy/FLOPs front

Each file holds the deployment NetConfig and its metadata (FLOPs, params, accuracies, protocol,
versions); `ghostsearch.load_config(path)` + `build_model` rebuild the model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ghostsearch import StudyError
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.report.export import confirmed_winner, export_best, export_trial
from ghostsearch.report.frame import pareto_front, trials_frame
from ghostsearch.search.storage import load_existing_study, study_dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-name", required=True, help="the study to export from")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default: the study.db in --out)")
    p.add_argument("--out", default=None,
                   help="the search's output folder, where the files go (default: "
                        "results/<study-name>)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, action="append",
                       help="trial number to export (repeatable)")
    which.add_argument("--pareto", action="store_true",
                       help="export every feasible trial that no other beats on both "
                            "validation accuracy and FLOPs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    study = load_existing_study(args.study_name, args.storage, args.out)
    out = study_dir(args.study_name, args.out)
    if args.trial or args.pareto:
        numbers = args.trial or [int(n) for n in pareto_front(trials_frame(study)).trial]
        for n in numbers:
            print(export_trial(study, n, out / f"trial_{n}.json"))
    else:
        path = export_best(study, out)
        if path is None:
            raise StudyError(f"study {args.study_name!r} has no completed trial within its "
                             "limits yet")
        kept = confirmed_winner(path)
        print(f"{path} (the confirmed winner, {kept['key']}, kept; export the proxy's best with "
              "--trial N)" if kept else path)
    return 0

