"""Prefect flows, one per runbook step: thin orchestration, no AWS calls, no SQL of their own."""
