"""SimulatePrincipalPolicy answered from moto's IAM model (moto 5.2.5 does not implement it).

Evaluates a role's (or user's) identity policies as IAM does for a principal in its own
account (IAM user guide, "Policy evaluation logic"): an explicit Deny in any policy wins;
otherwise an Allow of the inline or attached managed policies is needed, and, when the
principal has a permissions boundary, an Allow of the boundary as well; no Allow is an
implicit deny. ``Action``/``NotAction`` and ``Resource``/``NotResource`` match with IAM's
wildcards; ResourceArns default to ``*`` (API reference: "If you do not specify ... the value
defaults to * (all resources)"), which a resource-scoped statement does not match, as the
real simulator answers. A statement's Condition is evaluated with the ContextEntries given
(sandbox.trust's operators: an unknown operator never matches).
"""

from __future__ import annotations

import re
from typing import Any

from domain.least_privilege import wildcard_match
from sandbox.trust import conditions_hold, listed, load_document
from sandbox.wire import Call, Reply, iam_backend, query_reply, xml_error

_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")
_MEMBER = re.compile(r"^(ActionNames|ResourceArns)\.member\.(\d+)$")
_CONTEXT = re.compile(r"^ContextEntries\.member\.(\d+)\.(ContextKeyName|ContextKeyValues)")
DEFAULT_MAX_ITEMS = 100


def simulate_principal_policy(call: Call) -> Reply:
    """One EvaluationResult per action and resource, paged with MaxItems and Marker."""
    params = call.form()
    match = _PRINCIPAL.match(params.get("PolicySourceArn", ""))
    if match is None:
        return xml_error("iam", "InvalidInput", "Invalid PolicySourceArn.", 400)
    account_id, kind, name = match.groups()
    backend = iam_backend(account_id, call.region)
    if kind == "role":
        principal = next((r for r in list(backend.roles.values()) if r.name == name), None)
    else:
        principal = backend.users.get(name)
    if principal is None:
        return xml_error(
            "iam", "NoSuchEntity", f"The {kind} with name {name} cannot be found.", 404
        )
    actions = _members(params, "ActionNames")
    if not actions:
        return xml_error("iam", "InvalidInput", "ActionNames must not be empty.", 400)
    resources = _members(params, "ResourceArns") or ["*"]
    context = _context(params)
    identity, boundary = _policies(backend, principal)
    results = [
        _result(action, resource, identity, boundary, context)
        for action in actions
        for resource in resources
    ]
    start = int(params.get("Marker") or 0)
    size = int(params.get("MaxItems") or DEFAULT_MAX_ITEMS)
    page = results[start : start + size]
    answer: dict[str, Any] = {"EvaluationResults": page, "IsTruncated": start + size < len(results)}
    if answer["IsTruncated"]:
        answer["Marker"] = str(start + size)
    return query_reply("SimulatePrincipalPolicy", answer)


def _members(params: dict[str, str], name: str) -> list[str]:
    found = sorted(
        (int(m.group(2)), value)
        for key, value in params.items()
        if (m := _MEMBER.match(key)) and m.group(1) == name
    )
    return [value for _, value in found]


def _context(params: dict[str, str]) -> dict[str, str]:
    names: dict[str, str] = {}
    values: dict[str, str] = {}
    for key, value in params.items():
        match = _CONTEXT.match(key)
        if match is None:
            continue
        target = names if match.group(2) == "ContextKeyName" else values
        target.setdefault(match.group(1), value)
    return {names[i].lower(): values.get(i, "") for i in names}


def _policies(
    backend: Any, principal: Any
) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(identity policies, boundary policy) as (source id, document) pairs."""
    identity = [(f"inline:{n}", load_document(d) or {}) for n, d in principal.policies.items()]
    for arn, policy in list(principal.managed_policies.items()):
        identity.append((arn, default_document(policy)))
    boundary: list[tuple[str, dict]] = []
    boundary_arn = getattr(principal, "permissions_boundary_arn", None)
    if boundary_arn:
        policy = backend.managed_policies.get(boundary_arn)
        # A boundary whose policy is gone allows nothing (the role can do nothing).
        boundary = [(boundary_arn, default_document(policy) if policy else {})]
    return identity, boundary


def default_document(policy: Any) -> dict[str, Any]:
    """A moto managed policy's default version's document, loaded ({} without one)."""
    for version in policy.versions:
        if version.is_default:
            return load_document(version.document) or {}
    return {}


def _matches(statement: dict[str, Any], action: str, resource: str, context: dict) -> bool:
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
    policies: list[tuple[str, dict]], effect: str, action: str, resource: str, context: dict
) -> list[dict[str, Any]]:
    return [
        {"SourcePolicyId": source, "SourcePolicyType": "IAM Policy"}
        for source, document in policies
        for statement in listed(document.get("Statement", []))
        if isinstance(statement, dict)
        and statement.get("Effect") == effect
        and _matches(statement, action, resource, context)
    ]


def _result(
    action: str,
    resource: str,
    identity: list[tuple[str, dict]],
    boundary: list[tuple[str, dict]],
    context: dict,
) -> dict[str, Any]:
    denied = _matching(identity + boundary, "Deny", action, resource, context)
    allowed = _matching(identity, "Allow", action, resource, context)
    decision = "explicitDeny" if denied else "allowed" if allowed else "implicitDeny"
    outside = bool(boundary) and not _matching(boundary, "Allow", action, resource, context)
    if decision == "allowed" and outside:
        decision = "implicitDeny"  # outside the permissions boundary
    result: dict[str, Any] = {
        "EvalActionName": action,
        "EvalResourceName": resource,
        "EvalDecision": decision,
        "MatchedStatements": denied or allowed,
        "MissingContextValues": [],
    }
    if boundary:
        # As IAM answers for a principal with a boundary (IAM API reference,
        # "PermissionsBoundaryDecisionDetail"): did the boundary allow the action.
        result["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": not outside}
    return result
