"""The ``iamc`` command: parses arguments, calls flows, shows results on the console.

The roof: it imports the library below it (flows, state, tasks, domain) and nothing imports it.
Also the launchers that are not runbook steps: the demo, the local Prefect UI, ``serve``.
"""

__version__ = "0.1.0"
