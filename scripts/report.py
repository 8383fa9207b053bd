#!/usr/bin/env python
"""`ghostsearch report` as a script; see `python scripts/report.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
