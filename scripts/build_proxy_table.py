#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.build_proxy_table`; see `--help`."""

import sys

from ghostsearch.bench.build_proxy_table import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
