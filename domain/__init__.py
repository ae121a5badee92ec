"""The domain: plain records, the migration spec, the plan model and its renderings, errors.

The ground floor: it imports nothing of ours from above (no AWS, no SQL, no Prefect), so every
other package may build on it.
"""
