"""The workload owners' hand-off and the cut-over rule, as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from domain.key_attribution import KeyFinding
from domain.plan import Outcome, Plan, PlanAction, Stage, UserPlan
from domain.records import AccessKey, User
from domain.workload_cutover import KeyLastUse, RoleUse, cutover_refusals
from domain.workload_handoff import (
    UNOWNED,
    HandoffContext,
    handoffs_from_plan,
    render_owner,
    write_handoffs,
)

A = "111111111111"
KEY = "AKIAIOSFODNN7EXAMPLE"
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
CTX = HandoffContext("wave-1", date(2026, 12, 19), 30, "eu-west-1", "spec.toml")


def _plan(users: dict[str, dict]) -> Plan:
    plans, actions = [], []
    for name, params in users.items():
        plans.append(UserPlan(A, name, "workload", Outcome.REPLACE_WITH_ROLE, "placed", "f"))
        actions.append(
            PlanAction(
                id=f"replace:{A}:{name}:create-workload-role",
                stage=Stage("replace"),
                kind="create-workload-role",
                account_id=A,
                target=name,
                target_fingerprint="f",
                params={"user": name, "role_name": f"iamc-wl-{name}", "role_path": "/iamc/"}
                | params,
            )
        )
    plans.append(UserPlan(A, "alice", "human", Outcome.MIGRATE, "person", "f"))
    return Plan("wave-1", 1, None, {}, plans, actions, [], [], [], [])


def _user(name: str, **tags: str) -> User:
    key = AccessKey(KEY, "Active", last_used_date=NOW - timedelta(days=2))
    return User(name, "AIDA" + name, f"arn:aws:iam::{A}:user/{name}", access_keys=[key], tags=tags)


def test_each_owner_gets_their_workloads_with_the_runtime_change_and_masked_key_places(
    tmp_path: Path,
):
    plan = _plan(
        {
            "fn": {"runtime": "lambda"},
            "task": {"runtime": "ecs"},
            "partner": {"runtime": "vendor", "external_id": "ext-42", "vendor_account": "2" * 12},
            "stray": {"runtime": "ec2"},
        }
    )
    records = {
        (A, "fn"): _user("fn", Owner="data@example.com"),
        (A, "task"): _user("task"),
        (A, "partner"): _user("partner", owner="sales@example.com"),
        (A, "stray"): _user("stray"),
    }
    finding = KeyFinding(
        classification="org-key",
        source="lambda-env",
        location=f"lambda:{A}:eu-west-1:fn:env:AWS_ACCESS_KEY_ID={KEY}",
        line=0,
        key_id=KEY,
        owner_account_id=A,
        owner_user="fn",
    )
    handoffs = handoffs_from_plan(plan, records, {(A, "task"): "data@example.com"}, [finding])

    assert [(h.owner, h.user) for h in handoffs] == [
        ("data@example.com", "fn"),
        ("data@example.com", "task"),
        ("sales@example.com", "partner"),
        (UNOWNED, "stray"),
    ]
    data = render_owner("data@example.com", handoffs[:2], CTX)
    assert f"--role arn:aws:iam::{A}:role/iamc/iamc-wl-fn" in data
    assert "update-function-configuration" in data and "AWS_SECRET_ACCESS_KEY" in data
    assert f'"taskRoleArn": "arn:aws:iam::{A}:role/iamc/iamc-wl-task"' in data
    assert "AKIA…MPLE" in data and KEY not in data
    assert "lambda-env: lambda:" in data  # where the key is written down, masked
    sales = render_owner("sales@example.com", handoffs[2:3], CTX)
    assert "ExternalId: `ext-42`" in sales and "2" * 12 in sales
    # Switch by the notice period's end; quiet 30 days after the key's last use (Dec 3).
    assert "Switch by **2026-12-19**" in data and "**2027-01-02** at the earliest" in data

    rows = write_handoffs(handoffs, CTX, tmp_path)
    assert {Path(r["markdown_file"]).name for r in rows} == {
        "data@example.com.md",
        "sales@example.com.md",
        "unowned.md",
    }
    csv_text = (tmp_path / "workloads" / "workloads.csv").read_text()
    assert KEY not in csv_text and "AKIA…MPLE" in csv_text


@pytest.mark.parametrize(
    ("key_used", "role", "eligible"),
    [
        (NOW - timedelta(days=1), RoleUse("r", True, None), False),  # owner has not switched
        (NOW - timedelta(days=1), RoleUse("r", True, NOW - timedelta(days=2)), False),  # before
        (NOW - timedelta(days=1), RoleUse("r", True, NOW - timedelta(hours=1)), True),  # after
        (NOW - timedelta(days=31), RoleUse("r", True, None), True),  # quiet > inactive_days
        (NOW - timedelta(days=31), RoleUse("r", False), True),  # quiet, even without a role
        (NOW - timedelta(days=1), RoleUse("r", False), False),  # no role yet
        (None, RoleUse("r", True, None), False),  # never used, but created yesterday
    ],
)
def test_the_cut_over_rule(key_used, role, eligible):
    key = KeyLastUse(KEY, NOW - timedelta(days=1), key_used, "s3", "us-east-1")
    found = cutover_refusals([key], role, now=NOW, inactive_days=30)
    assert (found == []) is eligible, found
    assert all(KEY not in line for line in found)
