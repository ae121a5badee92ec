"""End-to-end: `iamc sandbox up` in its own process, `iamc` commands run as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from sandbox.control import SandboxControl

IAMC = [sys.executable, "-m", "iamc.cli"]
_URL = re.compile(r"export AWS_ENDPOINT_URL=(\S+)")


@dataclass
class RunningSandbox:
    url: str
    control: SandboxControl
    env: dict[str, str]
    process: subprocess.Popen

    def member_iam(self, account_id: str) -> Any:
        """An IAM client in a member account, through its OrganizationAccountAccessRole."""
        credentials = dict(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )
        sts = boto3.client("sts", endpoint_url=self.url, region_name="us-east-1", **credentials)
        assumed = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="e2e-tests",
        )["Credentials"]
        return boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"],
            aws_session_token=assumed["SessionToken"],
        )

    def identity_center(self) -> dict[str, set]:
        """Every permission set ARN and (account, set, principal) assignment in the sandbox."""
        sso = boto3.client(
            "sso-admin",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )
        instance = sso.list_instances()["Instances"][0]["InstanceArn"]
        sets = set(sso.list_permission_sets(InstanceArn=instance)["PermissionSets"])
        accounts = {a["account_id"] for a in self.control.manifest()["accounts"]}
        assigned = {
            (account, arn, a["PrincipalId"])
            for account in accounts
            for arn in sets
            for a in sso.list_account_assignments(
                InstanceArn=instance, AccountId=account, PermissionSetArn=arn
            )["AccountAssignments"]
        }
        return {"permission_sets": sets, "assignments": assigned}


def start_sandbox(
    tmp: Path, accounts: int, users: int, seed: int, central: bool = False
) -> RunningSandbox:
    log = (tmp / "sandbox.log").open("w+")
    process = subprocess.Popen(
        [
            *IAMC,
            "sandbox",
            "up",
            "--port",
            "0",
            "--accounts",
            str(accounts),
            "--users-per-account",
            str(users),
            "--seed",
            str(seed),
            "--samples-dir",
            str(tmp / "samples"),
            *(["--central"] if central else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        log.seek(0)
        match = _URL.search(log.read())
        if match:
            url = match.group(1).strip("'")
            env = {
                "AWS_ENDPOINT_URL": url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            return RunningSandbox(url, SandboxControl(url), env, process)
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"sandbox exited: {log.read()}")
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("sandbox did not start within 180 s")


@pytest.fixture(scope="module")
def sandbox_process(request, tmp_path_factory) -> Iterator[RunningSandbox]:
    # A module may seed a smaller organization: SANDBOX_SIZE = (accounts, users per account).
    accounts, users = getattr(request.module, "SANDBOX_SIZE", (3, 12))
    # SANDBOX_CENTRAL = True: also an identity account of the people (the central-roles target).
    running = start_sandbox(
        tmp_path_factory.mktemp("sandbox"),
        accounts=accounts,
        users=users,
        seed=11,
        central=getattr(request.module, "SANDBOX_CENTRAL", False),
    )
    yield running
    running.process.terminate()
    try:
        running.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        running.process.kill()


def _runner(sandbox_process: RunningSandbox, prefect_api: str, cwd: Path, runner):
    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        env = {**_cli_env(runner, sandbox_process, prefect_api), **extra_env}
        return runner.run(args, cwd, env)

    return run


@pytest.fixture
def iamc(sandbox_process: RunningSandbox, prefect_api: str, tmp_path: Path, iamc_runner):
    """``iamc("inventory", "-c", spec)``: the CLI as a user runs it, sandbox exports set.

    Keyword arguments are extra environment variables (``AWS_ENDPOINT_URL_IAM=...``).
    """
    return _runner(sandbox_process, prefect_api, tmp_path, iamc_runner)


@pytest.fixture(scope="module")
def iamc_in(sandbox_process: RunningSandbox, prefect_api: str, iamc_runner):
    """``iamc_in(directory)("map", ...)``: as ``iamc``, in a directory a module fixture owns."""
    return lambda cwd: _runner(sandbox_process, prefect_api, cwd, iamc_runner)


@pytest.fixture
def iamc_started(sandbox_process: RunningSandbox, prefect_api: str, tmp_path: Path, iamc_runner):
    """``iamc_started("rollback", "3", "-c", spec)``: the CLI started in the background."""

    def start(*args: str):
        env = _cli_env(iamc_runner, sandbox_process, prefect_api)
        return iamc_runner.start(args, tmp_path, env)

    return start


def _cli_env(runner, sandbox_process: RunningSandbox, prefect_api: str) -> dict[str, str]:
    return runner.user_env(**sandbox_process.env, PREFECT_API_URL=prefect_api)
