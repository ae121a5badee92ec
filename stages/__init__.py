"""The runbook's stages, each a plug-in: what it plans, runs, checks live, undoes and shows."""
