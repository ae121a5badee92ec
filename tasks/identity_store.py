"""The IAM Identity Center instance and its identity store: users, groups and memberships."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from domain.errors import AwsAccessError, SpecError
from domain.records import IdentityGroup, IdentityUser
from tasks.aws import translate_errors

log = logging.getLogger(__name__)

# sso-admin's IAM action prefix is "sso" (Service Authorization Reference, IAM Identity Center).
READ_PERMISSIONS = (
    "sso:ListInstances",
    "identitystore:ListUsers",
    "identitystore:ListGroups",
    "identitystore:ListGroupMemberships",
)


@dataclass(frozen=True)
class IdentityCenterInstance:
    instance_arn: str
    identity_store_id: str


@dataclass
class IdentityStoreContents:
    """Everything read from one identity store, as the IdP sync left it."""

    identity_store_id: str
    users: list[IdentityUser] = field(default_factory=list)
    groups: list[IdentityGroup] = field(default_factory=list)


def _pages(client, operation: str, key: str, page_size: int | None, **kwargs) -> Iterator[Any]:
    config = {"PageSize": page_size} if page_size else {}
    for page in client.get_paginator(operation).paginate(PaginationConfig=config, **kwargs):
        yield from page.get(key, [])


def find_instance(
    session: boto3.Session,
    identity_store_id: str | None = None,
    instance_arn: str | None = None,
    spec_path: str = "<spec>",
) -> IdentityCenterInstance:
    """The Identity Center instance to read: the only one visible, or the one the spec pins.

    Args:
        session: The management (or delegated administrator) account's session.
        identity_store_id: ``mapping.identity_store_id`` from the spec, if pinned.
        instance_arn: ``mapping.instance_arn`` from the spec, if pinned.
        spec_path: The spec file, for the message when a pin is wrong.

    Returns:
        The instance.

    Raises:
        AwsAccessError: No instance is visible, or credentials were refused.
        SpecError: Several instances and none pinned, or the pinned one is not visible.
    """
    client = session.client("sso-admin")
    with translate_errors(operation="sso:ListInstances"):
        instances = [
            IdentityCenterInstance(raw["InstanceArn"], raw["IdentityStoreId"])
            for raw in _pages(client, "list_instances", "Instances", None)
        ]
    if not instances:
        raise AwsAccessError(
            "no IAM Identity Center instance is visible: enable Identity Center, or run from "
            "its delegated administrator account",
            operation="sso:ListInstances",
        )
    pinned = [
        i
        for i in instances
        if (identity_store_id is None or i.identity_store_id == identity_store_id)
        and (instance_arn is None or i.instance_arn == instance_arn)
    ]
    visible = ", ".join(f"{i.identity_store_id} ({i.instance_arn})" for i in instances)
    if identity_store_id or instance_arn:
        if not pinned:
            key = "mapping.identity_store_id" if identity_store_id else "mapping.instance_arn"
            raise SpecError(
                spec_path, [(key, f"no such Identity Center instance; visible: {visible}")]
            )
        return pinned[0]
    if len(instances) > 1:
        raise SpecError(
            spec_path,
            [("mapping.identity_store_id", f"several instances are visible, pin one: {visible}")],
        )
    return instances[0]


def _identity_user(raw: dict[str, Any]) -> IdentityUser:
    external = raw.get("ExternalIds") or []
    return IdentityUser(
        user_id=raw["UserId"],
        user_name=raw.get("UserName", ""),
        display_name=raw.get("DisplayName") or "",
        emails=[e["Value"] for e in raw.get("Emails") or [] if e.get("Value")],
        external_id=external[0].get("Id") if external and external[0] else None,
    )


def read_identity_store(
    session: boto3.Session, identity_store_id: str, page_size: int | None = None
) -> IdentityStoreContents:
    """Read every user and group, and each group's members, through the paginators.

    Everything is read and matched locally: ``ListUsers`` filters only on one attribute at a
    time (identitystore API reference, Filter), and moto implements only the UserName filter.

    Args:
        session: The session of the account that holds the identity store.
        identity_store_id: The store's id (``d-…``).
        page_size: Items per page (tests make it small to cross page boundaries).

    Returns:
        Users and groups, each sorted by name.

    Raises:
        AwsAccessError: Credentials were refused.
    """
    client = session.client("identitystore")
    contents = IdentityStoreContents(identity_store_id=identity_store_id)
    with translate_errors(operation="identitystore:ListUsers"):
        contents.users = [
            _identity_user(raw)
            for raw in _pages(
                client, "list_users", "Users", page_size, IdentityStoreId=identity_store_id
            )
        ]
    with translate_errors(operation="identitystore:ListGroups"):
        raw_groups = list(
            _pages(client, "list_groups", "Groups", page_size, IdentityStoreId=identity_store_id)
        )
    for raw in raw_groups:
        with translate_errors(operation="identitystore:ListGroupMemberships"):
            members = [
                membership["MemberId"]["UserId"]
                for membership in _pages(
                    client,
                    "list_group_memberships",
                    "GroupMemberships",
                    page_size,
                    IdentityStoreId=identity_store_id,
                    GroupId=raw["GroupId"],
                )
                if "UserId" in (membership.get("MemberId") or {})
            ]
        contents.groups.append(
            IdentityGroup(
                group_id=raw["GroupId"],
                display_name=raw.get("DisplayName") or "",
                member_ids=sorted(set(members)),
            )
        )
    contents.users.sort(key=lambda u: (u.user_name.lower(), u.user_id))
    contents.groups.sort(key=lambda g: (g.display_name.lower(), g.group_id))
    log.info(
        "identity store %s: %d users, %d groups",
        identity_store_id,
        len(contents.users),
        len(contents.groups),
    )
    return contents


PRINCIPAL_READ_PERMISSIONS = (
    "identitystore:DescribeUser",
    "identitystore:DescribeGroup",
    "identitystore:GetUserId",
    "identitystore:IsMemberInGroups",
)
READ_PERMISSIONS = READ_PERMISSIONS + PRINCIPAL_READ_PERMISSIONS


def principal_problems(
    session: boto3.Session, identity_store_id: str, principals: list[tuple[str, str, str]]
) -> list[str]:
    """Which planned principals no longer exist, or were renamed, in the identity store.

    Args:
        session: The session of the account that holds the identity store.
        identity_store_id: The store's id.
        principals: ``(USER|GROUP, id, name as planned)``; a user's name is its UserName,
            a group's its DisplayName.

    Returns:
        One message per principal that is gone or renamed.
    """
    from botocore.exceptions import ClientError

    from tasks.aws import error_code

    client = session.client("identitystore")
    problems = []
    for principal_type, principal_id, name in sorted(set(principals)):
        try:
            with translate_errors(operation=f"identitystore:Describe{principal_type.title()}"):
                if principal_type == "USER":
                    raw = client.describe_user(
                        IdentityStoreId=identity_store_id, UserId=principal_id
                    )
                    found = raw.get("UserName", "")
                else:
                    raw = client.describe_group(
                        IdentityStoreId=identity_store_id, GroupId=principal_id
                    )
                    found = raw.get("DisplayName") or ""
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":
                raise
            problems.append(f"{principal_type.lower()} {name} ({principal_id}) no longer exists")
            continue
        # A group planned without a display name is named by its id.
        if found != name and name != principal_id:
            problems.append(
                f"{principal_type.lower()} {principal_id} is now named {found!r}, "
                f"planned as {name!r}"
            )
    return problems


def membership_problems(
    session: boto3.Session, identity_store_id: str, user_name: str, group_ids: list[str]
) -> list[str]:
    """Why a person no longer reaches their groups' access: gone, or no longer a member.

    Args:
        session: The session of the account that holds the identity store.
        identity_store_id: The store's id.
        user_name: The person's UserName in the identity store.
        group_ids: The groups whose assignments give them access.

    Returns:
        One message per problem; empty when the user exists and is in every group.
    """
    from botocore.exceptions import ClientError

    from tasks.aws import error_code

    if not group_ids:
        return []
    client = session.client("identitystore")
    try:
        with translate_errors(operation="identitystore:GetUserId"):
            user_id = client.get_user_id(
                IdentityStoreId=identity_store_id,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": user_name}
                },
            )["UserId"]
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        return [f"identity-store user {user_name} no longer exists"]
    groups = sorted(set(group_ids))
    # IsMemberInGroups takes at most 100 group ids a call (API_IsMemberInGroups).
    problems = []
    for start in range(0, len(groups), 100):
        with translate_errors(operation="identitystore:IsMemberInGroups"):
            results = client.is_member_in_groups(
                IdentityStoreId=identity_store_id,
                MemberId={"UserId": user_id},
                GroupIds=groups[start : start + 100],
            )["Results"]
        problems.extend(
            f"identity-store user {user_name} is no longer in group {r['GroupId']}"
            for r in results
            if not r.get("MembershipExists")
        )
    return problems
