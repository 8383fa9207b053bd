#!/usr/bin/env python
"""`ghostsearch export` as a script; see `python scripts/export.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
