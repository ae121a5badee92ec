"""The usage flow on the sandbox: a person's played use is stored exactly, and an account
whose member role is gone is contained (its task Failed, its users unread as (account, "*"))."""

from __future__ import annotations

import json
import uuid

from flows.inventory import run_inventory
from flows.usage import run_usage
from sandbox.control import SandboxControl
from state import Store

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "ec2:*", "lambda:*"], "Resource": "*"},
    ],
}


def _person(iam, name: str) -> None:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=json.dumps(POLICY))
    iam.create_login_profile(UserName=name, Password="Correct-Horse-9")
    iam.create_access_key(UserName=name)


def _spec(tmp_path, name: str):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "usage-{name}"\nstate = "sqlite:///state.db"\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n"
        "[least_privilege]\nwindow_days = 30\n"
    )
    return spec


def _latest(tmp_path, name: str):
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.find_migration(f"usage-{name}")
        runs = [r for r in store.runs.list_runs(migration_id) if r.kind == "usage"]
        return store.usage.latest(migration_id), runs[-1]


def test_played_use_is_stored_exactly(clean, tmp_path):
    world = clean
    first, _ = world.accounts
    name = f"p{uuid.uuid4().hex[:6]}"
    _person(world.member_iam(first), name)
    control = SandboxControl(world.sandbox.url)
    control.play_user_usage(
        first,
        name,
        [
            {"service": "s3", "operation": "ListBuckets", "days_ago": 2},
            {"service": "ec2", "operation": "DescribeInstances", "days_ago": 10},
            # Outside the 30-day window: not use.
            {"service": "ec2", "operation": "DescribeVpcs", "days_ago": 60},
        ],
    )
    spec = _spec(tmp_path, name)
    run_inventory(spec)
    run_usage(str(spec))
    read, run = _latest(tmp_path, name)
    assert read is not None and read.window_days == 30
    usage = read.known(first, name)
    assert usage is not None, read.unread
    assert sorted(usage.services) == ["ec2", "s3"]
    assert sorted(usage.actions) == ["ec2:DescribeInstances", "s3:ListAllMyBuckets"]
    # Granted, never used: reported action by action, with nothing used.
    assert {"s3", "ec2", "lambda"} <= usage.action_level
    assert run.status == "succeeded"
    assert run.summary["read_id"] == read.id


def test_an_unreachable_account_is_unread_not_unused(clean, kit, tmp_path):
    world = clean
    first, second = world.accounts
    name = f"q{uuid.uuid4().hex[:6]}"
    _person(world.member_iam(first), name)
    _person(world.member_iam(second), name)
    spec = _spec(tmp_path, name)
    run_inventory(spec)
    with kit.role_removed(world, second):
        result = run_usage(str(spec))
    summary = result if isinstance(result, dict) else result.data
    assert "AssumeRole" in summary["accounts_failed"][second], summary
    read, run = _latest(tmp_path, name)
    assert read is not None
    assert "AssumeRole" in read.unread[(second, "*")]
    assert read.known(second, name) is None
    assert read.known(first, name) is not None
    assert run.status == "succeeded" and "INCOMPLETE" in (run.error or "")
