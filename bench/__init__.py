"""Benchmarks of the runbook's steps at scale on the sandbox (`make bench`): figures, not tests."""
