"""A realistic, deterministic branch history for the demo, the benchmarks and the tests."""
