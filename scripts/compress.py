#!/usr/bin/env python
"""`ghostsearch compress` as a script; see `python scripts/compress.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["compress", *sys.argv[1:]]))
