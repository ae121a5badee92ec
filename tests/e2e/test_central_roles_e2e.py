"""The central-roles target end to end, through the CLI as an IAM admin runs it: the twin of
the Identity Center path (tests/e2e/test_apply_e2e.py, tests/e2e/test_centralize_e2e.py).

A seeded organization with an identity account whose IAM users are the people (each with an
MFA device): inventory → map (to the identity account's users) → plan → approve → apply →
verify → the people themselves switch in (with MFA; nobody else can) → notify → disable →
bake → delete → inventory again: every member account passes CIS 1.21, the identity account
as the account providing centralized IAM user management.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.deletion import deletes_in
from domain.plan import Plan
from state import Store

# Three users per member account: the break-glass administrator (protected, a documented
# exception) and two people (console users with and without MFA).
SANDBOX_SIZE = (2, 3)
SANDBOX_CENTRAL = True
MIGRATION = "e2e-central"


def _spec(central: str, accounts: list[str]) -> str:
    exceptions = "".join(
        f"""[[cis.exceptions]]
account = "{account}"
user = "breakglass-admin"
owner = "security-oncall"
reason = "break-glass administrator; hardware MFA, sealed"
expires = "2099-01-01"
"""
        for account in accounts
    )
    return f"""name = "{MIGRATION}"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
target = "central-roles"
[central]
account = "{central}"
arrive = "iam-users"
[decommission]
bake_days = 0
[aws]
rate_limits = {{ iam = 200 }}
{exceptions}"""


def _person_client(sandbox, central: str, user: str, service: str = "sts") -> Any:
    key, secret = sandbox.control.mint_user_key(central, user)
    return boto3.client(
        service,
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def _can_switch(sandbox, central: str, user: str, role_arn: str, mfa: bool = True) -> bool:
    sts = _person_client(sandbox, central, user)
    extra = {}
    if mfa:
        extra = {"SerialNumber": sandbox.control.mfa_serial(central, user), "TokenCode": "123456"}
    try:
        sts.assume_role(RoleArn=role_arn, RoleSessionName=user.split("@")[0], **extra)
    except ClientError as err:
        assert err.response["Error"]["Code"] == "AccessDenied", err
        return False
    return True


def _load_plan(tmp_path: Path) -> tuple[Any, Plan]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        info = store.plans.get_plan(
            store.plans.latest_plan_id(store.migrations.find_migration(MIGRATION))
        )
        return info, Plan.from_content(info.content)


def test_central_roles_from_inventory_to_the_verdict(iamc, sandbox_process, tmp_path):
    manifest = sandbox_process.control.manifest()
    central = manifest["central_account"]
    people = {u["user_name"] for u in manifest["central_users"]}
    assert central and people
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec(central, [a["account_id"] for a in manifest["accounts"]]))

    for step in (["inventory"], ["map"]):
        result = iamc(*step, "-c", str(spec))
        assert result.returncode == 0, result.stdout + result.stderr
    # The identity team works off the mapping's list: a central user (e-mail tag, MFA) for
    # the person who has none, and an override for the one two people's names match.
    unmatched = iamc("report", "mapping", "-c", str(spec), "--unmatched", "-f", "csv")
    assert unmatched.returncode == 0, unmatched.stderr
    identity = sandbox_process.member_iam(central)
    for login in manifest["unmatched_humans"]:
        assert login in unmatched.stdout
        email = f"{login}@example.com"
        identity.create_user(UserName=email, Tags=[{"Key": "email", "Value": email}])
        device = identity.create_virtual_mfa_device(VirtualMFADeviceName=email)
        serial = device["VirtualMFADevice"]["SerialNumber"]
        identity.enable_mfa_device(
            UserName=email,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        people.add(email)
    rows = ["account_id,iam_user,idp_user"]
    for iam_user, candidates in sorted(manifest["ambiguous_humans"].items()):
        chosen = next(c for c in candidates if "contractor" not in c)
        rows += [f"{a['account_id']},{iam_user},{chosen}" for a in manifest["accounts"]]
    (tmp_path / "overrides.csv").write_text("\n".join(rows) + "\n")
    with spec.open("a") as text:
        text.write('[mapping]\noverrides = "overrides.csv"\n')
    for step in (["map"], ["plan", "--out", str(tmp_path / "plan")]):
        result = iamc(*step, "-c", str(spec))
        assert result.returncode == 0, result.stdout + result.stderr
    info, plan = _load_plan(tmp_path)
    assert not [u for u in plan.users if u.outcome in ("skip-unmatched", "skip-ambiguous")]
    plan_md = (tmp_path / "plan" / "plan.md").read_text()
    assert "Central roles" in plan_md
    assert not [f for f in plan.findings if f.severity == "blocking"], plan.findings
    roles = [a for a in plan.actions if a.kind == "create-member-role"]
    members = [a for a in plan.actions if a.kind == "add-group-member"]
    migrating = [u for u in plan.users if u.outcome == "migrate"]
    assert roles and members and migrating
    # The identity account's own users are where people sign in: never planned for anything.
    assert {u.outcome for u in plan.users if u.account_id == central} == {"skip-protected"}
    assert not [a for a in plan.actions if a.account_id == central and a.stage != "provision"]
    # Each role trusts exactly the people who hold that access there, with MFA; never a root.
    for role in roles:
        statement = role.params["trust_policy"]["Statement"][0]
        principals = statement["Principal"]["AWS"]
        assert all(p.startswith(f"arn:aws:iam::{central}:user/") for p in principals)
        assert statement["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
        holders = {
            u.identity
            for u in migrating
            if u.account_id == role.account_id and role.params["access"] in u.permission_sets
        }
        assert {p.rsplit("/", 1)[-1] for p in principals} == holders

    approve = ["approve", str(info.id), "-c", str(spec), "--by", "cab", "--ticket", "CHG-26"]
    approve += ["--hash", info.hash[:12]]
    assert iamc(*approve, "--stage", "all").returncode == 0
    result = iamc(*approve, "--stage", "delete", "--deletes", str(deletes_in(plan)))
    assert result.returncode == 0, result.stdout + result.stderr

    applied = iamc("apply", str(info.id), "-c", str(spec), "--stage", "provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "0 failed, 0 pending" in applied.stdout
    for role in roles:
        found = sandbox_process.member_iam(role.account_id).get_role(
            RoleName=role.params["role_name"]
        )["Role"]
        assert found["Path"] == role.params["path"]
        assert found["MaxSessionDuration"] == role.params["max_session_duration"]

    verified = iamc("verify", str(info.id), "-c", str(spec))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r", 0 problem\(s\)", verified.stdout), verified.stdout

    # The people themselves: the planned person switches in with MFA, not without it; a
    # person of the identity account not planned for that role can't switch in at all.
    role = roles[0]
    arn = f"arn:aws:iam::{role.account_id}:role{role.params['path']}{role.params['role_name']}"
    planned = role.params["principals"][0].rsplit("/", 1)[-1]
    assert _can_switch(sandbox_process, central, planned, arn)
    assert not _can_switch(sandbox_process, central, planned, arn, mfa=False)
    holders = {p.rsplit("/", 1)[-1] for p in role.params["principals"]}
    outsider = sorted(people - holders)[0]
    assert not _can_switch(sandbox_process, central, outsider, arn)

    notified = iamc("notify", str(info.id), "-c", str(spec), "--out", str(tmp_path / "notices"))
    assert notified.returncode == 0, notified.stdout + notified.stderr
    notices = "\n".join(p.read_text() for p in (tmp_path / "notices").glob("*.md"))
    assert "https://signin.aws.amazon.com/switchrole?" in notices
    assert f"role_arn = {arn}" in notices
    assert f"mfa_serial = arn:aws:iam::{central}:mfa/{planned}" in notices

    for stage in ("disable", "delete"):
        if stage == "delete":
            baked = iamc("bake", "-c", str(spec))
            assert baked.returncode == 0, baked.stdout + baked.stderr
        result = iamc("apply", str(info.id), "-c", str(spec), "--stage", stage)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 failed, 0 pending" in result.stdout, result.stdout

    assert iamc("inventory", "-c", str(spec)).returncode == 0
    report = iamc("report", "inventory", "-c", str(spec), "-f", "json")
    assert report.returncode == 0, report.stderr
    rows = {r["account_id"]: r for r in json.loads(report.stdout)["accounts"]}
    assert rows[central]["cis_1_21"] == "PASS", rows[central]
    assert "[central] account" in rows[central]["cis_1_21_why"]
    members_of_org = [a for a in rows if a != central]
    assert members_of_org
    for account in members_of_org:
        assert rows[account]["cis_1_21"] in ("PASS", "PASS (exceptions)"), rows[account][
            "cis_1_21_why"
        ]
    # The people still get in after their old IAM users are gone.
    assert _can_switch(sandbox_process, central, planned, arn)
