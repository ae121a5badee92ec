"""The mapping overrides CSVs: rows pinning an IAM user or group to an identity, and checks."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from domain.errors import InputFileError
from domain.records import AccountInventory, Finding, IdentityGroup, IdentityUser, UserClass

USER_OVERRIDE_HEADER = ("account_id", "iam_user", "idp_user")
GROUP_OVERRIDE_HEADER = ("account_id", "iam_group", "idp_group")
ANY_ACCOUNT = "*"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
# IAM user names are [\w+=,.@-]{1,64}, group names {1,128} (IAM API reference, CreateUser,
# CreateGroup); both are unique case-insensitively within an account.
_IAM_NAME = re.compile(r"^[\w+=,.@-]+$")
_IAM_NAME_MAX = {"iam_user": 64, "iam_group": 128}


@dataclass(frozen=True)
class OverrideRow:
    """One row of an overrides CSV, with its line for the messages."""

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


def unused_override_findings(
    all_overrides: tuple[Overrides | None, ...],
    used: set[tuple[str, int]],
    inventories: list[AccountInventory],
) -> list[Finding]:
    """A warning per override row that never applied (``used`` holds the applied rows)."""
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
