#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.simulate_search`; see `--help`."""

import sys

from ghostsearch.bench.simulate_search import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
