#!/usr/bin/env python
"""`ghostsearch count` as a script; see `python scripts/count.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["count", *sys.argv[1:]]))
