#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.bench_counting`; see `--help`."""

import sys

from ghostsearch.bench.bench_counting import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
