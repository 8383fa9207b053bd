#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.train_speed`; see `--help`."""

import sys

from ghostsearch.bench.train_speed import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
