"""Benchmarks and fidelity tooling: the measurements behind docs/benchmarks.md, run through
scripts/ (for example `python scripts/bench_proxy.py`). Importing ghostsearch never loads
them; they sit above the command line in the layering and nothing below imports them."""
