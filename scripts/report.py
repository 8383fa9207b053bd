#!/usr/bin/env python
"""Write the Pareto report of one or more studies from their storage alone.

Works while a search is still running (it reads what is stored), and merges several studies
into one comparison:

    python scripts/report.py --study-name ghostnet-200M-imagefolder
    python scripts/report.py --study-name a --study-name b --out results/a-vs-b

Writes trials.csv, pareto.csv, report.md, report.html (standalone) and pareto_flops.png
(pareto_latency.png when latency was measured) into --out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ghostsearch.cli import ArgumentParser, run_cli
from ghostsearch.config import ConfigError
from ghostsearch.report import write_report
from ghostsearch.search import load_existing_study


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-name", action="append", required=True,
                   help="study to report on; repeat to merge several into one comparison")
    p.add_argument("--storage", action="append", default=None,
                   help="Optuna storage URL: one for all studies, or one per --study-name "
                        "(default: sqlite in results/<study-name>/study.db)")
    p.add_argument("--out", default=None,
                   help="output folder (default: results/<study-name>, or "
                        "results/compare-<names> for several)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names, urls = args.study_name, args.storage or [None]
    if len(urls) not in (1, len(names)):
        raise ConfigError("--storage: give one for all studies or one per --study-name")
    urls = urls * len(names) if len(urls) == 1 else urls
    studies = [load_existing_study(n, u) for n, u in zip(names, urls, strict=True)]
    default = names[0] if len(names) == 1 else "compare-" + "-".join(names)
    files = write_report(studies, args.out or Path("results") / default)
    for path in files.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
