"""One sandbox server for the sandbox tests, and clients that talk to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sandbox.control import SandboxControl
from sandbox.server import Sandbox
from sandbox.strict_settings import Strictness


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Module scope: the sandbox switches moto's AWS-managed policies on process-wide while it
    # runs, which would slow other packages' in-process moto tests if it outlived this one.
    with Sandbox(port=0) as running:
        yield running


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[SandboxControl]:
    """The control client; every test starts and ends with default strictness."""
    ctl = SandboxControl(sandbox.url)
    defaults = Strictness().to_dict()
    ctl.configure(**defaults)
    yield ctl
    ctl.configure(**defaults)


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def client(sandbox: Sandbox, session: boto3.Session) -> Callable[..., Any]:
    """``client("iam")``: a client of the sandbox with standard retries."""

    def make(service: str, max_attempts: int = 3, target: boto3.Session | None = None) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": max_attempts})
        return (target or session).client(service, endpoint_url=sandbox.url, config=config)

    return make
