#!/usr/bin/env python
"""`ghostsearch deploy` as a script; see `python scripts/deploy.py --help`."""

import sys

from ghostsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", *sys.argv[1:]]))
