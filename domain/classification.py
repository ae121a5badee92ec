"""How an IAM user is classified (human, workload, protected, inactive), from its record alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from domain.credentials import CREDENTIAL_KINDS
from domain.records import User, UserClass


@dataclass(frozen=True)
class ClassificationRules:
    """What the spec says about classifying users."""

    protected_globs: tuple[str, ...] = ()
    protected_tag: str = "iamc:protected"
    inactive_days: int = 90
    # The central-roles target's identity account ([central] account): its users are people's
    # sign-in, what the migration moves access to, never something it moves away from.
    central_account: str | None = None


CENTRAL_ACCOUNT_REASON = (
    "the central identity account's users are where people sign in ([central] account)"
)


def _usable_credentials(user: User) -> list[str]:
    found = []
    for kind in CREDENTIAL_KINDS:
        active = kind.active_ids(user) if kind.usable else []
        if active:
            found.append(kind.usable_phrase(len(active)))
    return found


def classify_user(
    user: User, rules: ClassificationRules, now: datetime, account_id: str | None = None
) -> tuple[UserClass, str, datetime | None]:
    """One class per user, with the reason, and the user's last activity.

    Order matters: protected beats everything (never touched); a user whose credentials are
    all idle is unused whatever kind it was; then console or MFA makes a human; what remains
    holds only programmatic credentials and needs a role, not a person.

    Args:
        user: The user's record.
        rules: The spec's classification rules.
        now: The reference time for "inactive".
        account_id: The user's account (default: the account of its ARN); every user of
            ``rules.central_account`` is protected.
    """
    if rules.central_account is not None and rules.central_account == (
        account_id or _account_of(user.arn)
    ):
        return UserClass.PROTECTED, CENTRAL_ACCOUNT_REASON, None
    lowered = user.name.lower()
    for glob in rules.protected_globs:
        if fnmatchcase(lowered, glob.lower()):
            return UserClass.PROTECTED, f"name matches protected glob {glob!r}", None
    if user.tags.get(rules.protected_tag, "").strip().lower() == "true":
        return UserClass.PROTECTED, f"tagged {rules.protected_tag}=true", None

    used = [user.password_last_used] + [k.last_used_date for k in user.access_keys]
    used_dates = [d for d in used if d is not None]
    last_activity = max(used_dates) if used_dates else user.created
    credentials = _usable_credentials(user)
    if not credentials:
        return UserClass.UNUSED, "no usable credentials", last_activity
    if last_activity is not None and now - last_activity > timedelta(days=rules.inactive_days):
        when = "never used" if not used_dates else f"last used {last_activity:%Y-%m-%d}"
        return (
            UserClass.UNUSED,
            f"no credential used in {rules.inactive_days} days "
            f"({when}; has {', '.join(credentials)})",
            last_activity,
        )
    human = [kind for kind in CREDENTIAL_KINDS if kind.human and kind.ids(user)]
    if human:
        return UserClass.HUMAN, human[0].noun, last_activity
    return (
        UserClass.WORKLOAD,
        f"programmatic credentials only ({', '.join(credentials)})",
        last_activity,
    )


def _account_of(arn: str) -> str:
    # arn:partition:iam::ACCOUNT:user/path/name
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""
