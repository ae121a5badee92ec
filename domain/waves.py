"""Waves of accounts, and the organization's permission sets that waves share and build on.

A migration of many accounts runs in waves: each wave is planned, approved, applied and rolled
back on its own, while inventory and mapping cover the whole scope. Permission sets are the
organization's: their identity is their access (the fingerprint), and the journal of every
wave's plans says which sets exist, who created them, which accounts they are provisioned to
and which waves still use them. Nothing here talks to AWS or SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import WaveError
from domain.policy_documents import canonical_json
from domain.spec import MigrationSpec

# Journal statuses that mean "this plan did it, or found it there": see state.journal.
_DONE = ("succeeded", "adopted")
SET_KINDS = ("create-permission-set", "update-permission-set")
# What Identity Center stores of a permission set; ``sources`` and ``fingerprint`` are ours.
AWS_FIELDS = (
    "description",
    "session_duration",
    "inline_policy",
    "aws_managed_policy_arns",
    "customer_managed_policies",
    "permissions_boundary",
)


# -- which accounts a wave holds ----------------------------------------------------------------


def resolve_waves(
    spec: MigrationSpec,
    ancestors: dict[str, list[str]],
    known_nodes: set[str] | None = None,
) -> dict[str, list[str]]:
    """The accounts of every wave of the spec, checked against the inventoried accounts.

    Args:
        spec: The migration spec; a spec without waves gives ``{}``.
        ancestors: Every account of the inventory (the in-scope accounts) -> its parent chain
            (OU ids up to the root id); accounts selected by id need no chain.
        known_nodes: The organization's OU and root ids, when the tree was read; None when the
            waves name only accounts.

    Returns:
        wave name -> sorted account ids.

    Raises:
        WaveError: a wave names an account that is not inventoried (unknown, outside [scope],
            suspended, the management account), an OU the organization does not have, or an
            account falls in two waves (through an OU).
    """
    resolved: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for wave in spec.waves:
        for selector in [*wave.include_accounts, *wave.exclude_accounts]:
            if selector.isdigit():
                if selector not in ancestors:
                    raise WaveError(
                        f"wave {wave.name!r}: account {selector} is not an inventoried account "
                        "of [scope] (not in the organization, outside [scope], suspended, or the "
                        "management account); fix the wave or the scope and re-run inventory"
                    )
            elif known_nodes is not None and selector not in known_nodes:
                raise WaveError(
                    f"wave {wave.name!r}: {selector} is not an OU or root of the organization"
                )

        def selects(account_id: str, selectors: list[str]) -> bool:
            return account_id in selectors or any(
                node in selectors for node in ancestors.get(account_id, [])
            )

        accounts = sorted(
            a
            for a in ancestors
            if selects(a, wave.include_accounts) and not selects(a, wave.exclude_accounts)
        )
        if not accounts:
            raise WaveError(f"wave {wave.name!r} selects no inventoried account of [scope]")
        for account_id in accounts:
            if account_id in owner:
                raise WaveError(
                    f"account {account_id} is in wave {owner[account_id]!r} and in wave "
                    f"{wave.name!r} (through an OU); an account belongs to one wave: exclude it "
                    "from one of them (exclude_accounts)"
                )
            owner[account_id] = wave.name
        resolved[wave.name] = accounts
    return resolved


def names_only_accounts(spec: MigrationSpec) -> bool:
    """Whether every wave selects accounts by id (so no walk of the organization is needed)."""
    return all(
        s.isdigit() for wave in spec.waves for s in [*wave.include_accounts, *wave.exclude_accounts]
    )


# -- who created and who uses what --------------------------------------------------------------


@dataclass(frozen=True)
class JournalUse:
    """One forward row of a plan's provision-stage journal, with its plan's wave.

    ``released``: the plan's provision stage was rolled back after it was last applied, so
    what it adopted no longer counts as in use by it.
    """

    plan_id: int
    wave: str | None
    kind: str
    status: str
    account_id: str | None
    target: str
    params: dict[str, Any]
    existed_before: bool | None
    started: datetime | None
    finished: datetime | None
    released: bool = False

    @property
    def done(self) -> bool:
        return self.status in _DONE

    @property
    def permission_set(self) -> str:
        """The permission set name the row is about."""
        if self.kind == "create-assignment":
            return str(self.params.get("permission_set_name", ""))
        return self.target

    @property
    def owner(self) -> str:
        return f"{self.wave} (plan {self.plan_id})" if self.wave else f"plan {self.plan_id}"


@dataclass
class OrgPermissionSet:
    """A permission set of the organization as the migration's journal knows it."""

    name: str
    fingerprint: str
    definition: dict[str, Any]  # as last created or updated by a plan
    ours: bool  # created by one of this migration's plans (else adopted: never changed)
    created_by: str | None = None  # "wave-1 (plan 3)"
    accounts: list[str] = field(default_factory=list)  # provisioned to, by any plan


def organization_sets(uses: list[JournalUse]) -> dict[str, OrgPermissionSet]:
    """fingerprint -> the permission set the migration created or adopted for that access.

    A set a plan created and a rollback deleted is gone; one whose deletion a rollback
    deferred (another wave used it) is still there, and so still the organization's.
    """
    found: dict[str, OrgPermissionSet] = {}
    by_name: dict[str, OrgPermissionSet] = {}
    # An adoption by a plan that was rolled back since says nothing about today.
    ordered = sorted(
        (
            u
            for u in uses
            if u.done and u.kind in SET_KINDS and not (u.released and u.status == "adopted")
        ),
        key=lambda u: (u.finished or u.started or datetime.min, u.plan_id),
    )
    for use in ordered:
        definition = use.params.get("definition") or {}
        fingerprint = definition.get("fingerprint")
        if not fingerprint:
            continue
        known = found.get(fingerprint)
        created = use.kind == "create-permission-set" and use.existed_before is False
        if known is None:
            known = OrgPermissionSet(
                name=use.target,
                fingerprint=fingerprint,
                definition=dict(definition),
                ours=created,
                created_by=use.owner if created else None,
            )
            found[fingerprint] = known
            by_name[use.target] = known
        elif created and not known.ours:
            known.ours, known.created_by = True, use.owner
        if use.kind == "update-permission-set":
            known.definition = dict(definition)
    provisioned: dict[str, set[str]] = {}
    for use in uses:
        if use.done and use.kind == "provision-permission-set" and use.account_id:
            provisioned.setdefault(use.target, set()).add(use.account_id)
    for name, known in by_name.items():
        known.accounts = sorted(provisioned.get(name, set()))
    return found


def current_uses(uses: list[JournalUse]) -> list[JournalUse]:
    """Done rows that still count: an adoption by a plan rolled back since says nothing (a
    row a rollback undid is ``rolled-back``, not done)."""
    return [u for u in uses if u.done and not (u.released and u.status == "adopted")]


@dataclass
class Owned:
    """What the migration created or adopted, as its journal has it now: every permission set
    by name (its latest definition, the accounts it was provisioned to) and every account
    assignment (``assignment_key`` -> the params it was created with)."""

    sets: dict[str, OrgPermissionSet]
    assignments: dict[tuple[str, str, str, str], dict[str, Any]]
    # The assignments no plan created (each was there before and adopted): not ours to change.
    adopted: frozenset[tuple[str, str, str, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.sets or self.assignments)

    def accounts(self) -> list[str]:
        """Every account a set of ours was provisioned to or assigned in."""
        found = {a for known in self.sets.values() for a in known.accounts}
        return sorted(found | {key[0] for key in self.assignments})


def owned(uses: list[JournalUse]) -> Owned:
    """The permission sets and assignments the provision stage's journal says are ours.

    Args:
        uses: The provision stage's forward rows of every plan (``store.waves.journal_uses``).
    """
    current = current_uses(uses)
    sets = {known.name: known for known in organization_sets(current).values()}
    assignments: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    created: set[tuple[str, str, str, str]] = set()
    for use in current:
        if use.kind == "create-assignment":
            key = assignment_key(use.params)
            assignments.setdefault(key, use.params)
            if use.status != "adopted":
                created.add(key)
    return Owned(
        sets=sets,
        assignments=dict(sorted(assignments.items())),
        adopted=frozenset(assignments) - created,
    )


def assignment_key(params: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(params.get("account_id", "")),
        str(params.get("permission_set_name", "")),
        str(params.get("principal_type", "")),
        str(params.get("principal_id", "")),
    )


# The central-roles kinds another wave can share, and what makes two of them the same thing
# (from a row's account and params). A member role is one per account: the same name in two
# accounts is two roles. The central account's groups, memberships and inline policies are
# one each, whichever wave put them.
_CENTRAL_SHARED: dict[str, Callable[[str | None, dict[str, Any]], Any]] = {
    "create-access-group": lambda _, p: p.get("group_name"),
    "add-group-member": lambda _, p: (p.get("group_name"), p.get("user_name")),
    "create-member-role": lambda account, p: (account, p.get("role_name")),
    "put-access-policy": lambda _, p: (
        p.get("principal_type"),
        p.get("principal_name"),
        p.get("policy_name"),
    ),
}


def still_used_by(
    kind: str,
    target: str,
    params: dict[str, Any],
    finished: datetime | None,
    plan_id: int,
    uses: list[JournalUse],
    account_id: str | None = None,
) -> list[str]:
    """The other plans (waves) that still use what one of ``plan_id``'s actions did.

    A permission set is used by any other plan that created, adopted, updated or provisioned
    it or assigned it; an update is used by a plan that did so after the update (undoing it
    would make that plan's set differ); an assignment by a plan that adopted the same one.
    ``central-roles``: a member role by another plan that created, adopted or brought the
    same role (account and name) to its plan; a central group, membership or access policy
    by another plan that put the same one. A plan whose stage was rolled back uses nothing.

    Args:
        account_id: The account the action acted in (a member role is one per account).

    Returns:
        ``"wave-1 (plan 3)"`` per other plan; empty when nobody else uses it.
    """
    users: set[str] = set()
    for use in uses:
        if use.plan_id == plan_id or use.released or not use.done:
            continue
        if kind == "create-assignment":
            if use.kind == kind and assignment_key(use.params) == assignment_key(params):
                users.add(use.owner)
        elif kind in _CENTRAL_SHARED and use.kind == kind:
            # The identity account's groups, memberships and policies are shared by every
            # wave whose people hold the access (a person in two waves is one membership), and
            # a member role by every plan whose people it trusts: undoing one plan's would
            # take the others' access away.
            key = _CENTRAL_SHARED[kind]
            if key(use.account_id, use.params) == key(account_id, params):
                users.add(use.owner)
        elif kind in SET_KINDS and use.permission_set == target:
            if kind == "update-permission-set" and finished is not None:
                when = use.started or use.finished
                if when is None or when < finished:
                    continue
            users.add(use.owner)
    return sorted(users)


# -- comparing definitions ----------------------------------------------------------------------


def _normal(name: str, value: Any) -> Any:
    if name == "inline_policy":
        return None if not value else canonical_json(value)
    if name == "aws_managed_policy_arns":
        return sorted(value or [])
    if name == "customer_managed_policies":
        return sorted((r["name"], r.get("path") or "/") for r in value or [])
    if name == "description":
        return value or ""
    return value or None


def differing_fields(recorded: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """The fields Identity Center stores (``AWS_FIELDS``) in which two definitions differ."""
    return [n for n in AWS_FIELDS if _normal(n, recorded.get(n)) != _normal(n, live.get(n))]


def definition_changes(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """What an update of a permission set from ``old`` to ``new`` changes, in words."""
    changes = []
    for name in AWS_FIELDS:
        before, after = _normal(name, old.get(name)), _normal(name, new.get(name))
        if before == after:
            continue
        if name in ("session_duration",):
            changes.append(f"session duration {before} -> {after}")
        elif name == "description":
            changes.append(f"description {before!r} -> {after!r}")
        else:
            changes.append(f"{name.replace('_', ' ')} differs")
    return changes


# -- the central-roles target's member roles ----------------------------------------------------

MEMBER_ROLE_KIND = "create-member-role"


def central_role_accounts(uses: list[JournalUse]) -> dict[str, list[str]]:
    """Access name -> the member accounts where a plan of the migration created or adopted the
    access's member role and was not rolled back since (``central-roles``).

    A central assume policy is one document per access: each plan puts all of it, so it must
    name the roles earlier waves made as well as its own.

    Args:
        uses: The provision stage's forward rows of every plan (``store.waves.journal_uses``).
    """
    found: dict[str, set[str]] = {}
    for use in uses:
        if use.kind != MEMBER_ROLE_KIND or not use.done or use.released or not use.account_id:
            continue
        access = str(use.params.get("access") or "")
        if access:
            found.setdefault(access, set()).add(use.account_id)
    return {name: sorted(accounts) for name, accounts in sorted(found.items())}


def central_role_principals(uses: list[JournalUse]) -> dict[tuple[str, str], list[str]]:
    """(member account, role name) -> the central principals earlier plans of the migration
    put in that role's trust, of every plan done with it and not rolled back since
    (``central-roles``).

    A member role is one per (account, access) whoever planned it, and each plan's put
    replaces its whole trust policy: a later plan of the same wave (its earlier people now
    disabled, so retired and no longer planned) or of another wave must keep trusting them,
    or it locks out the people already migrated.

    Args:
        uses: The provision stage's forward rows of every plan (``store.waves.journal_uses``).
    """
    found: dict[tuple[str, str], set[str]] = {}
    for use in uses:
        if use.kind != MEMBER_ROLE_KIND or not use.done or use.released or not use.account_id:
            continue
        role_name = str(use.params.get("role_name") or use.target or "")
        principals = [str(p) for p in use.params.get("principals") or [] if p]
        if role_name and principals:
            found.setdefault((use.account_id, role_name), set()).update(principals)
    return {key: sorted(arns) for key, arns in sorted(found.items())}


def central_accesses(uses: list[JournalUse]) -> dict[str, OrgPermissionSet]:
    """Fingerprint -> the access an earlier plan made member roles of (``central-roles``), in
    the shape of :func:`organization_sets`: synthesis keeps its name and inline document, so
    the same access keeps the same role name in every wave.
    """
    found: dict[str, OrgPermissionSet] = {}
    ordered = sorted(
        (
            u
            for u in uses
            if u.kind == MEMBER_ROLE_KIND and u.done and not u.released and u.account_id
        ),
        key=lambda u: (u.finished or u.started or datetime.min, u.plan_id),
    )
    accounts: dict[str, set[str]] = {}
    for use in ordered:
        fingerprint = str(use.params.get("fingerprint") or "")
        access = str(use.params.get("access") or "")
        if not fingerprint or not access:
            continue
        known = found.setdefault(
            fingerprint,
            OrgPermissionSet(
                name=access,
                fingerprint=fingerprint,
                definition={"inline_policy": use.params.get("inline_policy")},
                ours=True,
                created_by=use.owner,
            ),
        )
        accounts.setdefault(fingerprint, set()).add(str(use.account_id))
        known.definition = {"inline_policy": use.params.get("inline_policy")}
    for fingerprint, known in found.items():
        known.accounts = sorted(accounts[fingerprint])
    return found
