#!/usr/bin/env python
"""`ghostsearch train` as a script; see `python scripts/train.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
