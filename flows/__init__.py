"""Prefect flows: thin orchestration that reads like the runbook; no AWS calls, no SQL."""
