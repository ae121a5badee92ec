"""Notices to migrated people: a Markdown message and an .eml per person, one CSV for mail merge.

Pure rendering and file writing: who gets which accounts and permission sets comes from the
plan, the dates from the spec's ``[decommission]`` and ``[notify]`` settings. Nothing is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from domain import csv_export
from domain.plan import Outcome, Plan
from domain.records import IdentityUser

CSV_COLUMNS = [
    "email",
    "name",
    "user_name",
    "portal_url",
    "accounts",
    "old_iam_users",
    "disable_on",
    "delete_on",
    "markdown_file",
    "eml_file",
]


@dataclass(frozen=True)
class NoticeContext:
    """What every notice of one run shares."""

    migration: str
    portal_url: str
    disable_on: date
    delete_on: date
    sender: str


@dataclass
class Notice:
    """One person: the Identity Center user, and what they now have in place of IAM users."""

    user_name: str
    display_name: str
    email: str | None
    accounts: dict[str, list[str]] = field(default_factory=dict)  # account id -> sets
    account_names: dict[str, str] = field(default_factory=dict)
    old_users: list[tuple[str, str]] = field(default_factory=list)  # (account id, IAM user)


def portal_url(configured: str | None, identity_store_id: str) -> str:
    """The AWS access portal: the spec's, or Identity Center's default for the store."""
    return configured or f"https://{identity_store_id}.awsapps.com/start"


def notices_from_plan(
    plan: Plan, identities: list[IdentityUser], account_names: dict[str, str]
) -> list[Notice]:
    """One notice per identity the plan migrates IAM users to, sorted by user name."""
    by_name = {i.user_name: i for i in identities}
    notices: dict[str, Notice] = {}
    for user in plan.users:
        if user.outcome != Outcome.MIGRATE or not user.identity:
            continue
        identity = by_name.get(user.identity)
        notice = notices.get(user.identity)
        if notice is None:
            notice = Notice(
                user_name=user.identity,
                display_name=(identity.display_name if identity else "") or user.identity,
                email=(identity.emails[0] if identity and identity.emails else None),
            )
            notices[user.identity] = notice
        sets = notice.accounts.setdefault(user.account_id, [])
        sets.extend(s for s in user.permission_sets if s not in sets)
        notice.account_names[user.account_id] = account_names.get(user.account_id, "")
        notice.old_users.append((user.account_id, user.user))
    return [notices[name] for name in sorted(notices)]


def _account(notice: Notice, account_id: str) -> str:
    name = notice.account_names.get(account_id)
    return f"{account_id} ({name})" if name else account_id


def render_text(notice: Notice, ctx: NoticeContext) -> str:
    """The message, in Markdown (it reads as plain text too)."""
    lines = [
        f"# Your AWS access moves to IAM Identity Center ({ctx.migration})",
        "",
        f"Hello {notice.display_name},",
        "",
        "Your access to AWS no longer needs the IAM users below: it is now given by IAM "
        "Identity Center, through single sign-on with your company account.",
        "",
        f"**Sign in at the AWS access portal: {ctx.portal_url}**",
        "",
        "## What you have now",
        "",
        "| account | permission sets (roles you can choose after signing in) |",
        "|---|---|",
    ]
    for account_id in sorted(notice.accounts):
        sets = ", ".join(sorted(notice.accounts[account_id])) or "-"
        lines.append(f"| {_account(notice, account_id)} | {sets} |")
    lines += [
        "",
        "## What happens to your old IAM users",
        "",
        "| account | IAM user | disabled on | deleted on |",
        "|---|---|---|---|",
    ]
    for account_id, user in sorted(notice.old_users):
        lines.append(
            f"| {_account(notice, account_id)} | {user} | {ctx.disable_on.isoformat()} | "
            f"{ctx.delete_on.isoformat()} |"
        )
    lines += [
        "",
        f"On **{ctx.disable_on.isoformat()}** their access keys are deactivated and their "
        "console sign-in stops working. If you still use one of them (a script, a CLI profile, "
        "a tool), switch it to the portal (`aws configure sso`) before that date, or tell the "
        "IAM team at once. They are deleted for good on "
        f"**{ctx.delete_on.isoformat()}**.",
        "",
        f"Questions: reply to this message ({ctx.sender}).",
        "",
    ]
    return "\n".join(lines)


def render_eml(notice: Notice, ctx: NoticeContext, text: str, today: date) -> bytes:
    """An RFC 5322 message (stdlib ``email``), ready for any mail client to send."""
    from datetime import UTC, datetime, time

    message = EmailMessage()
    message["From"] = ctx.sender
    message["To"] = f"{notice.display_name} <{notice.email}>" if notice.email else notice.user_name
    message["Subject"] = (
        f"Your AWS access moves to IAM Identity Center: old IAM users disabled on "
        f"{ctx.disable_on.isoformat()}"
    )
    message["Date"] = format_datetime(datetime.combine(today, time(9, 0), tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="iam-centralize.invalid")
    message["X-Iamc-Migration"] = ctx.migration
    message.set_content(text)
    return bytes(message)


def _file_stem(user_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", user_name) or "person"


def render_csv(rows: list[dict[str, Any]]) -> str:
    return csv_export.render_csv(CSV_COLUMNS, rows)


def write_notices(
    notices: list[Notice], ctx: NoticeContext, out_dir: Path, today: date
) -> list[dict[str, Any]]:
    """Write ``<user>.md`` and ``<user>.eml`` per person and ``notices.csv``; return the rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for notice in notices:
        text = render_text(notice, ctx)
        stem = _file_stem(notice.user_name)
        markdown = out_dir / f"{stem}.md"
        eml = out_dir / f"{stem}.eml"
        markdown.write_text(text, encoding="utf-8")
        eml.write_bytes(render_eml(notice, ctx, text, today))
        rows.append(
            {
                "email": notice.email or "",
                "name": notice.display_name,
                "user_name": notice.user_name,
                "portal_url": ctx.portal_url,
                "accounts": "; ".join(
                    f"{_account(notice, a)}: {', '.join(sorted(sets))}"
                    for a, sets in sorted(notice.accounts.items())
                ),
                "old_iam_users": "; ".join(f"{a}/{u}" for a, u in sorted(notice.old_users)),
                "disable_on": ctx.disable_on.isoformat(),
                "delete_on": ctx.delete_on.isoformat(),
                "markdown_file": str(markdown),
                "eml_file": str(eml),
            }
        )
    (out_dir / "notices.csv").write_text(render_csv(rows), encoding="utf-8")
    return rows
