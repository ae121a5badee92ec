"""The generated policies against the AWS calls the real commands make, role by role.

A botocore event hook records every call of every session AwsSessions makes (management,
routine member, restore member) while provision, inventory, key scan, disable, rollback, bake
watch, delete and restore run against the sandbox. Each call must be allowed by the policy of
the role that made it, and the routine member policy must lack what restore needs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.apply import apply_plan
from engine.migration import Migration
from engine.rollback import rollback_plan
from engine.runs import list_runs
from flows.bake import bake_report
from flows.inventory import run_inventory
from flows.key_scan import run_key_scan
from flows.restore import restore
from tasks.aws import AwsSessions
from tasks.permissions import least_privilege_policies, restore_only_writes, session_policy

RESTORE_ROLE = "iamc-restore"
# Operations whose IAM action is named differently (Service Authorization Reference).
ACTION_OF_OPERATION = {"s3:ListBuckets": "s3:ListAllMyBuckets"}
LATER = datetime.now(UTC) + timedelta(days=15)
# The restore role trusts the management account, whose credentials the tool assumes it with
# (the sandbox evaluates trust policies as STS does).
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class Recorder:
    """IAM actions called, by the kind of session that called them; AssumeRole requests."""

    def __init__(self) -> None:
        self.actions: dict[str, set[str]] = defaultdict(set)
        self.assume_role: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def hook(self, kind: str):
        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            action = f"{model.service_model.signing_name}:{model.name}"
            with self._lock:
                self.actions[kind].add(ACTION_OF_OPERATION.get(action, action))
                if action == "sts:AssumeRole":
                    self.assume_role.append(dict(params))

        return record


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every session AwsSessions hands out records its calls (registered before any client)."""
    recorder = Recorder()
    management, assumed = AwsSessions.management, AwsSessions._assumed

    def recording_management(self: AwsSessions):
        session = management(self)
        session.events.register(
            "before-parameter-build", recorder.hook("management"), unique_id="policy-test"
        )
        return session

    def recording_assumed(self: AwsSessions, account_id, role, cache, *, restore: bool):
        session = assumed(self, account_id, role, cache, restore=restore)
        kind = "restore" if restore else "routine"
        session.events.register("before-parameter-build", recorder.hook(kind), unique_id=kind)
        return session

    monkeypatch.setattr(AwsSessions, "management", recording_management)
    monkeypatch.setattr(AwsSessions, "_assumed", recording_assumed)
    return recorder


def _with_restore_role(spec: Path) -> Path:
    text = spec.read_text()
    assert "[aws]\n" in text
    spec.write_text(text.replace("[aws]\n", f'[aws]\nrestore_role = "{RESTORE_ROLE}"\n'))
    return spec


def _allowed(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def test_each_commands_calls_fit_the_policy_of_the_role_it_uses(
    clean, retire_kit, tmp_path: Path, recorded: Recorder
):
    kit, prefix = retire_kit, f"p{uuid.uuid4().hex[:6]}-"
    a1, a2 = clean.accounts
    for account_id in clean.accounts:  # the sandbox refuses AssumeRole of a missing role
        iam = clean.member_iam(account_id)
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(RoleName=RESTORE_ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
    (tmp_path / "provision").mkdir()
    (tmp_path / "retire").mkdir()

    # Routine: provision, inventory, key scan, disable, rollback, bake watch, delete.
    spec, plan_id = kit.write_approved_plan(clean, tmp_path / "provision")
    apply_plan(spec, plan_id, poll=kit.QUICK)
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(
        clean,
        a1,
        jane,
        keys=1,
        ssh=True,
        cert=True,
        inline=True,
        managed=True,
        group=f"{prefix}devs",
        mfa=True,
        password=True,
        tags={"team": "payments"},
    )
    kit.seed_user(clean, a2, bob, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path / "retire", prefix)
    _with_restore_role(spec)
    run_inventory(spec)
    run_key_scan(spec)
    apply_plan(spec, plan_id, "disable")
    disable_run = next(r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply")
    rollback_plan(spec, disable_run, user=f"{a2}/{bob}")
    bake_report(spec, clock=lambda: LATER)
    apply_plan(spec, plan_id, "disable")
    apply_plan(spec, plan_id, "delete", clock=lambda: LATER)
    assert recorded.actions["restore"] == set()
    # Restore: the one command that assumes the restore role.
    restore(spec, f"{a1}/{jane}")

    policies = least_privilege_policies("OrganizationAccountAccessRole", RESTORE_ROLE)
    routine, restoring = recorded.actions["routine"], recorded.actions["restore"]
    assert {"iam:UpdateAccessKey", "iam:DeleteUser", "lambda:ListFunctions"} <= routine
    assert routine <= _allowed(policies["member"])
    assert {"iam:CreateUser", "iam:AttachUserPolicy", "iam:AddUserToGroup"} <= restoring
    assert restoring <= _allowed(policies["restore"])
    # What restore did is exactly what the member policy leaves out.
    assert restoring - _allowed(policies["member"]) == restoring & restore_only_writes() != set()
    assert not _allowed(policies["member"]) & restore_only_writes()
    management = recorded.actions["management"]
    assert {"sso:CreateAccountAssignment", "sts:AssumeRole"} <= management
    assert management <= _allowed(policies["management"])

    # Every AssumeRole names a role the management policy may assume, and carries the session
    # policy of its kind: routine sessions are denied restore's writes, restore's are not.
    (assuming,) = [
        s for s in policies["management"]["Statement"] if s["Sid"] == "AssumeMemberRoles"
    ]
    by_role: dict[str, set[str]] = defaultdict(set)
    for request in recorded.assume_role:
        assert any(fnmatch.fnmatchcase(request["RoleArn"], p) for p in assuming["Resource"])
        by_role[request["RoleArn"].rsplit("/", 1)[1]].add(request["Policy"])
    assert by_role == {
        "OrganizationAccountAccessRole": {session_policy(False, "iamc:protected")},
        RESTORE_ROLE: {session_policy(True, "iamc:protected")},
    }
