"""Benchmarks: each ``bench_*.py`` prints one JSON object; ``python -m benchmarks`` runs them all."""
