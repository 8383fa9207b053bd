"""Benchmarks and fidelity tooling: outside the package, so importing ghostsearch never loads
them. Run them from a checkout through scripts/ (for example `python scripts/bench_proxy.py`)."""
