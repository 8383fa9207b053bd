#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.band_sampling`; see `--help`."""

import sys

from ghostsearch.bench.band_sampling import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
