"""Fewer cyclic-GC passes in every Python process the tests start (see tests/conftest.py).

The tests' processes (the sandbox, the Prefect server, ``iamc serve`` and its flow runs' own
processes, CLI commands) allocate millions of objects that live until they exit; with Python's
default thresholds (700, 10, 10) the collector walks them again and again and frees little:
about a sixth of a flow test's CPU time. Only the tests' processes read this file; what a user
runs keeps Python's defaults.
"""

import gc

# Generation 0 every 50,000 net allocations, generation 1 every 20 of those, generation 2 every
# 100 of those (and, as always, only once the objects waiting for it are a quarter of the rest).
gc.set_threshold(50_000, 20, 100)
