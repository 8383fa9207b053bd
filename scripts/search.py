#!/usr/bin/env python
"""`ghostsearch search` as a script; see `python scripts/search.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
