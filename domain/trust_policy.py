"""Checks of a role's trust policy: who may assume it, and whether conditions pin them down.

Every trust policy the plan creates goes through :func:`trust_problems`; a problem is a blocking
finding for the ``replace`` stage. The rules are the ones a reviewer applies to a trust policy
(STYLE.md, "Safety idioms": every trust policy names exactly who may assume the role):

- an ``Allow`` to ``*`` (``"Principal": "*"`` or ``{"AWS": "*"}``) without a condition that
  narrows who (organization, principal ARN, source account or ARN, ExternalId);
- an ``Allow`` to another account's ``:root`` (or its bare id) without an ``sts:ExternalId`` or
  an organization condition (the confused deputy: IAM user guide, "The confused deputy
  problem");
- an ``Allow`` to GitHub's OIDC provider without ``aud = sts.amazonaws.com`` (StringEquals) or
  without a ``sub`` condition, or with a ``sub`` whose wildcard spans repositories
  (``repo:org/*``, ``repo:*``, ``*``): GitHub's own guidance, "Configuring OpenID Connect in
  Amazon Web Services", and AWS's IAM condition checks for ``token.actions.githubusercontent.com``.
"""

from __future__ import annotations

import re
from typing import Any

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "sts.amazonaws.com"
# Conditions that narrow a "*" principal to a known set of callers (keys compared lowercased).
_NARROWING_KEYS = frozenset(
    {
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:sourcearn",
        "aws:sourceaccount",
        "aws:sourceorgid",
        "sts:externalid",
    }
)
# Conditions that make a foreign account's root trust safe to give.
_FOREIGN_ROOT_KEYS = frozenset(
    {"sts:externalid", "aws:principalorgid", "aws:principalorgpaths", "aws:principalarn"}
)
_ROOT = re.compile(r"^(?:arn:aws[\w-]*:iam::(\d{12}):root|(\d{12}))$")


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _conditions(statement: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """``{operator: {key lowercased: [values]}}`` of a statement's Condition block."""
    found: dict[str, dict[str, list[str]]] = {}
    for operator, block in (statement.get("Condition") or {}).items():
        if not isinstance(block, dict):
            continue
        keys = found.setdefault(str(operator), {})
        for key, values in block.items():
            keys.setdefault(str(key).lower(), []).extend(str(v) for v in _listed(values))
    return found


def _condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key for block in _conditions(statement).values() for key in block}


def _principals(statement: dict[str, Any]) -> tuple[bool, list[str], list[str]]:
    """(anyone, AWS principals, Federated principals) a statement names."""
    principal = statement.get("Principal")
    if principal == "*":
        return True, [], []
    if not isinstance(principal, dict):
        return False, [], []
    aws = [str(p) for p in _listed(principal.get("AWS"))]
    federated = [str(p) for p in _listed(principal.get("Federated"))]
    return "*" in aws, aws, federated


def _sub_spans_repositories(value: str) -> bool:
    """Whether an OIDC ``sub`` pattern could match more than one repository."""
    if not any(c in value for c in "*?"):
        return False
    if not value.startswith("repo:"):
        return True  # "*", or a pattern that is not pinned to a repository at all
    repository = value[len("repo:") :].split(":", 1)[0]
    owner, _, name = repository.partition("/")
    return not owner or not name or any(c in repository for c in "*?")


def _github_problems(statement: dict[str, Any]) -> list[str]:
    conditions = _conditions(statement)
    aud_key, sub_key = f"{GITHUB_OIDC_HOST}:aud", f"{GITHUB_OIDC_HOST}:sub"
    problems = []
    audiences = conditions.get("StringEquals", {}).get(aud_key, [])
    if audiences != [GITHUB_AUDIENCE]:
        problems.append(
            f"GitHub OIDC trust without StringEquals {aud_key} = {GITHUB_AUDIENCE}: tokens "
            "minted for another audience could assume the role"
        )
    subs = [v for block in conditions.values() for v in block.get(sub_key, [])]
    if not subs:
        problems.append(
            f"GitHub OIDC trust without a {sub_key} condition: any repository's workflow "
            "on GitHub could assume the role"
        )
    for value in subs:
        if _sub_spans_repositories(value):
            problems.append(
                f"GitHub OIDC trust with {sub_key} {value!r}: the wildcard spans repositories; "
                "pin it to one repository (repo:OWNER/NAME:...)"
            )
    return problems


def trust_problems(document: dict[str, Any], account_id: str) -> list[str]:
    """What is wrong with a role's trust policy; empty when it names exactly who may assume it.

    Args:
        document: The trust policy (``AssumeRolePolicyDocument``).
        account_id: The account the role is in (its own root is not "foreign").

    Returns:
        One sentence per violation, for a blocking finding.
    """
    problems: list[str] = []
    for statement in _listed(document.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        anyone, aws, federated = _principals(statement)
        keys = _condition_keys(statement)
        if anyone and not keys & _NARROWING_KEYS:
            problems.append(
                "trust to any principal ('*') without a condition that narrows who "
                "(aws:PrincipalOrgID, aws:PrincipalArn, aws:SourceAccount, sts:ExternalId)"
            )
        for principal in aws:
            match = _ROOT.match(principal)
            foreign = match is not None and (match.group(1) or match.group(2)) != account_id
            if foreign and not keys & _FOREIGN_ROOT_KEYS:
                problems.append(
                    f"trust to another account's root {principal} without sts:ExternalId or "
                    "aws:PrincipalOrgID: any principal that account allows could assume it"
                )
        if any(p.endswith(f"oidc-provider/{GITHUB_OIDC_HOST}") for p in federated):
            problems.extend(_github_problems(statement))
    return problems
