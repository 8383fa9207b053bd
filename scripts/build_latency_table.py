#!/usr/bin/env python
"""`ghostsearch table` as a script; see `python scripts/build_latency_table.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["table", *sys.argv[1:]]))
