#!/usr/bin/env python
"""The benchmark `ghostsearch.bench.proxy_fidelity`; see `--help`."""

import sys

from ghostsearch.bench.proxy_fidelity import main
from ghostsearch.cli.common import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
