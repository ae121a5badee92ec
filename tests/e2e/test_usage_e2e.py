"""Usage end to end: a person uses S3 and EC2 with their key, `iamc usage` stores exactly that,
and with one account's member role gone it exits 4 naming the account as not read."""

from __future__ import annotations

import json
import subprocess

import pytest

from state import Store

pytestmark = pytest.mark.e2e

SANDBOX_SIZE = (3, 3)  # accounts, IAM users each: small, the usage step is under test
ROLE = "OrganizationAccountAccessRole"
USER = "usage-person"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "ec2:*", "iam:*"], "Resource": "*"}],
}


def _remove_role(iam) -> None:
    for policy in iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=ROLE, PolicyArn=policy["PolicyArn"])
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    iam.delete_role(RoleName=ROLE)


def test_played_use_is_read_and_an_unread_account_exits_4(iamc, sandbox_process, tmp_path):
    manifest = sandbox_process.control.manifest()
    first, second = [a["account_id"] for a in manifest["accounts"] if a["status"] == "ACTIVE"][:2]
    iam = sandbox_process.member_iam(first)
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="work", PolicyDocument=json.dumps(POLICY))
    iam.create_access_key(UserName=USER)
    played = sandbox_process.control.play_user_usage(
        first, USER, [("s3", "ListBuckets"), ("ec2", "DescribeInstances")], days_ago=5
    )
    assert [p["error"] for p in played["played"]] == [None, None]
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "e2e-usage"\nstate = "sqlite:///state.db"\n'
        'protected_users = ["breakglass-*"]\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n"
    )

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        result = iamc(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr[-3000:])
        return result

    run("inventory", "-c", str(spec))
    done = run("usage", "-c", str(spec))
    assert "next: iamc plan -c" in done.stdout and first in done.stdout
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        read = store.usage.latest(store.migrations.find_migration("e2e-usage"))
    assert read is not None and read.unread == {}
    usage = read.known(first, USER)
    assert usage is not None
    assert sorted(usage.actions) == ["ec2:DescribeInstances", "s3:ListAllMyBuckets"]
    assert sorted(usage.services) == ["ec2", "s3"]
    assert {"s3", "ec2", "iam"} <= usage.action_level  # granted: reported, iam never used

    _remove_role(sandbox_process.member_iam(second))
    partial = run("usage", "-c", str(spec), code=4)
    assert "whole account" in partial.stdout and "AssumeRole" in partial.stdout
    assert "run 'iamc usage -c" in partial.stderr, partial.stderr
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        again = store.usage.latest(store.migrations.find_migration("e2e-usage"))
    assert again is not None and again.id != read.id
    assert (second, "*") in again.unread and again.known(second, "anyone") is None
    assert again.known(first, USER) == usage
