"""CIS AWS Foundations 3.0.0 §1.21 as the benchmark states it, per account, with its evidence.

The acceptance criterion: "no non-service IAM users, and non-root accounts, are present outside
the account providing centralized IAM user management"; the audit: "confirm that no IAM users
representing individuals are present". So an account FAILs while any non-service IAM user
remains: a human, a user with a console password, an unused user nobody showed to be a service,
or a protected (break-glass) user that is not a documented exception. A user counts as a
service only with evidence, which the verdict names: its owner declared it
(``[[cis.service_users]]``, and it has no console password), or, a workload user with no
console password, its keys were used only by non-interactive clients (``iamc workloads``).
The account(s) providing centralized IAM user management (``[cis] identity_accounts``, and the
``central-roles`` target's ``[central] account``) pass with their users. A documented,
unexpired exception (``[[cis.exceptions]]``) gives PASS (exceptions), listed; an expired one
FAILs. Beside the verdict, never in it: the long-lived access keys left (active keys of service
users), so a PASS never hides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.cis_rules import Cis
from domain.records import AccountInventory, User, UserClass
from domain.teardown import QUARANTINE_POLICY_NAME
from domain.workload_runtime import classify_agent
from domain.workloads import Confidence, Placement

PASS, PASS_EXCEPTIONS, FAIL, UNKNOWN = "PASS", "PASS (exceptions)", "FAIL", "UNKNOWN"
PASSING = (PASS, PASS_EXCEPTIONS)


@dataclass
class Verdict:
    """One account's CIS 1.21 verdict: why, the evidence per user, and what goes beyond it."""

    status: str
    why: str
    evidence: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    long_lived_keys: int = 0
    # Per user holding them, why its long-lived keys are still there (and what would end it).
    keys_left: list[str] = field(default_factory=list)


# What a non-service user of each class needs before the account can pass.
_STILL_NEEDS = {
    UserClass.HUMAN: "human user(s): migrate, then disable and delete",
    UserClass.WORKLOAD: (
        "workload user(s) not shown to be services: move them to roles, or have their owner "
        "declare them in [[cis.service_users]]"
    ),
    UserClass.UNUSED: "unused user(s) not shown to be services: disable and delete",
    UserClass.PROTECTED: (
        "protected user(s) not documented as exceptions: add each to [[cis.exceptions]] "
        "(owner, reason, expires)"
    ),
}


def _active_keys(user: User) -> int:
    return sum(1 for k in user.access_keys if k.status == "Active")


def service_evidence(user: User, placement: Placement | None) -> str | None:
    """Why a WORKLOAD user without a console password is a service, from where its keys are
    used (``iamc workloads``): only non-interactive clients, at least one use; else None."""
    if user.user_class != UserClass.WORKLOAD or user.password_enabled or placement is None:
        return None
    calls = sum(k.events for k in placement.keys)
    if not placement.non_interactive or calls == 0:
        return None
    agents = [a for k in placement.keys for a in k.user_agents]
    clients = ", ".join(dict.fromkeys(classify_agent(a).token for a in agents[:3]))
    return f"service: keys used only by non-interactive clients ({clients}, {calls} calls)"


def verdict(
    inventory: AccountInventory,
    rules: Cis,
    now: datetime,
    placements: dict[tuple[str, str], Placement] | None = None,
    central_account: str | None = None,
) -> Verdict:
    """CIS 1.21 for one account, as the benchmark states it (see the module's docstring).

    ``placements`` (``store.workloads.latest``): a workload user whose keys only
    non-interactive clients used is a service (:func:`service_evidence`).
    ``central_account`` (``MigrationSpec.central_account``): the ``central-roles`` target's
    identity account, where people sign in: it passes with its users, as an identity account.
    """
    placements = placements or {}
    account_id = inventory.account.account_id
    settled = _without_users_judged(inventory, rules, central_account)
    if settled is not None:
        return settled
    declared = {s.user: s for s in rules.service_users if s.account == account_id}
    excepted = {e.user: e for e in rules.exceptions if e.account == account_id}
    result = Verdict(PASS, "")
    failing: dict[UserClass | str, list[str]] = {}
    for user in sorted(inventory.users, key=lambda u: u.name):
        exception = excepted.get(user.name)
        service = declared.get(user.name)
        if exception is not None:
            if exception.expires < now.date():
                failing.setdefault("expired", []).append(
                    f"{user.name} (owner {exception.owner}, expired {exception.expires})"
                )
            else:
                # Its keys are named here, not counted as long-lived keys left: the exception
                # documents them (owner, reason, expiry); the verdict never hides them.
                keys = _active_keys(user)
                held = f"; {keys} active access key(s)" if keys else ""
                result.exceptions.append(
                    f"{user.name}: {exception.reason} (owner {exception.owner}, until "
                    f"{exception.expires}{held})"
                )
            continue
        if service is not None and not user.password_enabled:
            keys = _active_keys(user)
            result.long_lived_keys += keys
            result.evidence.append(
                f"{user.name}: service, declared by {service.owner}; no console password; "
                f"{keys} active access key(s)"
            )
            if keys:
                result.keys_left.append(
                    f"{user.name}: {keys} key(s), a service its owner {service.owner} declared"
                )
            continue
        if service is not None:
            failing.setdefault("password", []).append(user.name)
            continue
        placement = placements.get((account_id, user.name))
        used = service_evidence(user, placement)
        if used is not None and placement is not None:
            keys = _active_keys(user)
            result.long_lived_keys += keys
            result.evidence.append(f"{user.name}: {used}; {keys} active access key(s)")
            if keys:
                result.keys_left.append(f"{user.name}: {keys} key(s); {_why_kept(placement)}")
            continue
        failing.setdefault(user.user_class or "unclassified", []).append(_named(user))
    return _concluded(result, failing)


def _without_users_judged(
    inventory: AccountInventory, rules: Cis, central_account: str | None
) -> Verdict | None:
    """The verdict of an account whose users need no look: not inventoried, or an identity
    account (where people sign in); None for every other account."""
    account_id = inventory.account.account_id
    if inventory.error:
        return Verdict(UNKNOWN, "not inventoried: " + inventory.error)
    if central_account is not None and account_id == central_account:
        return Verdict(
            PASS,
            "the account providing centralized IAM user management (the central identity "
            f"account, [central] account): its {len(inventory.users)} IAM user(s) are the "
            "centralized ones",
        )
    if account_id in rules.identity_accounts:
        return Verdict(
            PASS,
            f"the account providing centralized IAM user management ([cis] identity_accounts): "
            f"its {len(inventory.users)} IAM user(s) are the centralized ones",
        )
    return None


def _concluded(result: Verdict, failing: dict[UserClass | str, list[str]]) -> Verdict:
    """The status and why once every user is judged: failing users first, then exceptions."""
    if failing:
        result.status, result.why = FAIL, _why(failing)
    elif result.exceptions:
        result.status = PASS_EXCEPTIONS
        result.why = f"no non-service IAM user but {len(result.exceptions)} documented exception(s)"
    else:
        result.why = "no non-service IAM user"
    return result


def _why_kept(placement: Placement) -> str:
    """Why a service's key is still there: nobody placed its runtime, or its move is pending."""
    if not placement.placeable or placement.confidence in (Confidence.LOW, Confidence.NONE):
        return (
            f"its runtime could not be placed ({placement.runtime}, {placement.confidence} "
            "confidence): its owner declares it in [[workloads]] to move it to a role"
        )
    return (
        f"runs in {placement.runtime}: the replace stage gives it a role; the key goes once "
        "its owner has switched (disable, delete)"
    )


# A few users are named in the why; beyond that, the counts say it.
_NAMED_AT_MOST = 3


def _named(user: User) -> str:
    """The user as the why names it: a user iamc disabled but did not delete says so (its
    delete was refused: in use during the bake, or not approved yet)."""
    if any(p.name == QUARANTINE_POLICY_NAME for p in user.inline_policies):
        return f"{user.name}, disabled, not deleted"
    return user.name


def _why(failing: dict[UserClass | str, list[str]]) -> str:
    parts = []
    for user_class, need in _STILL_NEEDS.items():
        names = failing.get(user_class)
        if names:
            shown = f" ({'; '.join(names)})" if len(names) <= _NAMED_AT_MOST else ""
            count, _, what = need.partition(": ")
            parts.append(f"{len(names)} {count}{shown}: {what}")
    if failing.get("password"):
        names = ", ".join(failing["password"])
        parts.append(f"declared service user(s) with a console password, not services: {names}")
    if failing.get("expired"):
        parts.append("expired exception(s): " + ", ".join(failing["expired"]))
    if failing.get("unclassified"):
        parts.append(f"{len(failing['unclassified'])} unclassified user(s)")
    return "; ".join(parts)
