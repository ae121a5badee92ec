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


def _usable_credentials(user: User) -> list[str]:
    found = []
    for kind in CREDENTIAL_KINDS:
        active = kind.active_ids(user) if kind.usable else []
        if active:
            found.append(kind.usable_phrase(len(active)))
    return found


def classify_user(
    user: User, rules: ClassificationRules, now: datetime
) -> tuple[UserClass, str, datetime | None]:
    """One class per user, with the reason, and the user's last activity.

    Order matters: protected beats everything (never touched); a user whose credentials are
    all idle is unused whatever kind it was; then console or MFA makes a human; what remains
    holds only programmatic credentials and needs a role, not a person.
    """
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
