"""Benchmark harness: fake upstream, pass-through floor, load generator, runner."""
