"""Did the central roles land? Per person, account and role: they can switch in, others can't.

For the ``central-roles`` target (``domain.central_roles``), for each ``create-member-role``
action of a plan, in its member account:

1. the action is done (journal) and the role exists (``GetRole``), whose live trust policy is
   read there;
2. the trust side, checked in code on that live document: an ``Allow`` of ``sts:AssumeRole``
   names each planned principal (``params["principals"]``), with ``Bool
   aws:MultiFactorAuthPresent = true`` when people arrive as IAM users; and it trusts nobody
   else: no finding of :func:`domain.trust_policy.central_trust_problems` (``*``, a root, a
   third party, a service or IdP, IAM users without MFA) and no AWS principal that is not a
   user or role of the central account. Not IAM's policy simulator: a public report says it
   ignores ``ResourcePolicy`` for ``sts:AssumeRole`` (aws/aws-cli#10314), so a widened trust
   could pass there;
3. the identity side, by the simulator in the central account: the principal's own policies
   (the central group's or federated role's access policy) allow ``sts:AssumeRole`` on the
   role (with ``aws:MultiFactorAuthPresent`` true for IAM users). No ``ResourcePolicy`` and
   no ``CallerArn``: only the principal's identity policies are evaluated;
4. people arriving as IAM users have an MFA device (``ListMFADevices``): the trust requires
   MFA, so without one they could not switch in.

Principals of the migration's other plans (waves) are central principals too, so step 2
accepts them. Reads only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.exceptions import ClientError

from domain.central_roles import CREATE_MEMBER_ROLE, role_arn
from domain.central_spec import IAM_USERS, Central
from domain.plan import Outcome, Plan, PlanAction
from domain.policy_documents import as_list
from domain.trust_policy import central_trust_problems, requires_mfa
from state.journal import DONE_STATUSES
from tasks.aws import error_code, pages, translate_errors

log = logging.getLogger(__name__)

READ_PERMISSIONS = ("iam:GetRole", "iam:SimulatePrincipalPolicy", "iam:ListMFADevices")

ASSUME = "sts:AssumeRole"
MFA_CONTEXT = {
    "ContextKeyName": "aws:MultiFactorAuthPresent",
    "ContextKeyValues": ["true"],
    "ContextKeyType": "boolean",
}


@dataclass
class RoleCheck:
    """One person, one member account, one role: what was proved and what is wrong."""

    identity: str  # the person: the central principal's name
    account_id: str
    role_name: str
    principal_arn: str
    access: str
    iam_users: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def columns(self) -> dict[str, str]:
        """The verify table's columns of this target."""
        return {
            "old IAM users": ", ".join(self.iam_users),
            "role": self.role_name,
            "access": self.access,
            "checks": "; ".join(self.checked),
        }


def member_role_actions(plan: Plan, account_id: str | None = None) -> list[PlanAction]:
    """The plan's ``create-member-role`` actions (of one member account)."""
    return [
        a
        for a in plan.actions
        if a.kind == CREATE_MEMBER_ROLE and (account_id is None or a.account_id == account_id)
    ]


def planned_checks(plan: Plan, account_id: str) -> list[RoleCheck]:
    """One unchecked row per planned (principal, role) of an account."""
    names = _principal_names(plan)
    rows = []
    for action in member_role_actions(plan, account_id):
        for arn in sorted(action.params.get("principals") or []):
            name = names.get(arn) or _name_of(arn)
            rows.append(
                RoleCheck(
                    name,
                    account_id,
                    action.params["role_name"],
                    arn,
                    str(action.params.get("access", "")),
                    iam_users=_iam_users(plan, account_id, name),
                )
            )
    return rows


def verify_member_roles(
    plan: Plan,
    account_id: str,
    statuses: Mapping[str, str],
    member: boto3.Session,
    central: boto3.Session,
    spec_central: Central,
) -> list[RoleCheck]:
    """Check every planned (person, role) of one member account (see the module docstring).

    Args:
        plan: A ``central-roles`` plan.
        account_id: The member account.
        statuses: Action id -> its journal status (``succeeded``, ``adopted``, ``failed`` ...).
        member: A session in the member account (reads the roles).
        central: A session in the central account (the policy simulator, its users' MFA).
        spec_central: The spec's ``[central]``: how people arrive (MFA with IAM users).

    Returns:
        One check per planned principal of each role, sorted by person and role.
    """
    iam = member.client("iam")
    central_iam = central.client("iam")
    mfa = spec_central.arrive == IAM_USERS
    devices = _MfaDevices(central_iam, spec_central.account)
    checks = planned_checks(plan, account_id)
    for action in member_role_actions(plan, account_id):
        rows = [c for c in checks if c.role_name == action.target]
        status = statuses.get(action.id)
        if status not in DONE_STATUSES:
            for row in rows:
                row.problems.append(
                    f"role {action.target} was not provisioned (create-member-role "
                    f"{status or 'not applied'}): apply this plan's provision stage, then "
                    "verify again"
                )
            continue
        trust = _live_trust(iam, account_id, action.target)
        if trust is None:
            for row in rows:
                row.problems.append(
                    f"role {action.target} does not exist in {account_id} (deleted since the "
                    "apply?): roll back this plan's provision stage and apply it again"
                )
            continue
        arn = role_arn(account_id, spec_central, str(action.params["access"]))
        for row in rows:
            _check_principal(central_iam, row, arn, trust, mfa=mfa)
            if mfa and _is_user(row.principal_arn):
                _check_mfa_device(devices, row)
        _check_nobody_else(action, trust, rows, central_account=spec_central.account, mfa=mfa)
    return sorted(checks, key=lambda c: (c.identity, c.role_name))


def mfa_device_count(iam: Any, central_account: str, user_name: str) -> int | None:
    """How many MFA devices a central user has (paginated); None when the user is gone.

    Args:
        iam: An IAM client of the central account.
        central_account: Its id (for the error's context).
        user_name: The central user.
    """
    try:
        with translate_errors(account_id=central_account, operation="iam:ListMFADevices"):
            return sum(1 for _ in pages(iam, "list_mfa_devices", "MFADevices", UserName=user_name))
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise


def no_mfa_device(user_name: str, then: str) -> str:
    """The refusal for a person arriving as an IAM user without an MFA device."""
    return (
        f"central user {user_name} has no MFA device: the member roles require MFA, so they "
        f"could not switch in; enable one, then {then}"
    )


def central_role_exists(iam: Any, central_account: str, role_name: str) -> bool:
    """Whether a (federated) role of the central account exists (``GetRole``)."""
    try:
        with translate_errors(account_id=central_account, operation="iam:GetRole"):
            iam.get_role(RoleName=role_name)
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return False
        raise
    return True


def simulate_assume(iam: Any, source_arn: str, role_arn: str, *, mfa: bool) -> str:
    """IAM's decision for ``sts:AssumeRole`` on ``role_arn`` by ``source_arn``'s own policies.

    The identity side only: no ``ResourcePolicy`` (the trust is checked in code, the
    simulator's evaluation of it for ``sts:AssumeRole`` is not to be relied on, see the module
    docstring) and no ``CallerArn``.

    Args:
        iam: An IAM client of the central account (the principals').
        source_arn: Whose identity policies are evaluated (a central user or role).
        role_arn: The member role.
        mfa: Whether the request carries ``aws:MultiFactorAuthPresent`` true.

    Returns:
        ``allowed``, ``implicitDeny`` or ``explicitDeny``.
    """
    params: dict[str, Any] = {
        "PolicySourceArn": source_arn,
        "ActionNames": [ASSUME],
        "ResourceArns": [role_arn],
    }
    if mfa:
        params["ContextEntries"] = [MFA_CONTEXT]
    decisions = [
        r["EvalDecision"]
        for r in pages(iam, "simulate_principal_policy", "EvaluationResults", **params)
    ]
    # One action on one resource: one result. Any deny among several would deny.
    return next(
        (d for d in decisions if d != "allowed"), "allowed" if decisions else "implicitDeny"
    )


def trust_allows(trust: dict[str, Any], arn: str, *, mfa: bool) -> bool:
    """An Allow of ``sts:AssumeRole`` naming ``arn`` itself as an AWS principal (with
    ``Bool aws:MultiFactorAuthPresent = true`` in that statement when ``mfa``)."""
    for statement in _assume_allows(trust):
        principal = statement.get("Principal")
        if not isinstance(principal, dict) or arn not in as_list(principal.get("AWS")):
            continue
        if not mfa or requires_mfa(statement):
            return True
    return False


def unplanned_trust_problems(
    trust: dict[str, Any], *, role_account: str, central_account: str, mfa: bool
) -> list[str]:
    """Whom else the trust lets in: ``central_trust_problems``'s findings, and each AWS
    principal that is not a user or role of the central account (other waves' people are)."""
    problems = central_trust_problems(
        trust, role_account=role_account, central_account=central_account, people_are_users=mfa
    )
    prefix = f"arn:aws:iam::{central_account}:"
    for statement in _assume_allows(trust):
        principal = statement.get("Principal")
        named = (
            [str(p) for p in as_list(principal.get("AWS"))]
            if isinstance(principal, dict)
            else [str(principal)]
        )
        for name in named:
            central_principal = name.startswith(prefix) and name[len(prefix) :].startswith(
                ("user/", "role/")
            )
            if central_principal or any(name in p for p in problems):
                continue
            problems.append(
                f"trust to {name}, not a user or role of the central account {central_account}"
            )
    return problems


class _MfaDevices:
    """Central users' MFA device counts, read once per verify of an account."""

    def __init__(self, iam: Any, central_account: str):
        self._iam = iam
        self._account = central_account
        self._counts: dict[str, int | None] = {}

    def count(self, user_name: str) -> int | None:
        if user_name not in self._counts:
            self._counts[user_name] = mfa_device_count(self._iam, self._account, user_name)
        return self._counts[user_name]


def _check_principal(
    simulator: Any, row: RoleCheck, role_arn: str, trust: dict[str, Any], *, mfa: bool
) -> None:
    """The planned principal may switch in: the trust names it, its own policies allow it."""
    arn = row.principal_arn
    central = _account_of(arn)
    suffix = " with MFA" if mfa else ""
    trusted = trust_allows(trust, arn, mfa=mfa)
    if not trusted:
        row.problems.append(
            f"the trust policy of {row.role_name} does not let {row.identity} assume it"
            f"{suffix}: it must name {arn} in an Allow of {ASSUME}"
            + (" with Bool aws:MultiFactorAuthPresent true" if mfa else "")
            + "; put the plan's trust policy back (iam update-assume-role-policy), then "
            "verify again"
        )
    try:
        identity = simulate_assume(simulator, arn, role_arn, mfa=mfa)
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        row.problems.append(
            f"central principal {arn} does not exist in {central}: the person can't sign in "
            "there; re-create it (or re-map the person and plan again)"
        )
        return
    if identity != "allowed":
        row.problems.append(
            f"{row.identity}'s policies in the central account {central} don't allow "
            f"{ASSUME} on {role_arn}{suffix} ({identity}): this plan's access policy for "
            f"{row.access} (put-access-policy, add-group-member) is not in place; apply the "
            "plan's provision stage again"
        )
    elif trusted:
        row.checked.append(f"{row.identity} may switch in{suffix}")


def _check_mfa_device(devices: _MfaDevices, row: RoleCheck) -> None:
    name = _name_of(row.principal_arn)
    count = devices.count(name)
    if count is None:
        return  # gone: said once already, by the simulator's NoSuchEntity
    if count:
        row.checked.append(f"{name} has an MFA device")
    else:
        row.problems.append(no_mfa_device(name, "verify again"))


def _check_nobody_else(
    action: PlanAction,
    trust: dict[str, Any],
    rows: list[RoleCheck],
    *,
    central_account: str,
    mfa: bool,
) -> None:
    """Nobody but central principals may switch in: a root, ``*`` or foreign principal in
    the trust is a problem of every row of the role."""
    problems = unplanned_trust_problems(
        trust, role_account=action.account_id, central_account=central_account, mfa=mfa
    )
    if not problems:
        for row in rows:
            row.checked.append("trust names no root, '*' or foreign principal")
        return
    named = ", ".join(sorted({r.principal_arn for r in rows}))
    for row in rows:
        row.problems.extend(
            f"the trust policy of {action.target} lets others in: {problem}; it must name "
            f"only {named}"
            + (" with aws:MultiFactorAuthPresent true" if mfa else "")
            + ", never a root or '*'; put the plan's trust policy back "
            "(iam update-assume-role-policy), then verify again"
            for problem in problems
        )


def _live_trust(iam: Any, account_id: str, role_name: str) -> dict[str, Any] | None:
    """The role's trust policy as IAM holds it now; None when the role is gone."""
    try:
        with translate_errors(account_id=account_id, operation="iam:GetRole"):
            document = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    if isinstance(document, str):  # URL-encoded JSON on the wire (IAM API reference)
        document = json.loads(unquote(document))
    return dict(document)


def _assume_allows(trust: dict[str, Any]) -> list[dict[str, Any]]:
    """The trust's Allow statements that grant ``sts:AssumeRole``."""
    found = []
    for statement in as_list(trust.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = {str(a).lower() for a in as_list(statement.get("Action"))}
        if actions & {"sts:assumerole", "sts:*", "*"}:
            found.append(statement)
    return found


def _principal_names(plan: Plan) -> dict[str, str]:
    """Central principal ARN -> the person's name, from the plan's assignments."""
    return {
        str(a["principal_id"]): str(a.get("principal_name") or "")
        for a in plan.assignments
        if str(a.get("principal_id", "")).startswith("arn:")
    }


def _iam_users(plan: Plan, account_id: str, identity: str) -> list[str]:
    return sorted(
        u.user
        for u in plan.users
        if u.account_id == account_id and u.outcome == Outcome.MIGRATE and u.identity == identity
    )


def _name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _account_of(arn: str) -> str:
    return arn.split(":")[4] if arn.count(":") >= 5 else ""


def _is_user(arn: str) -> bool:
    return ":user/" in arn
