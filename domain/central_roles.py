"""The ``central-roles`` target's names, trust policies and sign-in instructions (pure).

Per distinct access (the same de-duplicated access a permission set would carry) the target
creates one role in each member account that needs it; its trust policy names only the
central account's principals that hold that access there (IAM users, with MFA required, or
the roles an external IdP federates into), never the central account's root: a root
principal trusts every principal of that account whose own policy allows ``sts:AssumeRole``
(IAM user guide, "How IAM roles differ from resource-based policies"; ../shared/AWS_FACTS.md,
"Trust policies"). In the central account, per access, a group (people as IAM users) or an
inline policy on each federated role allows ``sts:AssumeRole`` on exactly those roles.

Planning these actions from the synthesized access is :func:`domain.central_access.central_access`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from domain.central_spec import IAM_USERS, Central

# The member role's inline policy (the access's inline statements), and the central side's.
INLINE_POLICY_NAME = "iamc-access"
ASSUME_POLICY_PREFIX = "assume-"
# Tags on everything the target creates: what created it, for whom (adoption compares them).
CREATED_BY = "iam-centralize"
MFA_CONDITION = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
# The plan action kinds that give a person access on this target.
CREATE_MEMBER_ROLE = "create-member-role"
CREATE_ACCESS_GROUP = "create-access-group"
PUT_ACCESS_POLICY = "put-access-policy"
ADD_GROUP_MEMBER = "add-group-member"
# Done in the central (identity) account, before any member account's role.
CENTRAL_SIDE_KINDS = (CREATE_ACCESS_GROUP, PUT_ACCESS_POLICY, ADD_GROUP_MEMBER)
CENTRAL_ACCESS_KINDS = (CREATE_MEMBER_ROLE, *CENTRAL_SIDE_KINDS)
# The assume policy's statement: a document under the policy's name with this Sid is one this
# target wrote (a later wave's put keeps the role ARNs it allows).
ASSUME_STATEMENT_SID = "SwitchIntoTheAccess"


def member_role_name(central: Central, access_name: str) -> str:
    """The role of one access in each member account: prefix + the access's (set's) name.

    A set name is at most 32 characters and the prefix at most 20, so this fits IAM's 64.
    """
    return f"{central.role_prefix}{access_name}"


def role_arn(account_id: str, central: Central, access_name: str, partition: str = "aws") -> str:
    return (
        f"arn:{partition}:iam::{account_id}:role{central.role_path}"
        f"{member_role_name(central, access_name)}"
    )


def access_group_name(central: Central, access_name: str) -> str:
    """The central account's group whose members may switch into the access's roles."""
    return f"{central.role_prefix}{access_name}"


def assume_policy_name(central: Central, access_name: str) -> str:
    return f"{central.role_prefix}{ASSUME_POLICY_PREFIX}{access_name}"


def group_assume_policy_name(group_name: str, access_name: str) -> str:
    """The assume policy's name on an access group (the group is the prefix + the access name,
    :func:`access_group_name`), for a handler that has the group's names but not the spec."""
    prefix = group_name.removesuffix(access_name)
    return f"{prefix}{ASSUME_POLICY_PREFIX}{access_name}"


def trust_policy(principals: list[str], central: Central) -> dict[str, Any]:
    """The member role's trust policy: exactly ``principals`` (central user or role ARNs).

    People arriving as IAM users must have signed in with MFA (``Bool`` true, not
    ``BoolIfExists``: the key is absent for credentials without MFA; AWS_FACTS.md).
    """
    statement: dict[str, Any] = {
        "Sid": "PeopleOfTheCentralAccount",
        "Effect": "Allow",
        "Principal": {"AWS": sorted(set(principals))},
        "Action": "sts:AssumeRole",
    }
    if central.arrive == IAM_USERS:
        statement["Condition"] = MFA_CONDITION
    return {"Version": "2012-10-17", "Statement": [statement]}


def assume_policy(role_arns: list[str], central: Central) -> dict[str, Any]:
    """The central side: ``sts:AssumeRole`` on exactly the access's member roles."""
    statement: dict[str, Any] = {
        "Sid": ASSUME_STATEMENT_SID,
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": sorted(set(role_arns)),
    }
    if central.arrive == IAM_USERS:
        statement["Condition"] = MFA_CONDITION
    return {"Version": "2012-10-17", "Statement": [statement]}


def switch_role_link(account_id: str, role_name: str, display_name: str | None = None) -> str:
    """The console's switch-role link (AWS_FACTS.md: signin.aws.amazon.com/switchrole)."""
    query = {"roleName": role_name, "account": account_id}
    if display_name:
        query["displayName"] = display_name
    return "https://signin.aws.amazon.com/switchrole?" + urlencode(query)


def config_profile(
    profile: str,
    role: str,
    *,
    source_profile: str,
    mfa_serial: str | None,
    region: str | None = None,
    duration_seconds: int | None = None,
) -> str:
    """An ``~/.aws/config`` block that switches into ``role`` (an ARN) from ``source_profile``."""
    lines = [f"[profile {profile}]", f"role_arn = {role}", f"source_profile = {source_profile}"]
    if mfa_serial:
        lines.append(f"mfa_serial = {mfa_serial}")
    if duration_seconds:
        lines.append(f"duration_seconds = {duration_seconds}")
    if region:
        lines.append(f"region = {region}")
    return "\n".join(lines) + "\n"
