#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.sampler_duplicates`; see `--help`."""

import sys

from ghostsearch.bench.sampler_duplicates import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
