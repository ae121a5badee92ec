"""SimulatePrincipalPolicy answered from moto's IAM model (moto 5.2.5 does not implement it).

Evaluates a role's (or user's) identity policies as IAM does for a principal in its own
account (IAM user guide, "Policy evaluation logic"): an explicit Deny in any policy wins;
otherwise an Allow of the inline or attached managed policies is needed, and, when the
principal has a permissions boundary, an Allow of the boundary as well; no Allow is an
implicit deny. ``Action``/``NotAction`` and ``Resource``/``NotResource`` match with IAM's
wildcards; ResourceArns default to ``*`` (API reference: "If you do not specify ... the value
defaults to * (all resources)"), which a resource-scoped statement does not match, as the
real simulator answers. A statement's Condition is evaluated with the ContextEntries given
(sandbox.trust's operators: an unknown operator never matches). A user's groups' policies
count as its own.

With a ResourcePolicy (the role's trust policy, for ``sts:AssumeRole*`` on a role ARN) the
call is evaluated as the cross-account request it is for central roles: allowed only when the
identity policies allow it *and* the trust policy allows CallerArn (``sandbox.trust``, with the
ContextEntries as the request's context, e.g. ``aws:MultiFactorAuthPresent``); an explicit Deny
in either wins (IAM user guide, "Cross-account policy evaluation logic"). CallerArn must be an
IAM user's ARN and defaults to PolicySourceArn when that is a user (IAM API reference,
SimulatePrincipalPolicy: "You can specify only the ARN of an IAM user"); with David's
PolicySourceArn and Bob's CallerArn the call is Bob's, with David's policies. Within one account
AWS also lets a trust policy naming the caller's ARN allow on its own; the sandbox always
requires both (stricter), and refuses a ResourcePolicy for any other action or resource rather
than answer it wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.identity_policy import identity_policies, statement_matches
from sandbox.trust import Decision, aws_caller, evaluate, listed, load_document
from sandbox.wire import Call, Reply, iam_backend, query_reply, xml_error

_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")
_MEMBER = re.compile(r"^(ActionNames|ResourceArns)\.member\.(\d+)$")
_USER = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):user/(?:.*/)?[\w+=,.@-]+$")
_ROLE_RESOURCE = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/")
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
    trust, refusal = _resource_policy(params, kind, actions, resources)
    if refusal is not None:
        return xml_error("iam", "InvalidInput", refusal, 400)
    identity, boundary = identity_policies(backend, principal)
    results = []
    for action in actions:
        for resource in resources:
            result = _result(action, resource, identity, boundary, context)
            if trust is not None:
                _with_trust(result, trust, context)
            results.append(result)
    start = int(params.get("Marker") or 0)
    size = int(params.get("MaxItems") or DEFAULT_MAX_ITEMS)
    page = results[start : start + size]
    answer: dict[str, Any] = {"EvaluationResults": page, "IsTruncated": start + size < len(results)}
    if answer["IsTruncated"]:
        answer["Marker"] = str(start + size)
    return query_reply("SimulatePrincipalPolicy", answer)


@dataclass(frozen=True)
class _Trust:
    document: dict[str, Any]
    caller_arn: str
    caller_account: str


def _resource_policy(
    params: dict[str, str], kind: str, actions: list[str], resources: list[str]
) -> tuple[_Trust | None, str | None]:
    """(the trust policy to evaluate with, or None; or why the request is refused)."""
    caller = params.get("CallerArn") or ""
    if caller and not _USER.match(caller):
        return None, "CallerArn must be the ARN of an IAM user."
    if "ResourcePolicy" not in params:
        return None, None
    if not caller:
        if kind != "user":
            return None, (
                "CallerArn is required when a ResourcePolicy is given and PolicySourceArn is "
                "not an IAM user."
            )
        caller = params["PolicySourceArn"]
    document = load_document(params["ResourcePolicy"])
    if document is None:
        return None, "ResourcePolicy is not a valid policy document."
    owner = params.get("ResourceOwner")
    if owner and not re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:root", owner):
        return None, "ResourceOwner must be an account's root ARN (arn:aws:iam::ACCOUNT:root)."
    assumes = all(a.lower().startswith("sts:assumerole") for a in actions)
    if not assumes or not all(_ROLE_RESOURCE.match(r) for r in resources):
        # What the sandbox can't evaluate it refuses, rather than answer it wrongly.
        return None, (
            "the sandbox evaluates a ResourcePolicy only as a role's trust policy: "
            "sts:AssumeRole* actions on role ARNs."
        )
    match = _USER.match(caller)
    return _Trust(document, caller, match.group(1) if match else ""), None


def _with_trust(result: dict[str, Any], trust: _Trust, context: dict[str, str]) -> None:
    """Combine the identity decision with the trust policy's, as a cross-account request."""
    caller = aws_caller(trust.caller_arn, trust.caller_account, **context)
    decided: Decision = evaluate(trust.document, result["EvalActionName"], caller)
    identity = result["EvalDecision"]
    if identity == "explicitDeny" or decided.explicit_deny:
        result["EvalDecision"] = "explicitDeny"
    elif identity == "allowed" and decided.allowed:
        result["EvalDecision"] = "allowed"
    else:
        result["EvalDecision"] = "implicitDeny"
    if decided.allowed or decided.explicit_deny:
        result["MatchedStatements"] = [
            *result["MatchedStatements"],
            {"SourcePolicyId": "ResourcePolicy", "SourcePolicyType": "resource"},
        ]


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


def _matching(
    policies: list[tuple[str, dict]], effect: str, action: str, resource: str, context: dict
) -> list[dict[str, Any]]:
    return [
        {"SourcePolicyId": source, "SourcePolicyType": "IAM Policy"}
        for source, document in policies
        for statement in listed(document.get("Statement", []))
        if isinstance(statement, dict)
        and statement.get("Effect") == effect
        and statement_matches(statement, action, resource, context)
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
