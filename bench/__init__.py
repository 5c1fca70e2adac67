"""``make bench``: measured figures for docs/benchmarks.md and bench/results.json (see bench/run.py)."""
