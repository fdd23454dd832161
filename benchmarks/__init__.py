"""Benchmarks: each script measures adapterflow and a baseline side by side in one run and prints the ratio."""
