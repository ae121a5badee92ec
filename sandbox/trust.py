"""Role trust policies evaluated as STS evaluates them when a role is assumed (moto does not).

Covers what workload roles use: ``Principal`` ``AWS`` (account root, exact ARN, ``*``),
``Service`` and ``Federated``; ``Action`` with wildcards; ``Condition`` with the string and ARN
operators (``StringEquals``, ``StringLike``, ``ArnEquals``, ``ArnLike``, their ``Not`` and
``IfExists`` forms, ``StringEqualsIgnoreCase``, ``Bool``, ``Null``). An explicit Deny wins;
no Allow is an implicit deny (IAM user guide, "Policy evaluation logic"). A condition whose
operator the sandbox does not know is taken the conservative way: an Allow with it does not
apply, a Deny with it does — a policy it can't read denies rather than allows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from domain.least_privilege import wildcard_match

_ARN = re.compile(r"^arn:aws[\w-]*:(iam|sts)::(\d{12}):(.+)$")
_EXPLICIT = "explicitly denied by"


@dataclass(frozen=True)
class Caller:
    """Who asks to assume a role.

    Attributes:
        kind: ``AWS`` (an IAM user, role session or account root), ``Service`` or ``Federated``.
        principal: The user/role ARN, the account root ARN, the service principal
            (``lambda.amazonaws.com``) or the OIDC provider's ARN.
        account_id: The caller's account (AWS principals).
        context: Request context keys (lower-cased), e.g. ``sts:externalid``,
            ``aws:sourceaccount``, ``token.actions.githubusercontent.com:sub``.
    """

    kind: str
    principal: str
    account_id: str = ""
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str

    @property
    def explicit_deny(self) -> bool:
        """A Deny statement decided (not merely no Allow): IAM's ``explicitDeny``."""
        return not self.allowed and self.why.startswith(_EXPLICIT)


def aws_caller(principal_arn: str, account_id: str, **context: str) -> Caller:
    """An AWS principal with ``aws:PrincipalArn``/``aws:PrincipalAccount`` in its context.

    Args:
        principal_arn: A user ARN, a role ARN (for a role session) or ``arn:aws:iam::A:root``.
        account_id: The principal's account.
        context: More context keys, e.g. ``**{"sts:ExternalId": "x"}``.
    """
    keys = {"aws:principalarn": principal_arn, "aws:principalaccount": account_id}
    keys.update({k.lower(): v for k, v in context.items() if v is not None})
    return Caller("AWS", principal_arn, account_id, keys)


def evaluate(document: str | dict[str, Any], action: str, caller: Caller) -> Decision:
    """Whether ``caller`` may perform ``action`` (``sts:AssumeRole``…) under a trust policy.

    Args:
        document: The role's AssumeRolePolicyDocument (JSON, possibly URL-encoded, or parsed).
        action: The STS action asked for.
        caller: Who asks, with the request's context keys.

    Returns:
        The decision, and which statement (or the lack of one) decided it.
    """
    policy = _load(document)
    if policy is None:
        return Decision(False, "the role's trust policy is not valid JSON")
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    allowed_by: str | None = None
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict) or not _applies(statement, action, caller):
            continue
        label = statement.get("Sid") or f"statement {index + 1}"
        if statement.get("Effect") == "Deny":
            return Decision(False, f"{_EXPLICIT} {label}")
        if statement.get("Effect") == "Allow" and allowed_by is None:
            allowed_by = label
    if allowed_by is not None:
        return Decision(True, f"allowed by {allowed_by}")
    return Decision(False, f"no statement of the trust policy allows {caller.principal}")


def _load(document: str | dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(document, dict):
        return document
    for text in (document, unquote(document)):
        try:
            loaded = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(loaded, dict):
            return loaded
    return None


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _applies(statement: dict[str, Any], action: str, caller: Caller) -> bool:
    if "Action" in statement:
        if not any(wildcard_match(action, a, fold=True) for a in _listed(statement["Action"])):
            return False
    elif "NotAction" in statement and any(
        wildcard_match(action, a, fold=True) for a in _listed(statement["NotAction"])
    ):
        return False
    if not _principal_matches(statement.get("Principal"), caller):
        return False
    return _conditions_hold(
        statement.get("Condition") or {}, caller.context, deny=statement.get("Effect") == "Deny"
    )


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for value in _listed(principal.get(caller.kind)):
        if caller.kind == "AWS" and _aws_principal_matches(str(value), caller):
            return True
        if caller.kind != "AWS" and str(value) == caller.principal:
            return True
    return False


def _aws_principal_matches(value: str, caller: Caller) -> bool:
    """``*``, an account id or its root ARN (any principal of the account), or the exact
    user/role ARN (a role matches its sessions; paths don't matter for the match)."""
    if value == "*":
        return True
    if re.fullmatch(r"\d{12}", value):
        return value == caller.account_id
    match = _ARN.match(value)
    if match is None:
        return False
    account, resource = match.group(2), match.group(3)
    if resource == "root":
        return account == caller.account_id
    return _identity(value) == _identity(caller.principal)


def _identity(arn: str) -> tuple[str, str, str] | None:
    """(account, kind, name) of a user, role or role-session ARN, paths dropped."""
    match = _ARN.match(arn)
    if match is None:
        return None
    account, resource = match.group(2), match.group(3)
    kind, _, rest = resource.partition("/")
    if kind == "assumed-role":
        return account, "role", rest.split("/", 1)[0]
    return account, kind, rest.rsplit("/", 1)[-1]


def _conditions_hold(
    conditions: dict[str, Any], context: dict[str, str], *, deny: bool = False
) -> bool:
    """Every condition holds. ``deny``: the statement is a Deny, so a condition the sandbox
    can't evaluate (an unknown operator, a malformed block) holds — it denies."""
    if not isinstance(conditions, dict):
        return deny
    for operator, tests in conditions.items():
        if not isinstance(tests, dict):
            return deny
        for key, expected in tests.items():
            held = _condition_holds(operator, key.lower(), _listed(expected), context)
            if held is None:
                held = deny
            if not held:
                return False
    return True


def _condition_holds(
    operator: str, key: str, expected: list[Any], context: dict[str, str]
) -> bool | None:
    """Whether the condition holds; None when the operator is not one the sandbox knows."""
    value = context.get(key)
    if operator == "Null":
        # "true": the key is absent; "false": it is present (IAM user guide, "Condition
        # operator to check existence of condition keys").
        return any((value is None) == (str(e).lower() == "true") for e in expected)
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    negated = "Not" in base
    compare = _COMPARATORS.get(base.replace("Not", "", 1))
    if compare is None:
        return None
    if value is None:
        # A missing key satisfies only the negated operators and the IfExists forms
        # (IAM user guide, "Condition operators": ...IfExists, and negated matching).
        return if_exists or negated
    found = any(compare(value, str(e)) for e in expected)
    return not found if negated else found


def _bool(value: str, expected: str) -> bool:
    return value.lower() == expected.lower()


_COMPARATORS = {
    "StringEquals": lambda value, expected: value == expected,
    "StringEqualsIgnoreCase": lambda value, expected: value.lower() == expected.lower(),
    "StringLike": wildcard_match,
    "ArnEquals": lambda value, expected: value == expected,
    "ArnLike": wildcard_match,
    "Bool": _bool,
}

# What the sandbox's identity-policy simulator (sandbox/policy_simulator.py) evaluates with.
conditions_hold = _conditions_hold
listed = _listed
load_document = _load
