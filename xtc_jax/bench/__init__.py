"""Benchmarks, runnable as `python -m xtc_jax.bench.NAME`. Results go to BENCHMARKS.md."""
