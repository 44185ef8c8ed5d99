"""Benchmark harness: ``python -m core.bench --help``."""
