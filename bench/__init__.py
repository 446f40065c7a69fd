"""End-to-end benchmarks of Herald; ``python -m bench.run`` (``make bench``) runs them."""
