"""Benchmarks of agent_factory against baselines measured in the same run; see docs/BENCHMARKS.md."""
