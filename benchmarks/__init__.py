"""Benchmarks that measure speed and memory against a plain baseline in the same run."""
