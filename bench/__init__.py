"""Benchmarks: each runs hookpump beside a reference in one run, on loopback only."""
