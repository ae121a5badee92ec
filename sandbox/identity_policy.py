"""Whether a principal's own identity policies allow an action on a resource, from moto's model.

What STS needs for a cross-account AssumeRole besides the role's trust (IAM user guide,
"Cross-account policy evaluation logic": the trust policy and the caller's identity-based
policies must both allow it). A user's policies are its inline and attached ones and those of
its groups; a role's (for its sessions) its inline and attached ones. An explicit Deny wins;
without an Allow the answer is an implicit deny; a permissions boundary must allow it too.
``Action``/``NotAction`` and ``Resource``/``NotResource`` match with IAM's wildcards, and
``Condition`` with sandbox.trust's operators (an unknown operator never lets an Allow apply).
"""

from __future__ import annotations

import re
from typing import Any

from domain.least_privilege import wildcard_match
from sandbox.trust import Decision, conditions_hold, listed, load_document
from sandbox.wire import iam_backend

_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")

Policies = list[tuple[str, dict[str, Any]]]  # (source id, document)


def default_document(policy: Any) -> dict[str, Any]:
    """A moto managed policy's default version's document, loaded ({} without one)."""
    for version in policy.versions:
        if version.is_default:
            return load_document(version.document) or {}
    return {}


def identity_policies(backend: Any, principal: Any) -> tuple[Policies, Policies]:
    """(identity policies, permissions boundary) of a moto user or role.

    A user's groups' inline and attached policies count as its own (IAM user guide, "Policy
    evaluation logic": identity-based policies include those of the user's groups).
    """
    holders = [principal]
    if hasattr(principal, "access_keys"):  # a user: its groups' policies are its own too
        holders += [g for g in list(backend.groups.values()) if principal in g.users]
    identity: Policies = []
    for holder in holders:
        owner = "" if holder is principal else f"group/{holder.name}:"
        for name, document in list(holder.policies.items()):
            identity.append((f"{owner}inline:{name}", load_document(document) or {}))
        for arn, policy in list(holder.managed_policies.items()):
            identity.append((arn, default_document(policy)))
    boundary: Policies = []
    boundary_arn = getattr(principal, "permissions_boundary_arn", None)
    if boundary_arn:
        policy = backend.managed_policies.get(boundary_arn)
        # A boundary whose policy is gone allows nothing.
        boundary = [(boundary_arn, default_document(policy) if policy else {})]
    return identity, boundary


def identity_allows(
    principal_arn: str, action: str, resource: str, context: dict[str, str]
) -> Decision:
    """Whether the user or role ``principal_arn`` may perform ``action`` on ``resource`` by
    its own identity policies.

    Args:
        principal_arn: ``arn:aws:iam::A:user/...`` or ``arn:aws:iam::A:role/...`` (a role
            session's role).
        action: E.g. ``sts:AssumeRole``.
        resource: The resource's ARN.
        context: Request context keys, lower-cased (as ``sandbox.trust.Caller.context``).

    Returns:
        The decision and which policy (or the lack of one) decided it.
    """
    match = _PRINCIPAL.match(principal_arn)
    if match is None:
        return Decision(False, f"{principal_arn} is not an IAM user or role")
    account_id, kind, name = match.groups()
    backend = iam_backend(account_id)
    if kind == "user":
        principal = backend.users.get(name)
    else:
        principal = next((r for r in list(backend.roles.values()) if r.name == name), None)
    if principal is None:
        return Decision(False, f"no {kind} {name} in {account_id}")
    identity, boundary = identity_policies(backend, principal)
    denied = _matching(identity + boundary, "Deny", action, resource, context)
    if denied:
        return Decision(False, f"explicitly denied by {denied[0]}")
    allowed = _matching(identity, "Allow", action, resource, context)
    if not allowed:
        return Decision(False, f"no identity policy of {principal_arn} allows {action}")
    if boundary and not _matching(boundary, "Allow", action, resource, context):
        return Decision(False, f"{action} is outside the permissions boundary {boundary[0][0]}")
    return Decision(True, f"allowed by {allowed[0]}")


def statement_matches(
    statement: dict[str, Any], action: str, resource: str, context: dict[str, str]
) -> bool:
    """Whether an identity-policy statement applies to ``action`` on ``resource``."""
    if "Action" in statement:
        if not any(wildcard_match(action, a, fold=True) for a in listed(statement["Action"])):
            return False
    elif "NotAction" not in statement or any(
        wildcard_match(action, a, fold=True) for a in listed(statement["NotAction"])
    ):
        return False
    if "Resource" in statement:
        if not any(wildcard_match(resource, r) for r in listed(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(
        wildcard_match(resource, r) for r in listed(statement["NotResource"])
    ):
        return False
    return conditions_hold(
        statement.get("Condition") or {}, context, deny=statement.get("Effect") == "Deny"
    )


def _matching(
    policies: Policies, effect: str, action: str, resource: str, context: dict[str, str]
) -> list[str]:
    """The sources of the policies with a statement of ``effect`` that applies."""
    return [
        source
        for source, document in policies
        if any(
            isinstance(statement, dict)
            and statement.get("Effect") == effect
            and statement_matches(statement, action, resource, context)
            for statement in listed(document.get("Statement", []))
        )
    ]
