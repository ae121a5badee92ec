"""Plain functions that act on AWS (taking a boto3 session), grouped by AWS noun; flows wrap
them as Prefect tasks. Also the read-only checks before a change (``preflight``)."""
