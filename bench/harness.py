"""What the benchmarks share: a work directory with its own Prefect home, member-account clients."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import boto3


def bench_workdir(prefix: str) -> Path:
    """A fresh temporary directory with its own Prefect home (results never leak between runs)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return workdir


def member_iam(url: str, account_id: str) -> Any:
    sts = boto3.client("sts", endpoint_url=url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="bench",
    )["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
