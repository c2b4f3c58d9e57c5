"""Benchmarks: one command (`deploy/bench`) measures every path side by side in one run."""
