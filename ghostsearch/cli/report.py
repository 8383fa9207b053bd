"""Write the Pareto report of one or more studies from their storage alone.

Works while a search is still running (it reads what is stored), and merges several studies
into one comparison:

    ghostsearch report --study-name ghostnet-200M-imagefolder
    ghostsearch report --study-name a --study-name b --out results/a-vs-b

Writes trials.csv, pareto.csv, report.md, report.html (standalone) and pareto_flops.png
(pareto_latency.png when latency was measured) into --out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ghostsearch import ConfigError
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.report.render import write_report
from ghostsearch.search.storage import existing_study_url, load_existing_study, study_dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch report", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-name", action="append", required=True,
                   help="study to report on; repeat to merge several into one comparison")
    p.add_argument("--storage", action="append", default=None,
                   help="Optuna storage URL: one for all studies, or one per --study-name "
                        "(default: the study.db in the search's output folder)")
    p.add_argument("--out", default=None,
                   help="output folder; for one study also where its study.db is looked for "
                        "(default: results/<study-name>, or results/compare-<names> for "
                        "several)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names, urls = args.study_name, args.storage or [None]
    if len(urls) not in (1, len(names)):
        raise ConfigError("--storage: give one for all studies or one per --study-name")
    urls = urls * len(names) if len(urls) == 1 else urls
    own = args.out if len(names) == 1 else None  # one study's folder holds its database
    studies = [load_existing_study(n, u, own) for n, u in zip(names, urls, strict=True)]
    default = names[0] if len(names) == 1 else "compare-" + "-".join(names)
    storage = existing_study_url(names[0], urls[0], own) if len(names) == 1 else None
    files = write_report(studies, study_dir(default, args.out), storage)
    for path in files.values():
        print(path)
    return 0

