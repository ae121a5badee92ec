"""The ``iamc`` commands, one module per runbook step; ``iamc.cli`` imports one when it runs."""
