"""Plain functions that act on AWS, grouped by AWS noun; flows wrap them as Prefect tasks."""
