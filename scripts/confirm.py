#!/usr/bin/env python
"""`ghostsearch confirm` as a script; see `python scripts/confirm.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["confirm", *sys.argv[1:]]))
