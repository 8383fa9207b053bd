#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.depth_full_data`; see `--help`."""

import sys

from ghostsearch.bench.depth_full_data import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
