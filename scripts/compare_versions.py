#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.compare_versions`; see `--help`."""

import sys

from ghostsearch.bench.compare_versions import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
