"""Did the central roles land? Per person, account and role: they can switch in, others can't.

For the ``central-roles`` target (``domain.central_roles``), for each ``create-member-role``
action of a plan, in its member account:

1. the action is done (journal) and the role exists (``GetRole``), whose live trust policy is
   read there;
2. per planned principal (``params["principals"]``): IAM's policy simulator, in the central
   account, says the principal may ``sts:AssumeRole`` the role, with its own identity policies
   (the central group's or federated role's access policy) *and* the live trust policy as the
   resource policy, the caller being the principal and, when people arrive as IAM users, with
   ``aws:MultiFactorAuthPresent`` true;
3. one central principal *not* planned for the role (another principal of the plan, else any
   other IAM user of the central account) may not, even with a planned principal's policies
   (``PolicySourceArn`` the planned principal, ``CallerArn`` the other one: "as if Bob had
   David's policies", IAM API reference, SimulatePrincipalPolicy). So only the trust policy
   decides: a trust naming the central account's root, ``*``, or a principal it should not
   is caught, where the other principal's own policies would hide it.

The simulator accepts only an IAM user as ``CallerArn``: a federated role (``saml-roles``) is
checked on its identity side by the simulator and on the trust side by the trust naming it;
the negative check still runs with an unplanned IAM user as the caller. Reads only.
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

from domain.central_spec import IAM_USERS, Central
from domain.plan import Outcome, Plan, PlanAction
from state.journal import DONE_STATUSES
from tasks.aws import error_code, pages, translate_errors

log = logging.getLogger(__name__)

READ_PERMISSIONS = ("iam:GetRole", "iam:SimulatePrincipalPolicy", "iam:ListUsers")

CREATE_MEMBER_ROLE = "create-member-role"
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


def member_role_arn(action: PlanAction) -> str:
    params = action.params
    return f"arn:aws:iam::{action.account_id}:role{params.get('path') or '/'}{params['role_name']}"


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
        central: A session in the central account (the policy simulator, its users).
        spec_central: The spec's ``[central]``: how people arrive (MFA with IAM users).

    Returns:
        One check per planned principal of each role, sorted by person and role.
    """
    iam = member.client("iam")
    simulator = central.client("iam")
    mfa = spec_central.arrive == IAM_USERS
    others = _Others(plan, simulator, spec_central.account)
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
        _check_role(simulator, action, trust, rows, others, mfa=mfa)
    return sorted(checks, key=lambda c: (c.identity, c.role_name))


def simulate_assume(
    iam: Any,
    source_arn: str,
    role_arn: str,
    *,
    mfa: bool,
    trust: dict[str, Any] | None = None,
    caller_arn: str | None = None,
) -> str:
    """IAM's decision for ``sts:AssumeRole`` on ``role_arn`` with ``source_arn``'s policies.

    Args:
        iam: An IAM client of the central account (the principals').
        source_arn: Whose identity policies are evaluated.
        role_arn: The member role.
        mfa: Whether the request carries ``aws:MultiFactorAuthPresent`` true.
        trust: The role's trust policy, evaluated as the resource policy; None: the identity
            side only.
        caller_arn: Who asks (an IAM user); required with ``trust`` for a role's policies.

    Returns:
        ``allowed``, ``implicitDeny`` or ``explicitDeny``.
    """
    params: dict[str, Any] = {
        "PolicySourceArn": source_arn,
        "ActionNames": [ASSUME],
        "ResourceArns": [role_arn],
    }
    if trust is not None:
        params["ResourcePolicy"] = json.dumps(trust)
        params["ResourceOwner"] = f"arn:aws:iam::{role_arn.split(':')[4]}:root"
    if caller_arn:
        params["CallerArn"] = caller_arn
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


class _Others:
    """Central principals to try the negative check with: the plan's, else the account's users."""

    def __init__(self, plan: Plan, iam: Any, central_account: str):
        self._planned = sorted(
            {arn for a in member_role_actions(plan) for arn in a.params.get("principals") or []}
        )
        self._iam = iam
        self._account = central_account
        self._users: list[str] | None = None

    def one_besides(self, principals: set[str]) -> str | None:
        """An IAM user (the simulator's CallerArn must be one) not among ``principals``."""
        for arn in self._planned:
            if _is_user(arn) and arn not in principals:
                return arn
        if self._users is None:
            with translate_errors(account_id=self._account, operation="iam:ListUsers"):
                self._users = sorted(u["Arn"] for u in pages(self._iam, "list_users", "Users"))
        return next((arn for arn in self._users if arn not in principals), None)


def _check_role(
    simulator: Any,
    action: PlanAction,
    trust: dict[str, Any],
    rows: list[RoleCheck],
    others: _Others,
    *,
    mfa: bool,
) -> None:
    role_arn = member_role_arn(action)
    sources = [
        row.principal_arn
        for row in rows
        if _check_principal(simulator, row, role_arn, trust, mfa=mfa)
    ]
    if not rows:
        return
    if not sources:
        for row in rows:
            row.checked.append("nobody else tried: no planned principal's policies allow it yet")
        return
    _check_nobody_else(simulator, action, trust, rows, others, sources[0], mfa=mfa)


def _check_principal(
    simulator: Any, row: RoleCheck, role_arn: str, trust: dict[str, Any], *, mfa: bool
) -> bool:
    """The planned principal may switch in; returns whether its own policies allow it."""
    arn = row.principal_arn
    central = _account_of(arn)
    with_mfa = " with MFA" if mfa else ""
    try:
        # The simulator takes only an IAM user as CallerArn: a federated role's side of the
        # trust is whether the trust names it.
        if _is_user(arn):
            decision = simulate_assume(
                simulator, arn, role_arn, mfa=mfa, trust=trust, caller_arn=arn
            )
        else:
            decision = "allowed" if _trust_names(trust, arn) else "implicitDeny"
        # Allowed with the trust means allowed by its own policies (both must allow); else
        # ask which side refuses.
        identity = (
            "allowed"
            if decision == "allowed" and _is_user(arn)
            else simulate_assume(simulator, arn, role_arn, mfa=mfa)
        )
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        row.problems.append(
            f"central principal {arn} does not exist in {central}: the person can't sign in "
            "there; re-create it (or re-map the person and plan again)"
        )
        return False
    if identity != "allowed":
        row.problems.append(
            f"{row.identity}'s policies in the central account {central} don't allow "
            f"{ASSUME} on {role_arn}{with_mfa} ({identity}): this plan's access policy for "
            f"{row.access} (put-access-policy, add-group-member) is not in place; apply the "
            "plan's provision stage again"
        )
    elif decision != "allowed":
        row.problems.append(
            f"the trust policy of {row.role_name} does not let {row.identity} assume it"
            f"{with_mfa} ({decision}): it must name {arn}"
            + (" with aws:MultiFactorAuthPresent true" if mfa else "")
            + "; put the plan's trust policy back (iam update-assume-role-policy), then "
            "verify again"
        )
    else:
        row.checked.append(f"{row.identity} may switch in{with_mfa}")
    return identity == "allowed"


def _check_nobody_else(
    simulator: Any,
    action: PlanAction,
    trust: dict[str, Any],
    rows: list[RoleCheck],
    others: _Others,
    source: str,
    *,
    mfa: bool,
) -> None:
    """One unplanned central principal, with ``source``'s (a planned principal's) policies,
    must be refused: then only the trust policy decides."""
    principals = {r.principal_arn for r in rows}
    other = others.one_besides(principals)
    if other is None:
        for row in rows:
            row.checked.append("no other central principal to try the trust policy with")
        return
    decision = simulate_assume(
        simulator, source, member_role_arn(action), mfa=mfa, trust=trust, caller_arn=other
    )
    if decision != "allowed":
        for row in rows:
            row.checked.append(f"{_name_of(other)} (not planned) is refused")
        return
    named = ", ".join(sorted(principals))
    for row in rows:
        row.problems.append(
            f"the trust policy of {action.target} lets {_name_of(other)} (not planned for it) "
            f"assume it: it must name only {named}"
            + (" with aws:MultiFactorAuthPresent true" if mfa else "")
            + ", never the central account's root or '*'; put the plan's trust policy back "
            "(iam update-assume-role-policy), then verify again"
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


def _trust_names(trust: dict[str, Any], arn: str) -> bool:
    """An Allow of ``sts:AssumeRole`` naming ``arn`` itself as an AWS principal."""
    for statement in _listed(trust.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = {str(a).lower() for a in _listed(statement.get("Action"))}
        if not actions & {"sts:assumerole", "sts:*", "*"}:
            continue
        principal = statement.get("Principal")
        if isinstance(principal, dict) and arn in _listed(principal.get("AWS")):
            return True
    return False


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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
