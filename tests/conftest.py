"""Fixtures shared by every test package: isolated AWS environment and Prefect home."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _aws_test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Dummy credentials, no profile, no endpoint: a test can never reach a real account."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config_dir = tmp_path_factory.getbasetemp() / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config_dir / "credentials"))
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for unit tests."""
    from moto import mock_aws

    with mock_aws():
        yield
