"""Checks of a role's trust policy: who may assume it, and whether conditions pin them down.

Every workload role's trust policy the plan creates goes through :func:`trust_problems`; a
problem is a blocking finding for the ``replace`` stage. A ``central-roles`` member role's goes
through the stricter :func:`central_trust_problems` (people's roles trust named people only).
The workload rules are the ones a reviewer applies to a trust policy (STYLE.md, "Safety
idioms": every trust policy names exactly who may assume the role):

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

from domain.policy_documents import as_list

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


def _conditions(statement: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """``{operator: {key lowercased: [values]}}`` of a statement's Condition block."""
    found: dict[str, dict[str, list[str]]] = {}
    for operator, block in (statement.get("Condition") or {}).items():
        if not isinstance(block, dict):
            continue
        keys = found.setdefault(str(operator), {})
        for key, values in block.items():
            keys.setdefault(str(key).lower(), []).extend(str(v) for v in as_list(values))
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
    aws = [str(p) for p in as_list(principal.get("AWS"))]
    federated = [str(p) for p in as_list(principal.get("Federated"))]
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
    for statement in as_list(document.get("Statement")):
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


# Conditions that narrow an account root to named principals of that account (the central
# account's root trusts every principal there whose own policy allows sts:AssumeRole).
_ROOT_NARROWING_KEYS = frozenset({"aws:principalarn"})
_PRINCIPAL_TAG = "aws:principaltag/"
_ACCOUNT_OF_ARN = re.compile(r"^arn:aws[\w-]*:(?:iam|sts)::(\d{12}):")


def _account_of(principal: str) -> str | None:
    """The account an AWS principal (ARN or bare account id) belongs to."""
    root = _ROOT.match(principal)
    if root:
        return root.group(1) or root.group(2)
    match = _ACCOUNT_OF_ARN.match(principal)
    return match.group(1) if match else None


def requires_mfa(statement: dict[str, Any]) -> bool:
    """``Bool aws:MultiFactorAuthPresent = true``: ``BoolIfExists`` lets credentials without
    the key through (../shared/AWS_FACTS.md, "Trust policies")."""
    values = _conditions(statement).get("Bool", {}).get("aws:multifactorauthpresent", [])
    return bool(values) and all(v.lower() == "true" for v in values)


def central_trust_problems(
    document: dict[str, Any], *, role_account: str, central_account: str, people_are_users: bool
) -> list[str]:
    """What is wrong with a ``central-roles`` member role's trust policy; empty when it names
    exactly the central account's people who may switch into it.

    Stricter than :func:`trust_problems`: a person's role trusts named principals only.
    A violation is an ``Allow`` to ``*``; to an account's root (ARN or bare id), the central
    account's own included, unless ``aws:PrincipalArn`` or a principal tag narrows who; to a
    principal of an account that is neither the central account nor the role's own without
    ``sts:ExternalId`` (a third party); to IAM users (``people_are_users``) without
    ``Bool aws:MultiFactorAuthPresent = true``; to any ``Federated`` or ``Service`` principal
    (people arrive through the central account, never straight into a member account).

    Args:
        document: The trust policy (``AssumeRolePolicyDocument``).
        role_account: The member account the role is in.
        central_account: The identity account (``[central] account``).
        people_are_users: People arrive as the central account's IAM users (MFA required).

    Returns:
        One sentence per violation, for a blocking ``trust-policy`` finding.
    """
    problems: list[str] = []
    for statement in as_list(document.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in statement:
            problems.append("Allow with NotPrincipal: trusts everyone but the principals it names")
        principal = statement.get("Principal")
        anyone, aws, federated = _principals(statement)
        services = (
            [str(s) for s in as_list(principal.get("Service"))]
            if isinstance(principal, dict)
            else []
        )
        keys = _condition_keys(statement)
        narrowed = bool(keys & _ROOT_NARROWING_KEYS) or any(
            k.startswith(_PRINCIPAL_TAG) for k in keys
        )
        if anyone:
            problems.append("trust to any principal ('*'): name the people who may assume it")
        for name in federated:
            problems.append(
                f"trust to the federated principal {name}: people arrive through the central "
                f"account {central_account}, not straight into this account"
            )
        for name in services:
            problems.append(f"trust to the service {name}: a person's role trusts people only")
        for name in aws:
            if name == "*":
                continue
            account = _account_of(name)
            if _ROOT.match(name) and not narrowed:
                whose = (
                    "the central account's"
                    if account == central_account
                    else "its own account's"
                    if account == role_account
                    else "another account's"
                )
                problems.append(
                    f"trust to {whose} root {name} without aws:PrincipalArn or a principal "
                    "tag condition: every principal of that account whose own policy allows "
                    "sts:AssumeRole could assume it"
                )
            elif account not in (central_account, role_account) and "sts:externalid" not in keys:
                problems.append(
                    f"trust to {name} of account {account or 'unknown'}, neither the central "
                    "account nor the role's own, without sts:ExternalId (a third party)"
                )
        if people_are_users and any(":user/" in n for n in aws) and not requires_mfa(statement):
            problems.append(
                "trust to IAM users without Bool aws:MultiFactorAuthPresent = true: a leaked "
                "access key alone could switch into the role"
            )
    return problems


def allowed_principals(document: dict[str, Any]) -> dict[str, bool]:
    """The AWS principals a trust policy's ``Allow`` statements name, each with whether every
    statement naming it requires MFA (``Bool aws:MultiFactorAuthPresent = true``).

    Comparing who a live trust lets in with who a plan's does: IAM may return a one-item
    principal list as the item and orders the list its own way.

    Args:
        document: The trust policy (``AssumeRolePolicyDocument``).

    Returns:
        Principal (ARN, account id or ``*``) -> whether it must sign in with MFA.
    """
    found: dict[str, bool] = {}
    for statement in as_list(document.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        anyone, aws, _ = _principals(statement)
        mfa = requires_mfa(statement)
        for name in ["*"] * anyone + aws:
            found[name] = found.get(name, True) and mfa
    return found
