#!/usr/bin/env python
"""The benchmark `benchmarks/depth_full_data.py`, run from a checkout; see `--help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for benchmarks/

from benchmarks.depth_full_data import main  # noqa: E402
from ghostsearch.cli.common import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
