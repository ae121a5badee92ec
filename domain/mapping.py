"""Map IAM users and groups to identity-store users and groups by the spec's ordered rules.

Pure functions, no AWS: the inventory snapshot and the identity store are read elsewhere.
Rules are tried in order and the first rule that finds any candidate decides: one candidate is
a match, several are an ambiguity that a person resolves with an override — never a guess.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.errors import InputFileError, SpecError
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

USER_OVERRIDE_HEADER = ("account_id", "iam_user", "idp_user")
GROUP_OVERRIDE_HEADER = ("account_id", "iam_group", "idp_group")
ANY_ACCOUNT = "*"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
# IAM user names are [\w+=,.@-]{1,64}, group names {1,128} (IAM API reference, CreateUser,
# CreateGroup); both are unique case-insensitively within an account.
_IAM_NAME = re.compile(r"^[\w+=,.@-]+$")
_IAM_NAME_MAX = {"iam_user": 64, "iam_group": 128}


# -- overrides CSV ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OverrideRow:
    account_id: str  # 12 digits, or "*" for every account
    iam_name: str
    idp_name: str
    line: int


@dataclass
class Overrides:
    """The rows of one overrides CSV, by (account or "*", lower-cased IAM name)."""

    path: str
    header: tuple[str, str, str]
    rows: dict[tuple[str, str], OverrideRow] = field(default_factory=dict)

    def lookup(self, account_id: str, iam_name: str) -> OverrideRow | None:
        """The row for this account's IAM user or group; an account's own row beats ``*``."""
        key = iam_name.lower()
        return self.rows.get((account_id, key)) or self.rows.get((ANY_ACCOUNT, key))

    @property
    def idp_field(self) -> str:
        return self.header[2]

    def where(self, row: OverrideRow) -> str:
        """``file.csv:LINE``, for reasons and findings."""
        return f"{Path(self.path).name}:{row.line}"


def parse_overrides(
    path: str | Path, header: tuple[str, str, str] = USER_OVERRIDE_HEADER
) -> Overrides:
    """Read an overrides CSV maintained by the admins, refusing anything doubtful.

    The first row that is not blank or a ``#`` comment must be exactly ``header``. Each row then
    names an account (12 digits, or ``*`` for every account), an IAM user (or group) and the
    identity-store user name (or group display name) it maps to.

    Args:
        path: The CSV file.
        header: :data:`USER_OVERRIDE_HEADER` or :data:`GROUP_OVERRIDE_HEADER`.

    Returns:
        The rows.

    Raises:
        InputFileError: naming the file, the line and the column of the first problem.
    """
    path = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read: {err.strerror or err}") from None

    overrides = Overrides(path=path, header=header)
    expected = ",".join(header)
    name_field = header[1]
    seen_header = False
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 0
    try:
        for row in reader:
            line = reader.line_num
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if not seen_header:
                if tuple(cells) != header:
                    wrong = next(
                        (h for i, h in enumerate(header) if i >= len(cells) or cells[i] != h),
                        header[-1],
                    )
                    raise InputFileError(
                        path,
                        f"the header must be exactly {expected!r} (got {','.join(cells)!r})",
                        line=line,
                        field=wrong,
                    )
                seen_header = True
                continue
            if len(cells) != len(header):
                raise InputFileError(
                    path,
                    f"expected {len(header)} columns ({expected}), got {len(cells)}",
                    line=line,
                )
            _add_row(overrides, OverrideRow(cells[0], cells[1], cells[2], line), name_field)
    except csv.Error as err:
        raise InputFileError(path, f"not valid CSV: {err}", line=reader.line_num or line) from None
    if not seen_header:
        raise InputFileError(path, f"empty file: expected the header {expected!r}", line=1)
    return overrides


def _add_row(overrides: Overrides, row: OverrideRow, name_field: str) -> None:
    path, line = overrides.path, row.line
    for column, value in zip(
        overrides.header, (row.account_id, row.iam_name, row.idp_name), strict=True
    ):
        if not value:
            raise InputFileError(path, "is empty", line=line, field=column)
    if row.account_id != ANY_ACCOUNT and not _ACCOUNT_ID.match(row.account_id):
        hint = " (leading zeros lost by a spreadsheet?)" if row.account_id.isdigit() else ""
        raise InputFileError(
            path,
            f"expected a 12-digit account id or '*' (got {row.account_id!r}){hint}",
            line=line,
            field="account_id",
        )
    if not _IAM_NAME.match(row.iam_name) or len(row.iam_name) > _IAM_NAME_MAX[name_field]:
        raise InputFileError(
            path,
            f"{row.iam_name!r} is not an IAM name: up to {_IAM_NAME_MAX[name_field]} characters "
            "of letters, digits and +=,.@_-",
            line=line,
            field=name_field,
        )
    key = (row.account_id, row.iam_name.lower())
    earlier = overrides.rows.get(key)
    if earlier is not None:
        where = "every account" if row.account_id == ANY_ACCOUNT else f"account {row.account_id}"
        raise InputFileError(
            path,
            f"duplicate: {row.iam_name!r} in {where} is already mapped on line {earlier.line}",
            line=line,
            field=name_field,
        )
    overrides.rows[key] = row


def check_overrides(
    users: Overrides | None,
    groups: Overrides | None,
    identity_users: list[IdentityUser],
    identity_groups: list[IdentityGroup],
) -> None:
    """Every override must name an identity-store user (or group) that exists.

    A user is named by user name (case-insensitive) or user id; a group by display name or id.

    Raises:
        InputFileError: naming the file and line of the first unknown name.
    """
    user_names = {u.user_name.lower() for u in identity_users} | {u.user_id for u in identity_users}
    group_names = {g.display_name.lower() for g in identity_groups} | {
        g.group_id for g in identity_groups
    }
    for overrides, known, noun in ((users, user_names, "user"), (groups, group_names, "group")):
        if overrides is None:
            continue
        for row in sorted(overrides.rows.values(), key=lambda r: r.line):
            if row.idp_name.lower() not in known and row.idp_name not in known:
                raise InputFileError(
                    overrides.path,
                    f"no identity-store {noun} {row.idp_name!r} (checked "
                    f"{len(identity_users) if noun == 'user' else len(identity_groups)} "
                    f"{noun}s of the identity store)",
                    line=row.line,
                    field=overrides.idp_field,
                )


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
        if rule == "override":
            row = overrides.lookup(account_id, group_name) if overrides else None
            if overrides is None or row is None:
                continue
            used.add((overrides.path, row.line))
            wanted = row.idp_name
            found = [g for g in groups if g.group_id == wanted] or [
                g for g in groups if g.display_name.lower() == wanted.lower()
            ]
            evidence = f"{overrides.where(row)} names {wanted}"
        else:
            found = [g for g in groups if g.display_name.lower() == group_name.lower()]
            evidence = f"IdP group named {group_name}"
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
        _unused_override_findings((overrides, group_overrides), used, inventories)
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


def _why_unused(row: OverrideRow, is_user: bool, inventories: list[AccountInventory]) -> str:
    """What is unknown about an override row that never applied: the account, or the name."""
    accounts = {i.account.account_id: i for i in inventories}
    if row.account_id != ANY_ACCOUNT and row.account_id not in accounts:
        return f"unknown account {row.account_id}: not in the inventory snapshot"
    searched = [accounts[row.account_id]] if row.account_id != ANY_ACCOUNT else inventories
    where = "any account" if row.account_id == ANY_ACCOUNT else f"account {row.account_id}"
    name = row.iam_name.lower()
    if is_user:
        found = [u for i in searched for u in i.users if u.name.lower() == name]
        if not found:
            return f"unknown IAM user {row.iam_name!r}: none in {where}"
        classes = sorted({str(u.user_class) for u in found if u.user_class != UserClass.HUMAN})
        if classes and len(classes) == len({str(u.user_class) for u in found}):
            return (
                f"IAM user {row.iam_name!r} in {where} is {', '.join(classes)}, not human: "
                "only human users are mapped"
            )
        return f"IAM user {row.iam_name!r} in {where} was decided by an earlier rule"
    if not any(g.name.lower() == name for i in searched for g in i.groups):
        return f"unknown IAM group {row.iam_name!r}: none in {where}"
    return f"IAM group {row.iam_name!r} in {where} was decided by an earlier rule"


def _unused_override_findings(
    all_overrides: tuple[Overrides | None, ...],
    used: set[tuple[str, int]],
    inventories: list[AccountInventory],
) -> list[Finding]:
    findings = []
    for overrides in all_overrides:
        if overrides is None:
            continue
        is_user = overrides.header == USER_OVERRIDE_HEADER
        for row in sorted(overrides.rows.values(), key=lambda r: r.line):
            if (overrides.path, row.line) in used:
                continue
            findings.append(
                Finding(
                    severity="warning",
                    kind="override-unused",
                    message=f"{overrides.where(row)}: never applied: "
                    f"{_why_unused(row, is_user, inventories)}",
                    account_id=None if row.account_id == ANY_ACCOUNT else row.account_id,
                    subject=row.iam_name,
                    details={"path": overrides.path, "line": row.line},
                )
            )
    return findings
