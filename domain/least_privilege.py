"""Least privilege from use: the services an access grants, which were used, and the trim.

Narrowing is by SERVICE, never by action. CloudTrail records management events only (data
events such as s3:GetObject are logged only where a trail enables them: CloudTrail user guide,
"Logging data events"), and IAM's action-level last-accessed data covers a few services only
(IAM user guide, "Refining permissions using last accessed information"): an action missing
from the usage may well have been used. Action-level data is reported, never used to cut.

The trim is conservative and explained:
- a managed policy none of whose granted services was used is dropped; one that grants used
  and unused services is narrowed: replaced by its own statements keeping the used services'
  actions, in the set's inline policy (an AWS-managed document can't be edited; the copy keeps
  its Resource and Condition elements, but not AWS's later edits to the policy); one holding a
  Deny statement is a guardrail and always kept whole (dropping a Deny widens access), as is
  one with a ``NotAction`` Allow (not narrowable) or whose document the inventory lacks;
- inline Allow statements keep the ``Action`` entries of used services (a ``*`` becomes the
  used services' ``svc:*``); Deny statements are kept as they are; ``NotAction`` Allow
  statements are kept and flagged as not narrowable;
- ``iam:PassRole`` is a permission check only, never seen used: an entry granting it keeps
  it whenever any service was used (``PERMISSION_ONLY_ACTIONS``);
- a holder whose usage was not read (or a group with an unread member) is not trimmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from domain.fingerprinted_access import FingerprintedAccess, Holder, PolicyRef, build_access
from domain.policy_documents import as_list, statement_pairs
from domain.usage import UsageRead, UserUsage

ALL_SERVICES = "all services"
_WILDCARD = re.compile(r"[*?]")


@dataclass(frozen=True)
class Granted:
    """The IAM service namespaces an access (or one policy) allows; ``everything``: "*"."""

    services: frozenset[str] = frozenset()
    everything: bool = False

    def __or__(self, other: Granted) -> Granted:
        return Granted(self.services | other.services, self.everything or other.everything)

    def covers(self, namespace: str) -> bool:
        return self.everything or namespace in self.services

    def as_json(self) -> list[str] | str:
        return ALL_SERVICES if self.everything else sorted(self.services)


NOTHING = Granted()


def _namespace(entry: Any) -> str | None:
    """ "s3:GetObject" -> "s3"; None for "*" or a wildcard prefix (any service)."""
    prefix, sep, _ = str(entry).partition(":")
    if not sep or _WILDCARD.search(prefix):
        return None
    return prefix.lower()


def statement_grants(statement: dict[str, Any]) -> Granted:
    """The services an Allow statement grants (a Deny grants none); NotAction: any service."""
    if statement.get("Effect") != "Allow":
        return NOTHING
    if "Action" not in statement:
        return Granted(everything=True)  # NotAction: everything but some actions
    names = [_namespace(e) for e in as_list(statement["Action"])]
    if any(n is None for n in names):
        return Granted(everything=True)
    return Granted(frozenset(n for n in names if n))


def document_grants(document: dict[str, Any] | None) -> Granted:
    """The services a policy document's Allow statements grant."""
    granted = NOTHING
    for statement in as_list((document or {}).get("Statement", [])):
        if isinstance(statement, dict):
            granted = granted | statement_grants(statement)
    return granted


def _has_deny(document: dict[str, Any] | None) -> bool:
    return any(
        isinstance(s, dict) and s.get("Effect") == "Deny"
        for s in as_list((document or {}).get("Statement", []))
    )


class PolicyIndex:
    """Managed policy documents by ARN, and what each grants, read once however many share.

    Args:
        documents: Managed policy ARN -> its default version's document (the inventory's).
    """

    def __init__(self, documents: dict[str, Any]):
        self.documents = documents
        self._read: dict[str, tuple[Granted | None, bool]] = {}

    def _of(self, ref: PolicyRef) -> tuple[Granted | None, bool]:
        if ref.arn not in self._read:
            document = self.documents.get(ref.arn)
            grants = None if document is None else document_grants(document)
            self._read[ref.arn] = (grants, _has_deny(document))
        return self._read[ref.arn]

    def grants(self, ref: PolicyRef) -> Granted | None:
        """What the policy grants; None when the inventory has no document for it."""
        return self._of(ref)[0]

    def is_guardrail(self, ref: PolicyRef) -> bool:
        """The policy holds a Deny: dropping it would widen access."""
        return self._of(ref)[1]


def access_grants(access: FingerprintedAccess, policies: PolicyIndex) -> Granted:
    """The services an access grants: its managed policies' documents and inline statements
    (its boundary restricts, it grants nothing); a policy without a document counts as
    granting every service."""
    granted = NOTHING
    for ref in access.aws_managed + access.customer_managed:
        granted = granted | (policies.grants(ref) or Granted(everything=True))
    for statement in access.statements.values():
        granted = granted | statement_grants(statement)
    return granted


def used_services(usage: UserUsage) -> dict[str, str]:
    """Namespace -> last used (ISO): the service-level data, and the actions' services."""
    used = {ns.lower(): when for ns, when in usage.services.items()}
    for action, when in usage.actions.items():
        ns = _namespace(action)
        if ns and when > used.get(ns, ""):
            used[ns] = when
    return used


@dataclass
class Trim:
    """An access trimmed to the services used, and what it lost."""

    access: FingerprintedAccess
    policies_dropped: list[str] = field(default_factory=list)
    services_removed: list[str] = field(default_factory=list)
    # All but the used services were removed (a "*" grant narrowed).
    all_other_services: bool = False
    # Managed policy name -> how many of its services nobody of the holder used (kept whole).
    kept_whole: dict[str, int] = field(default_factory=dict)
    # Managed policy name -> how many of its services nobody used (0: it granted every
    # service): replaced by its statements for the used services, inline.
    policies_narrowed: dict[str, int] = field(default_factory=dict)
    statements_narrowed: int = 0
    not_narrowable: int = 0  # NotAction Allow statements, kept
    # The ARNs of the policies dropped or narrowed: verify excuses exactly these (a name alone
    # would excuse another account's or path's customer-managed policy of the same name).
    policy_arns_removed: list[str] = field(default_factory=list)

    @property
    def loses_anything(self) -> bool:
        return bool(
            self.policies_dropped
            or self.policies_narrowed
            or self.services_removed
            or self.all_other_services
            or self.statements_narrowed
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "policies_dropped": self.policies_dropped,
            "services_removed": self.services_removed,
            "all_other_services": self.all_other_services,
            "kept_whole": dict(sorted(self.kept_whole.items())),
            "policies_narrowed": dict(sorted(self.policies_narrowed.items())),
            "statements_narrowed": self.statements_narrowed,
            "not_narrowable": self.not_narrowable,
            "policy_arns_removed": sorted(self.policy_arns_removed),
        }


def _keep_policy(ref: PolicyRef, policies: PolicyIndex, used: set[str]) -> int | None:
    """None: drop the policy; else how many of its services went unused (it is kept whole)."""
    granted = policies.grants(ref)
    if granted is None or policies.is_guardrail(ref):
        return 0  # unknown document, or a guardrail: never dropped
    if granted.everything:
        return 0 if used else None
    if not granted.services & used:
        # A policy granting a permission-only action (iam:PassRole) of a service nobody used
        # is narrowed to it, never dropped: that use can't be seen.
        if used and _grants_permission_only(policies.documents.get(ref.arn)):
            return len(granted.services)
        return None
    return len(granted.services - used)


def _grants_permission_only(document: dict[str, Any] | None) -> bool:
    return any(
        isinstance(s, dict)
        and s.get("Effect") == "Allow"
        and _permission_only(as_list(s.get("Action", [])))
        for s in as_list((document or {}).get("Statement", []))
    )


# Actions that are a permission check only: no API call of that name exists, so neither
# CloudTrail nor IAM's last-accessed data ever shows them used. iam:PassRole is checked when
# a person hands a role to another service (ec2:RunInstances with an instance profile,
# lambda:CreateFunction...: IAM user guide, "Granting a user permissions to pass a role to an
# AWS service"): the use shows in that service, never in iam. Trimming it because iam looks
# unused would break what the person did use, so an entry granting it is kept whenever the
# holder used any service. (sts:TagSession and sts:SetSourceIdentity are permission-only too,
# but checked on an sts:AssumeRole* call, which shows sts used, so its entries are kept.)
PERMISSION_ONLY_ACTIONS = ("iam:PassRole",)


def _permission_only(entries: list[Any]) -> list[str]:
    """The permission-only actions the Action entries grant ("*", "iam:*", "iam:Pass*"...)."""
    return [
        action
        for action in PERMISSION_ONLY_ACTIONS
        if any(_wildcard_match(str(entry), action) for entry in entries)
    ]


def _narrow_actions(entries: list[Any], used: set[str]) -> list[str]:
    kept: list[str] = []
    for entry in entries:
        ns = _namespace(entry)
        if ns is not None:
            if ns in used:
                kept.append(str(entry))
        elif str(entry) == "*":
            kept.extend(f"{s}:*" for s in sorted(used))
        elif any(_wildcard_match(str(entry).partition(":")[0], s) for s in used):
            kept.append(str(entry))  # "s3*:Get*": kept if a used service matches its prefix
    if used:
        for action in _permission_only(entries):
            if not any(_wildcard_match(k, action) for k in kept):
                kept.append(action)  # never seen used, may well be: see PERMISSION_ONLY_ACTIONS
    return kept


def wildcard_match(value: str, pattern: str, *, fold: bool = False) -> bool:
    """IAM's ``*`` and ``?`` wildcards (no character classes, unlike fnmatch).

    Args:
        value: What is matched (an action, a resource ARN, a condition value).
        pattern: The policy's entry.
        fold: Ignore case (action names are case-insensitive; ARNs and most values are not).
    """
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.IGNORECASE | re.DOTALL if fold else re.DOTALL
    return re.fullmatch(regex, value, flags) is not None


def _wildcard_match(pattern: str, value: str) -> bool:
    return wildcard_match(value, pattern, fold=True)


def _narrow_statement(statement: dict[str, Any], used: set[str]) -> dict[str, Any] | None:
    """The statement keeping the used services' actions; None when nothing is left."""
    entries = as_list(statement["Action"])
    kept = _narrow_actions(entries, used)
    if not kept:
        return None
    return {**statement, "Action": kept if len(kept) > 1 else kept[0]}


def _narrowed_copy(
    ref: PolicyRef, policies: PolicyIndex, used: set[str]
) -> list[dict[str, Any]] | None:
    """A managed policy's Allow statements keeping the used services' actions; None when it
    must stay whole: a guardrail (a Deny), a NotAction Allow, or no document."""
    document = policies.documents.get(ref.arn)
    if document is None or policies.is_guardrail(ref):
        return None
    statements = [s for s in as_list(document.get("Statement", [])) if isinstance(s, dict)]
    if any(s.get("Effect") == "Allow" and "Action" not in s for s in statements):
        return None
    narrowed = [_narrow_statement(s, used) for s in statements if s.get("Effect") == "Allow"]
    return [s for s in narrowed if s is not None]


def trim_access(access: FingerprintedAccess, policies: PolicyIndex, used: set[str]) -> Trim:
    """The access keeping only what serves the used services (see the module docstring).

    Args:
        access: The holder's access as synthesized from IAM.
        policies: The account's managed policy documents.
        used: The namespaces the holder used in the window (lower case).

    Returns:
        The trimmed access, re-fingerprinted (identical trimmed access shares a set), and
        what it lost.
    """
    trim = Trim(access)
    refs: list[PolicyRef] = []
    statements: list[dict[str, Any]] = []
    for ref in access.aws_managed + access.customer_managed:
        unused = _keep_policy(ref, policies, used)
        if unused is None:
            trim.policies_dropped.append(ref.name)
            trim.policy_arns_removed.append(ref.arn)
            continue
        granted = policies.grants(ref)
        everything = granted is not None and granted.everything
        copy = _narrowed_copy(ref, policies, used) if unused or everything else None
        if copy:
            trim.policies_narrowed[ref.name] = unused
            trim.policy_arns_removed.append(ref.arn)
            statements.extend(copy)
            continue
        refs.append(ref)
        if unused:
            trim.kept_whole[ref.name] = unused
    for shown in access.statements.values():
        if shown.get("Effect") != "Allow":
            statements.append(shown)  # a Deny stays as it is
        elif "Action" not in shown:
            trim.not_narrowable += 1
            statements.append(shown)
        else:
            narrowed = _narrow_statement(shown, used)
            if narrowed != shown:
                trim.statements_narrowed += 1
            if narrowed is not None:
                statements.append(narrowed)
    pairs = statement_pairs({"Statement": statements})
    trim.access = build_access(refs, pairs, access.boundary, access.inline_names)
    before, after = access_grants(access, policies), access_grants(trim.access, policies)
    if before.everything and not after.everything:
        trim.all_other_services = True
    elif not before.everything:
        trim.services_removed = sorted(before.services - after.services)
    trim.policies_dropped.sort()
    return trim


@dataclass
class HolderUse:
    """What a holder's people used: namespace -> (last used, who), or why it is unknown."""

    used: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    people: list[tuple[str, str]] = field(default_factory=list)  # (account, IAM user)
    unread: str | None = None


def holder_use(holder: Holder, members: list[str], usage: UsageRead) -> HolderUse:
    """The use of a holder: its IAM user's, or the union of an IAM group's mapped members'.

    Args:
        holder: A USER holder (its IAM user is ``subject``) or a GROUP holder.
        members: For a GROUP holder, the IAM group's members that are mapped (migrated).
        usage: The usage read.
    """
    people = [holder.subject] if holder.principal_type == "USER" else sorted(members)
    use = HolderUse(people=[(holder.account_id, p) for p in people])
    if not people:
        use.unread = "no mapped member of the group whose use could be read"
        return use
    for person in people:
        found = usage.known(holder.account_id, person)
        if found is None:
            why = usage.unread.get((holder.account_id, person)) or usage.unread.get(
                (holder.account_id, "*"), "not in the usage read"
            )
            who = "" if holder.principal_type == "USER" else f"member {person}: "
            use.unread = f"{who}usage not read ({why})"
            return use
        for ns, when in used_services(found).items():
            last, who_used = use.used.setdefault(ns, (when, []))
            who_used.append(f"{holder.account_id}/{person}")
            if when > last:
                use.used[ns] = (when, who_used)
    return use


def documents_grant(documents: list[dict[str, Any] | None]) -> Granted:
    """The services a role's policy documents grant (None: a policy whose document is not
    known, counted as granting every service)."""
    granted = NOTHING
    for document in documents:
        granted = granted | (document_grants(document) if document else Granted(everything=True))
    return granted


def denies_service(documents: list[dict[str, Any] | None], namespace: str) -> bool:
    """A Deny statement takes the whole service away: ``*`` or ``svc:*`` on every resource,
    without a condition (a scoped or conditional Deny may leave some of it)."""
    for document in documents:
        for statement in as_list((document or {}).get("Statement", [])):
            if (
                isinstance(statement, dict)
                and statement.get("Effect") == "Deny"
                and "Action" in statement
                and not statement.get("Condition")
                and "*" in as_list(statement.get("Resource", []))
                and any(
                    _wildcard_match(str(a), f"{namespace}:*") and str(a).endswith("*")
                    for a in as_list(statement["Action"])
                )
            ):
                return True
    return False


def names_action(documents: list[dict[str, Any] | None], action: str) -> bool:
    """An Allow statement of the documents names the action (on whatever resources it says)."""
    for document in documents:
        for statement in as_list((document or {}).get("Statement", [])):
            if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
                continue
            if "Action" in statement:
                if any(_wildcard_match(str(a), action) for a in as_list(statement["Action"])):
                    return True
            elif not any(_wildcard_match(str(a), action) for a in as_list(statement["NotAction"])):
                return True
    return False
