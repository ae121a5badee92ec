"""Notices to migrated people: a Markdown message and an .eml per person, one CSV for mail merge.

Pure rendering and file writing: who gets which accounts and permission sets comes from the
plan, the dates from the spec's ``[decommission]`` and ``[notify]`` settings. Nothing is sent
here: ``engine.notice_mail`` mails the ``.eml`` files when asked.
A plan of the ``central-roles`` target (``plan.settings["target"]``) tells each person, per
account and access, the console's switch-role link and an ``~/.aws/config`` profile
(``domain.central_roles``) instead of the Identity Center portal.
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
from domain.central_roles import config_profile, member_role_name, role_arn, switch_role_link
from domain.central_spec import CENTRAL_ROLES, IAM_USERS, SAML_ROLES, Central
from domain.plan import Outcome, Plan
from domain.records import IdentityUser

# STS's limit on a role session assumed with another role's session (role chaining).
ROLE_CHAINING_MAX_SECONDS = 3600

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
    # The central-roles target's [central] (from the plan's settings); None: Identity Center.
    central: Central | None = None
    region: str | None = None
    # The profile people's ~/.aws/config blocks switch from: their central-account sign-in.
    source_profile: str = "central"


@dataclass
class Notice:
    """One person: the Identity Center user, and what they now have in place of IAM users."""

    user_name: str
    display_name: str
    email: str | None
    accounts: dict[str, list[str]] = field(default_factory=dict)  # account id -> sets
    account_names: dict[str, str] = field(default_factory=dict)
    old_users: list[tuple[str, str]] = field(default_factory=list)  # (account id, IAM user)
    # The identity's other e-mails: a federated role of the central account that several
    # people arrive as (each holds all its access, so each is told).
    also_to: list[str] = field(default_factory=list)


def central_of(settings: dict[str, Any]) -> Central | None:
    """The plan's ``[central]`` when it was made for the central-roles target, else None."""
    if settings.get("target") != CENTRAL_ROLES or not settings.get("central"):
        return None
    return Central.model_validate(settings["central"])


def central_sign_in_url(central: Central, configured: str | None) -> str:
    """Where people sign in: the spec's ``[notify] portal_url``, or the central account's
    console sign-in page (IAM users); people arriving through SAML start at their IdP."""
    if configured:
        return configured
    if central.arrive == IAM_USERS:
        return f"https://{central.account}.signin.aws.amazon.com/console"
    return ""


def portal_url(configured: str | None, identity_store_id: str) -> str:
    """The AWS access portal: the spec's, or Identity Center's default for the store."""
    return configured or f"https://{identity_store_id}.awsapps.com/start"


def notices_from_plan(
    plan: Plan, identities: list[IdentityUser], account_names: dict[str, str]
) -> list[Notice]:
    """One notice per identity the plan migrates IAM users to, sorted by user name."""
    by_name = {i.user_name: i for i in identities}
    central = central_of(plan.settings)
    # A federated role's e-mails are the several people who arrive as it; a user's are one's.
    shared = central is not None and central.arrive == SAML_ROLES
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
                also_to=list(identity.emails[1:]) if identity and shared else [],
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


def _old_users(notice: Notice, ctx: NoticeContext) -> list[str]:
    lines = [
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
    return lines


def _profile_name(account_id: str, access: str) -> str:
    return f"{account_id}-{access}"


def central_roles_of(notice: Notice, central: Central) -> list[dict[str, str]]:
    """Per account and access: the role, its ARN, the switch-role link and the profile name."""
    rows = []
    for account_id in sorted(notice.accounts):
        for access in sorted(notice.accounts[account_id]):
            role = member_role_name(central, access)
            where = notice.account_names.get(account_id) or account_id
            rows.append(
                {
                    "account_id": account_id,
                    "access": access,
                    "role": role,
                    "role_arn": role_arn(account_id, central, access),
                    # The console's Role field takes a role's path with its name (no leading
                    # slash); it shows at most 64 characters of a display name.
                    "link": switch_role_link(
                        account_id,
                        central.role_path.lstrip("/") + role,
                        f"{access} @ {where}"[:64],
                    ),
                    "profile": _profile_name(account_id, access),
                }
            )
    return rows


def _mfa_serial(central: Central, user_name: str) -> str:
    """The conventional ARN of a central user's virtual MFA device, named after the user (the
    console's default); the notice tells people to use their device's ARN if it is named
    otherwise."""
    return f"arn:aws:iam::{central.account}:mfa/{user_name}"


def _profile_duration(central: Central) -> int:
    """The profiles' ``duration_seconds``: the member role's maximum session, except that a
    federated role's session switching into a member role is role chaining, which STS caps
    at one hour whatever the role's maximum (IAM user guide, "Role chaining"); a longer
    duration fails the AssumeRole."""
    duration = central.max_session_hours * 3600
    if central.arrive == IAM_USERS:
        return duration
    return min(duration, ROLE_CHAINING_MAX_SECONDS)


def _render_central(notice: Notice, ctx: NoticeContext, central: Central) -> str:
    as_users = central.arrive == IAM_USERS
    mfa = _mfa_serial(central, notice.user_name) if as_users else None
    if as_users:
        sign_in = (
            f"Sign in to the central account **{central.account}** as IAM user "
            f"**{notice.user_name}**, with MFA"
            + (f" ({ctx.portal_url})" if ctx.portal_url else "")
            + ", then switch into the role of each account below."
        )
    else:
        sign_in = (
            f"Sign in through your company's single sign-on to the central account "
            f"**{central.account}** as role **{notice.user_name}**"
            + (f" ({ctx.portal_url})" if ctx.portal_url else "")
            + ", then switch into the role of each account below."
        )
    roles = central_roles_of(notice, central)
    lines = [
        f"# Your AWS access moves to roles you switch into from the central account "
        f"({ctx.migration})",
        "",
        f"Hello {notice.display_name},",
        "",
        "Your access to AWS no longer needs the IAM users below: it is now a role in each "
        f"account, which you switch into from the central account {central.account}.",
        "",
        sign_in,
        "",
        "## What you have now",
        "",
        "| account | access | role | switch role in the console |",
        "|---|---|---|---|",
    ]
    for row in roles:
        lines.append(
            f"| {_account(notice, row['account_id'])} | {row['access']} | {row['role']} | "
            f"[switch role]({row['link']}) |"
        )
    source = (
        f"`{ctx.source_profile}` is your own access key of IAM user {notice.user_name} in "
        f"account {central.account} (`aws configure --profile {ctx.source_profile}`); the CLI "
        f"asks for an MFA code from {mfa} (use your device's ARN if it is named otherwise)."
        if as_users
        else f"`{ctx.source_profile}` is the profile your single sign-on tool writes for role "
        f"{notice.user_name} of account {central.account}."
    )
    lines += [
        "",
        "## The AWS CLI and SDKs",
        "",
        f"Add these profiles to `~/.aws/config`; {source}",
        "",
        "```ini",
    ]
    duration = _profile_duration(central)
    blocks = [
        config_profile(
            row["profile"],
            row["role_arn"],
            source_profile=ctx.source_profile,
            mfa_serial=mfa,
            region=ctx.region,
            duration_seconds=duration,
        )
        for row in roles
    ]
    lines += ["\n".join(blocks).rstrip("\n"), "```", ""]
    lines += _old_users(notice, ctx)
    lines += [
        "",
        f"On **{ctx.disable_on.isoformat()}** their access keys are deactivated and their "
        "console sign-in stops working. If you still use one of them (a script, a CLI profile, "
        "a tool), switch it to a profile above before that date, or tell the IAM team at once. "
        f"They are deleted for good on **{ctx.delete_on.isoformat()}**.",
        "",
        f"Questions: reply to this message ({ctx.sender}).",
        "",
    ]
    return "\n".join(lines)


def render_text(notice: Notice, ctx: NoticeContext) -> str:
    """The message, in Markdown (it reads as plain text too)."""
    if ctx.central is not None:
        return _render_central(notice, ctx, ctx.central)
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
    lines += ["", *_old_users(notice, ctx)]
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
    message["To"] = (
        ", ".join([f"{notice.display_name} <{notice.email}>", *notice.also_to])
        if notice.email
        else notice.user_name
    )
    moves_to = (
        f"roles you switch into from account {ctx.central.account}"
        if ctx.central is not None
        else "IAM Identity Center"
    )
    message["Subject"] = (
        f"Your AWS access moves to {moves_to}: old IAM users disabled on "
        f"{ctx.disable_on.isoformat()}"
    )
    message["Date"] = format_datetime(datetime.combine(today, time(9, 0), tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="iam-centralize.invalid")
    message["X-Iamc-Migration"] = ctx.migration
    message.set_content(text)
    return bytes(message)


def _file_stem(user_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", user_name) or "person"


def _access(sets: list[str], ctx: NoticeContext) -> list[str]:
    """What a person chooses in an account: permission sets, or (central-roles) role names."""
    if ctx.central is None:
        return sets
    return [member_role_name(ctx.central, s) for s in sets]


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
                    f"{_account(notice, a)}: {', '.join(sorted(_access(sets, ctx)))}"
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
