"""The central account's principals (``central-roles`` target) as the identities mapping reads.

With ``target = "central-roles"`` people sign in to one identity account (``[central]``), as
its IAM users or through the roles an external IdP federates into with SAML, so those
principals play the identity store's users: mapping's rules (``tag:email``, ``username``,
``email-localpart``, overrides) match member accounts' IAM users against them. There are no
groups: a member role's trust policy can name only principals, never a group (IAM user guide,
"IAM JSON policy elements: Principal"), so synthesis assigns per person.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

import boto3

from domain.central_spec import SAML_ROLES, Central
from domain.records import IdentityUser
from tasks.aws import translate_errors
from tasks.identity_store import IdentityStoreContents

log = logging.getLogger(__name__)

# One bulk read gives names, ARNs, tags and (roles) trust policies: no ListUserTags per user.
READ_PERMISSIONS = ("iam:GetAccountAuthorizationDetails",)

# The tags whose value is the person's e-mail, besides ``[central] people_tag``.
EMAIL_TAGS = ("email", "Email")

# A federated role's tag may list several people: "a@x.com b@x.com" or "a@x.com,b@x.com".
_SEPARATORS = re.compile(r"[\s,;]+")


def _pages(iam: Any, filter_: str, key: str, page_size: int | None) -> Iterator[dict[str, Any]]:
    config = {"PageSize": page_size} if page_size else {}
    paginator = iam.get_paginator("get_account_authorization_details")
    for page in paginator.paginate(Filter=[filter_], PaginationConfig=config):
        yield from page.get(key, [])


def _emails(tags: list[dict[str, str]] | None, people_tag: str) -> list[str]:
    keys = dict.fromkeys((*EMAIL_TAGS, people_tag))
    values = {t["Key"]: t.get("Value") or "" for t in tags or []}
    found: dict[str, None] = {}
    for key in keys:
        for address in _SEPARATORS.split(values.get(key, "")):
            if address:
                found[address] = None
    return list(found)


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):  # a client that keeps documents URL-encoded, as IAM sends them
        document = json.loads(urllib.parse.unquote(document))
    statements = (document or {}).get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def is_saml_federated(trust_policy: Any) -> bool:
    """Whether a role's trust policy lets a SAML provider's users in (``Federated`` principal).

    Args:
        trust_policy: The role's AssumeRolePolicyDocument (decoded, or as IAM sends it).

    Returns:
        True when an Allow statement names a ``saml-provider/`` as its ``Federated`` principal.
    """
    for statement in _statements(trust_policy):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        federated = principal.get("Federated") if isinstance(principal, dict) else None
        named = [federated] if isinstance(federated, str) else list(federated or [])
        if any(":saml-provider/" in arn for arn in named):
            return True
    return False


def _protected(principal: dict[str, Any], name: str, globs: tuple[str, ...], tag: str) -> bool:
    """A break-glass principal (the spec's protected globs, or tagged ``tag=true``) is never a
    person's sign-in: the migration must not put it in any access group."""
    if any(fnmatchcase(name.lower(), glob.lower()) for glob in globs):
        return True
    tags = {t.get("Key"): str(t.get("Value", "")) for t in principal.get("Tags") or []}
    return tags.get(tag, "").strip().lower() == "true"


def read_central_identities(
    session: boto3.Session,
    central: Central,
    page_size: int | None = None,
    *,
    protected_globs: tuple[str, ...] = (),
    protected_tag: str = "iamc:protected",
) -> IdentityStoreContents:
    """The central account's people as identity-store users, for mapping.

    ``iam-users``: every IAM user of the account; ``saml-roles``: every role whose trust
    policy federates a SAML provider. Each becomes an :class:`IdentityUser` whose ``user_id``
    is the principal's ARN, ``user_name`` its name and ``emails`` the values of its ``email``,
    ``Email`` and ``[central] people_tag`` tags (several in one value, separated by spaces or
    commas, when one federated role is several people's). ``identity_store_id`` is the
    account's id.

    Args:
        session: A session in the central account.
        central: The spec's ``[central]``.
        page_size: Items per page (tests make it small to cross page boundaries).
        protected_globs: The spec's ``protected_users``: such principals are no candidates.
        protected_tag: The spec's ``protected_tag``: a principal tagged ``true`` is none either.

    Returns:
        The principals, sorted by name; no groups.

    Raises:
        AwsAccessError: Credentials were refused.
    """
    iam = session.client("iam")
    roles = central.arrive == SAML_ROLES
    filter_, key = ("Role", "RoleDetailList") if roles else ("User", "UserDetailList")
    name_key = "RoleName" if roles else "UserName"
    operation = "iam:GetAccountAuthorizationDetails"
    with translate_errors(account_id=central.account, operation=operation):
        raw = [
            principal
            for principal in _pages(iam, filter_, key, page_size)
            if (not roles or is_saml_federated(principal.get("AssumeRolePolicyDocument")))
            and not _protected(principal, principal[name_key], protected_globs, protected_tag)
        ]
    users = sorted(
        (
            IdentityUser(
                user_id=principal["Arn"],
                user_name=principal[name_key],
                display_name=principal[name_key],
                emails=_emails(principal.get("Tags"), central.people_tag),
            )
            for principal in raw
        ),
        key=lambda u: (u.user_name.lower(), u.user_id),
    )
    log.info(
        "central account %s: %d %s",
        central.account,
        len(users),
        "federated roles" if roles else "IAM users",
    )
    return IdentityStoreContents(identity_store_id=central.account, users=users)
