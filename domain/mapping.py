"""Map IAM users and groups to identity-store users and groups by the spec's ordered rules.

Pure functions, no AWS: the inventory snapshot and the identity store are read elsewhere.
Rules are tried in order and the first rule that finds any candidate decides: one candidate is
a match, several are an ambiguity that a person resolves with an override — never a guess.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from domain.errors import SpecError
from domain.mapping_overrides import Overrides, unused_override_findings
from domain.records import (
    AccountInventory,
    Finding,
    GroupMapping,
    IdentityGroup,
    IdentityUser,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.spec import GROUP_RULE_KINDS, user_rule_problem

# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRule:
    """One rule of ``mapping.rules``: ``text`` as written, ``kind`` and its argument."""

    text: str
    kind: str  # override | tag | username | template | email-localpart
    argument: str = ""


def parse_user_rules(rules: Iterable[str]) -> list[UserRule]:
    """Parse ``mapping.rules``.

    Raises:
        SpecError: naming ``mapping.rules`` for a rule of unknown kind.
    """
    parsed = []
    for rule in rules:
        problem = user_rule_problem(rule)
        if problem:
            raise SpecError("<spec>", [("mapping.rules", problem)])
        if rule in ("override", "username", "email-localpart"):
            parsed.append(UserRule(rule, rule))
        elif rule.startswith("tag:"):
            parsed.append(UserRule(rule, "tag", rule[len("tag:") :]))
        else:
            parsed.append(UserRule(rule, "template", rule))
    return parsed


def _check_group_rules(rules: Iterable[str]) -> list[str]:
    rules = list(rules)
    unknown = [r for r in rules if r not in GROUP_RULE_KINDS]
    if unknown:
        raise SpecError(
            "<spec>",
            [("mapping.group_rules", f"unknown rule {unknown[0]!r}; expected override or name")],
        )
    return rules


class IdentityIndex:
    """Identity-store users by lower-cased user name, email address and email local part."""

    def __init__(self, users: Iterable[IdentityUser]):
        self.by_id: dict[str, IdentityUser] = {}
        self.by_name: dict[str, list[IdentityUser]] = defaultdict(list)
        self.by_address: dict[str, list[IdentityUser]] = defaultdict(list)
        self.by_localpart: dict[str, list[IdentityUser]] = defaultdict(list)
        for user in users:
            self.by_id[user.user_id] = user
            self.by_name[user.user_name.lower()].append(user)
            # An IdP sync usually makes the user name the email address: count it as one.
            addresses = {e.lower() for e in user.emails} | {user.user_name.lower()}
            for address in addresses:
                self.by_address[address].append(user)
                if "@" in address:
                    self.by_localpart[address.split("@", 1)[0]].append(user)

    def named(self, name: str) -> list[IdentityUser]:
        """By user name (case-insensitive) or user id."""
        found = self.by_name.get(name.lower(), [])
        return found or ([self.by_id[name]] if name in self.by_id else [])

    def addressed(self, value: str) -> list[IdentityUser]:
        """By user name or any email address, case-insensitively."""
        return _unique(self.by_address.get(value.strip().lower(), []))

    def with_localpart(self, value: str) -> list[IdentityUser]:
        return _unique(self.by_localpart.get(value.lower(), []))


def _unique(users: Iterable[IdentityUser]) -> list[IdentityUser]:
    found = {u.user_id: u for u in users}
    return sorted(found.values(), key=lambda u: (u.user_name.lower(), u.user_id))


@dataclass
class _Candidates:
    users: list[IdentityUser]
    evidence: str  # what the rule compared, for the reason


def _candidates(
    rule: UserRule,
    account_id: str,
    user: User,
    index: IdentityIndex,
    overrides: Overrides | None,
    used_overrides: set[tuple[str, int]],
) -> _Candidates:
    if rule.kind == "override":
        row = overrides.lookup(account_id, user.name) if overrides else None
        if overrides is None or row is None:
            return _Candidates([], "")
        used_overrides.add((overrides.path, row.line))
        return _Candidates(
            index.named(row.idp_name), f"{overrides.where(row)} names {row.idp_name}"
        )
    if rule.kind == "tag":
        value = user.tags.get(rule.argument)
        if not value:
            return _Candidates([], f"no {rule.argument!r} tag")
        return _Candidates(index.addressed(value), f"tag {rule.argument}={value}")
    if rule.kind == "username":
        return _Candidates(
            _unique(index.by_name.get(user.name.lower(), [])), f"user name {user.name}"
        )
    if rule.kind == "template":
        address = rule.argument.replace("username", user.name)
        return _Candidates(index.addressed(address), f"{address} (from {rule.text!r})")
    # email-localpart
    return _Candidates(index.with_localpart(user.name), f"email local part {user.name}")


def map_user(
    account_id: str,
    user: User,
    rules: list[UserRule],
    index: IdentityIndex,
    overrides: Overrides | None = None,
    used_overrides: set[tuple[str, int]] | None = None,
) -> UserMapping:
    """Map one IAM user: the first rule with any candidate decides.

    Args:
        account_id: The user's account.
        user: The IAM user (its name and tags are what the rules read).
        rules: From :func:`parse_user_rules`, in order.
        index: The identity store's users.
        overrides: The user overrides CSV, if any.
        used_overrides: Collects ``(path, line)`` of the override rows that applied.

    Returns:
        MATCHED with the rule and identity, AMBIGUOUS with every candidate, or UNMATCHED.
    """
    used = used_overrides if used_overrides is not None else set()
    misses = []
    for rule in rules:
        found = _candidates(rule, account_id, user, index, overrides, used)
        if len(found.users) == 1:
            identity = found.users[0]
            return UserMapping(
                account_id=account_id,
                iam_user=user.name,
                status=MatchStatus.MATCHED,
                rule=rule.text,
                identity_user_id=identity.user_id,
                identity_user_name=identity.user_name,
                reason=f"{found.evidence} -> {identity.user_name}",
            )
        if found.users:
            names = [u.user_name for u in found.users]
            return UserMapping(
                account_id=account_id,
                iam_user=user.name,
                status=MatchStatus.AMBIGUOUS,
                rule=rule.text,
                candidates=names,
                reason=f"{found.evidence} matches {len(names)} identity users "
                f"({', '.join(names)}): not guessed; add a row to the overrides CSV",
            )
        if found.evidence and rule.kind == "tag":
            misses.append(found.evidence)
    tried = ", ".join(r.text for r in rules)
    hint = f" ({'; '.join(misses)})" if misses else ""
    return UserMapping(
        account_id=account_id,
        iam_user=user.name,
        status=MatchStatus.UNMATCHED,
        reason=f"no identity user found by {tried}{hint}",
    )


# -- groups -----------------------------------------------------------------------------------


def map_group(
    account_id: str,
    group_name: str,
    members: list[UserMapping],
    group_rules: list[str],
    groups: list[IdentityGroup],
    identity_names: dict[str, str],
    overrides: Overrides | None = None,
    used_overrides: set[tuple[str, int]] | None = None,
) -> GroupMapping:
    """Map one IAM group to an IdP group that holds every mapped member of it.

    Args:
        account_id: The group's account.
        group_name: The IAM group.
        members: The mappings of the IAM group's human members (of any status).
        group_rules: ``mapping.group_rules`` in order: ``override`` and/or ``name``.
        groups: The identity store's groups.
        identity_names: Identity user id -> user name, for the reasons.
        overrides: The group overrides CSV, if any.
        used_overrides: Collects ``(path, line)`` of the override rows that applied.

    Returns:
        MATCHED when the first rule with a candidate finds exactly one IdP group and it holds
        every MATCHED member; otherwise UNMATCHED (or AMBIGUOUS) with the reason.
    """
    used = used_overrides if used_overrides is not None else set()
    matched = [m for m in members if m.status == MatchStatus.MATCHED]
    unmapped = len(members) - len(matched)

    def result(status: MatchStatus, reason: str, rule: str | None = None, **kw: Any):
        return GroupMapping(account_id, group_name, status, rule=rule, reason=reason, **kw)

    if not matched:
        return result(
            MatchStatus.UNMATCHED,
            f"no member of the IAM group is mapped to an identity ({len(members)} human members)",
        )
    for rule in group_rules:
        named = _group_candidates(rule, account_id, group_name, groups, overrides, used)
        if named is None:
            continue
        found, evidence = named
        if not found:
            continue
        if len(found) > 1:
            ids = ", ".join(g.group_id for g in found)
            return result(
                MatchStatus.AMBIGUOUS,
                f"{evidence}: {len(found)} IdP groups ({ids}): not guessed; add a group override",
                rule,
            )
        candidate = found[0]
        holds = set(candidate.member_ids)
        missing = sorted(
            f"{m.iam_user} ({identity_names.get(m.identity_user_id or '', m.identity_user_id)})"
            for m in matched
            if m.identity_user_id not in holds
        )
        if missing:
            return result(
                MatchStatus.UNMATCHED,
                f"{evidence}, but {len(missing)} of {len(matched)} mapped members are not in "
                f"IdP group {candidate.display_name!r}: {', '.join(missing)}",
                rule,
            )
        extra = f"; {unmapped} members not mapped yet" if unmapped else ""
        return result(
            MatchStatus.MATCHED,
            f"{evidence}; holds all {len(matched)} mapped members{extra}",
            rule,
            identity_group_id=candidate.group_id,
            identity_group_name=candidate.display_name,
        )
    return result(MatchStatus.UNMATCHED, f"no IdP group found by {', '.join(group_rules)}")


def _group_candidates(
    rule: str,
    account_id: str,
    group_name: str,
    groups: list[IdentityGroup],
    overrides: Overrides | None,
    used_overrides: set[tuple[str, int]],
) -> tuple[list[IdentityGroup], str] | None:
    """The IdP groups a group rule names and what it compared; None if the rule has no say."""
    if rule != "override":
        found = [g for g in groups if g.display_name.lower() == group_name.lower()]
        return found, f"IdP group named {group_name}"
    row = overrides.lookup(account_id, group_name) if overrides else None
    if overrides is None or row is None:
        return None
    used_overrides.add((overrides.path, row.line))
    wanted = row.idp_name
    found = [g for g in groups if g.group_id == wanted] or [
        g for g in groups if g.display_name.lower() == wanted.lower()
    ]
    return found, f"{overrides.where(row)} names {wanted}"


# -- the whole organization -------------------------------------------------------------------


@dataclass
class MappingResult:
    users: list[UserMapping] = field(default_factory=list)
    groups: list[GroupMapping] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts for the run's summary and the console."""
        users = Counter(str(m.status) for m in self.users)
        groups = Counter(str(m.status) for m in self.groups)
        accounts_of: dict[str, set[str]] = defaultdict(set)
        for m in self.users:
            if m.identity_user_id:
                accounts_of[m.identity_user_id].add(m.account_id)
        return {
            "iam_users": len(self.users),
            "matched": users[MatchStatus.MATCHED],
            "unmatched": users[MatchStatus.UNMATCHED],
            "ambiguous": users[MatchStatus.AMBIGUOUS],
            "identities": len(accounts_of),
            "identities_in_several_accounts": sum(1 for a in accounts_of.values() if len(a) > 1),
            # Matched users only: an ambiguous user names a rule too, but nothing was decided.
            "by_rule": dict(
                sorted(
                    Counter(
                        m.rule for m in self.users if m.rule and m.status == MatchStatus.MATCHED
                    ).items()
                )
            ),
            "groups": len(self.groups),
            "groups_matched": groups[MatchStatus.MATCHED],
            "groups_unmatched": groups[MatchStatus.UNMATCHED],
            "groups_ambiguous": groups[MatchStatus.AMBIGUOUS],
            "workload_users": sum(1 for f in self.findings if f.kind == "workload-needs-role"),
        }


def map_identities(
    inventories: list[AccountInventory],
    identity_users: list[IdentityUser],
    identity_groups: list[IdentityGroup],
    rules: Iterable[str],
    group_rules: Iterable[str] = ("override", "name"),
    overrides: Overrides | None = None,
    group_overrides: Overrides | None = None,
) -> MappingResult:
    """Map every human IAM user and every IAM group of a snapshot.

    Only ``human`` users are mapped. Each ``workload`` user gets a ``workload-needs-role``
    finding instead; ``protected`` and ``unused`` users are left alone.

    Args:
        inventories: The inventory snapshot's accounts.
        identity_users: The identity store's users.
        identity_groups: The identity store's groups, with members.
        rules: ``mapping.rules``.
        group_rules: ``mapping.group_rules``.
        overrides: Parsed user overrides (check them first with :func:`check_overrides`).
        group_overrides: Parsed group overrides.

    Returns:
        One mapping per human IAM user and per IAM group, ordered by account and name, and
        the findings.

    Raises:
        SpecError: a rule of unknown kind.
    """
    user_rules = parse_user_rules(rules)
    group_rule_list = _check_group_rules(group_rules)
    index = IdentityIndex(identity_users)
    names = {u.user_id: u.user_name for u in identity_users}
    used: set[tuple[str, int]] = set()
    result = MappingResult()
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        account_id = inventory.account.account_id
        by_name: dict[str, UserMapping] = {}
        for user in sorted(inventory.users, key=lambda u: u.name):
            if user.user_class == UserClass.HUMAN:
                mapping = map_user(account_id, user, user_rules, index, overrides, used)
                by_name[user.name] = mapping
                result.users.append(mapping)
            elif user.user_class == UserClass.WORKLOAD:
                result.findings.append(_workload_finding(account_id, user))
        for group in sorted(inventory.groups, key=lambda g: g.name):
            members = [
                by_name[u.name]
                for u in sorted(inventory.users, key=lambda u: u.name)
                if group.name in u.groups and u.name in by_name
            ]
            result.groups.append(
                map_group(
                    account_id,
                    group.name,
                    members,
                    group_rule_list,
                    identity_groups,
                    names,
                    group_overrides,
                    used,
                )
            )
    result.findings.extend(_consistency_findings(result.users))
    result.findings.extend(
        unused_override_findings((overrides, group_overrides), used, inventories)
    )
    return result


def _workload_finding(account_id: str, user: User) -> Finding:
    return Finding(
        severity="warning",
        kind="workload-needs-role",
        message=f"{user.name} is a workload (programmatic access only): it needs an IAM role, "
        "not a person; it is not mapped to an identity",
        account_id=account_id,
        subject=user.name,
        details={"class_reason": user.class_reason},
    )


def _consistency_findings(mappings: list[UserMapping]) -> list[Finding]:
    """Flag what a person should look at: one IAM name, several identities; and the reverse."""
    findings = []
    identities_of_name: dict[str, set[str]] = defaultdict(set)
    names_in_account: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m in mappings:
        if m.status != MatchStatus.MATCHED or m.identity_user_id is None:
            continue
        identities_of_name[m.iam_user].add(m.identity_user_name or m.identity_user_id)
        names_in_account[(m.account_id, m.identity_user_name or m.identity_user_id)].append(
            m.iam_user
        )
    for name, identities in sorted(identities_of_name.items()):
        if len(identities) > 1:
            findings.append(
                Finding(
                    severity="warning",
                    kind="iam-name-maps-to-several-identities",
                    message=f"IAM user {name} maps to different identities in different "
                    f"accounts: {', '.join(sorted(identities))}; check they are different people",
                    subject=name,
                    details={"identities": sorted(identities)},
                )
            )
    for (account_id, identity), iam_names in sorted(names_in_account.items()):
        if len(iam_names) > 1:
            findings.append(
                Finding(
                    severity="info",
                    kind="several-iam-users-one-identity",
                    message=f"IAM users {', '.join(sorted(iam_names))} all map to {identity}: "
                    "their permissions will be merged",
                    account_id=account_id,
                    subject=identity,
                )
            )
    return findings
