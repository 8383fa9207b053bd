#!/usr/bin/env python
"""`ghostsearch latency` as a script; see `python scripts/latency.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["latency", *sys.argv[1:]]))
