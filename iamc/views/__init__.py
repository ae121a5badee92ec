"""What a person watches, one module per runbook step: progress while a flow runs, then reports."""
