#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.design_space`; see `--help`."""

import sys

from ghostsearch.bench.design_space import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
