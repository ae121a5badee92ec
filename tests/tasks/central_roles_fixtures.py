"""What the central-roles handler tests share: moto accounts, a journal, and planned actions.

The actions are built by hand as ``domain.central_access`` plans them (ISSUE26 contract), and
run through the real executor and journal: adoption, resume and rollback are the executor's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from domain.central_roles import (
    INLINE_POLICY_NAME,
    access_group_name,
    assume_policy,
    assume_policy_name,
    member_role_name,
    role_arn,
    trust_policy,
)
from domain.central_spec import Central
from domain.plan import PlanAction, Stage, sha256_of
from engine.executor import Executor
from state import Store
from tasks.handler import ExecutionContext

CENTRAL = "111111111111"
MEMBER = "222222222222"
MIGRATION = "acme"
SETTINGS = Central(account=CENTRAL)
READ_DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}
INLINE_DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
}


def member_sessions() -> Callable[[str], boto3.Session]:
    """Sessions in moto's accounts by AssumeRole (moto serves each credential's account)."""
    sts = boto3.client("sts", region_name="us-east-1")

    def member(account_id: str) -> boto3.Session:
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test",
        )["Credentials"]
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )

    return functools.cache(member)


def context() -> ExecutionContext:
    return ExecutionContext(boto3.Session(region_name="us-east-1"), member_sessions(), None)


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{CENTRAL}:user/people/{name}"


def central_user(ctx: ExecutionContext, name: str) -> str:
    """A person as the central account's IAM user; its ARN."""
    return ctx.iam(CENTRAL).create_user(UserName=name, Path="/people/")["User"]["Arn"]


def customer_policy(ctx: ExecutionContext, account: str, name: str) -> str:
    return ctx.iam(account).create_policy(PolicyName=name, PolicyDocument=_json(READ_DOC))[
        "Policy"
    ]["Arn"]


def _json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document)


def member_role(
    access: str,
    principals: list[str],
    managed: list[str],
    *,
    account: str = MEMBER,
    inline: dict[str, Any] | None = INLINE_DOC,
    boundary: str | None = None,
) -> PlanAction:
    name = member_role_name(SETTINGS, access)
    params = {
        "role_name": name,
        "path": SETTINGS.role_path,
        "access": access,
        "fingerprint": "f" * 64,
        "description": f"iam-centralize: access {access}",
        "trust_policy": trust_policy(principals, SETTINGS),
        "principals": sorted(principals),
        "max_session_duration": 3600 * SETTINGS.max_session_hours,
        "permissions_boundary_arn": boundary,
        "managed_policy_arns": sorted(managed),
        "inline_policy": inline,
        "inline_policy_name": INLINE_POLICY_NAME,
        "tags": [
            {"Key": "iamc:migration", "Value": MIGRATION},
            {"Key": "iamc:access", "Value": access},
            {"Key": "iamc:created-by", "Value": "iam-centralize"},
            {"Key": "iamc:central-account", "Value": CENTRAL},
        ],
    }
    return PlanAction(
        id=f"provision:create-member-role:{account}:{name}",
        stage=Stage.PROVISION,
        kind="create-member-role",
        account_id=account,
        target=name,
        target_fingerprint=sha256_of(params),
        params=params,
    )


def access_group(access: str) -> PlanAction:
    group = access_group_name(SETTINGS, access)
    return PlanAction(
        id=f"provision:create-access-group:{CENTRAL}:{group}",
        stage=Stage.PROVISION,
        kind="create-access-group",
        account_id=CENTRAL,
        target=group,
        target_fingerprint="",
        params={"group_name": group, "path": SETTINGS.role_path, "access": access},
    )


def access_policy(
    access: str, role_arns: list[str], principal_type: str = "group", principal: str = ""
) -> PlanAction:
    principal = principal or access_group_name(SETTINGS, access)
    policy = assume_policy_name(SETTINGS, access)
    depends = (
        [f"provision:create-access-group:{CENTRAL}:{principal}"]
        if principal_type == "group"
        else []
    )
    return PlanAction(
        id=f"provision:put-access-policy:{CENTRAL}:{principal_type}:{principal}:{policy}",
        stage=Stage.PROVISION,
        kind="put-access-policy",
        account_id=CENTRAL,
        target=policy,
        target_fingerprint="",
        params={
            "principal_type": principal_type,
            "principal_name": principal,
            "policy_name": policy,
            "document": assume_policy(role_arns, SETTINGS),
            "role_arns": sorted(role_arns),
            "access": access,
        },
        depends_on=depends,
    )


def group_member(access: str, user: str) -> PlanAction:
    group = access_group_name(SETTINGS, access)
    return PlanAction(
        id=f"provision:add-group-member:{CENTRAL}:{group}:{user}",
        stage=Stage.PROVISION,
        kind="add-group-member",
        account_id=CENTRAL,
        target=user,
        target_fingerprint="",
        params={"group_name": group, "user_name": user, "access": access},
        depends_on=[f"provision:create-access-group:{CENTRAL}:{group}"],
    )


def the_role_arn(access: str, account: str = MEMBER) -> str:
    return role_arn(account, SETTINGS, access)


class Journal:
    """A state DB with one plan, and executors (one per run) over it."""

    def __init__(self, store: Store, ctx: ExecutionContext, handlers: dict[str, Any]):
        self.store, self.ctx, self.handlers = store, ctx, handlers
        self.migration_id = store.migrations.ensure_migration(MIGRATION, {})
        run = store.runs.start_run(self.migration_id, "plan")
        self.plan_id, _ = store.plans.save_plan(self.migration_id, run, "h" * 64, {}, 0)

    def executor(self, fault: tuple[str, str] | None = None) -> Executor:
        run_id = self.store.runs.start_run(self.migration_id, "apply")
        return Executor(
            self.store.journal,
            self.handlers,
            self.ctx,
            run_id=run_id,
            plan_id=self.plan_id,
            stage="provision",
            fault=fault,
        )

    def entry(self, action: PlanAction) -> Any:
        return self.store.journal.journal_entry(self.plan_id, action.id)

    def rollback(self, *actions: PlanAction) -> list[str]:
        """Undo the actions' rows in the order given (the stage's undo order)."""
        executor = self.executor()
        return [executor.undo(self.entry(action)) for action in actions]


@contextmanager
def journal(handlers: dict[str, Any]) -> Iterator[Journal]:
    with Store.open("sqlite://") as store:
        yield Journal(store, context(), handlers)
