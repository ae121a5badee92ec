"""Hard-coded keys in the plan: a risk per user, blocking its disable and delete while active.

A user whose key the current scans find written down gets a ``hard-coded-key`` finding naming
every location. If the key is Active, is still written down somewhere outside git history, and
the plan would disable and delete the user, the finding blocks the ``disable`` and ``delete``
stages (not ``provision``) until a later scan no longer finds it there, or an approver accepts
it with a recorded reason (``iamc scan accept``). A key only in git history is a risk, not a
block: nothing runs it, and disabling the key is exactly the remedy for a leaked one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.key_attribution import (
    REPLACEMENT_ROLE,
    KeyAcceptance,
    KeyFinding,
    KeyOwner,
    inventory_index,
)
from domain.keys import mask_key_id
from domain.plan import Outcome, Plan, Stage
from domain.records import AccountInventory, Finding

HARD_CODED_KEY = "hard-coded-key"
BLOCKED_STAGES = [str(Stage.DISABLE), str(Stage.DELETE)]
_MAX_LOCATIONS_IN_MESSAGE = 12


@dataclass
class _UserKeys:
    account_id: str
    user: str
    user_class: str | None
    keys: dict[str, list[KeyFinding]] = field(default_factory=dict)  # key id -> findings


def _location(finding: KeyFinding) -> dict[str, Any]:
    return {
        "where": finding.where(),
        "source": finding.source,
        "current": finding.current,
        "commit": finding.commit,
        "replace_with": REPLACEMENT_ROLE.get(finding.source, "an IAM role"),
    }


def _covering(
    acceptances: Iterable[KeyAcceptance], account_id: str, user: str, key_ids: set[str]
) -> KeyAcceptance | None:
    """The latest acceptance of this user that covers every key id found now."""
    found = None
    for acceptance in acceptances:
        if (acceptance.account_id, acceptance.user) == (account_id, user) and key_ids <= set(
            acceptance.key_ids
        ):
            found = acceptance
    return found


def hard_coded_key_findings(
    plan: Plan,
    inventories: list[AccountInventory],
    found: Iterable[KeyFinding],
    acceptances: Iterable[KeyAcceptance] = (),
    unscanned: Iterable[str] = (),
) -> list[Finding]:
    """The plan's findings about hard-coded keys.

    Args:
        plan: The plan as built (its users' outcomes and actions decide what a key blocks).
        inventories: The snapshot the plan was built from: key status is read from it, not
            from the scan (a key deactivated since the scan no longer blocks).
        found: What the current scans found (``store.scans.current_key_findings``).
        acceptances: Approvers' recorded acceptances.
        unscanned: Units of the latest scan that no scan ever read (a warning each).

    Returns:
        One finding per user with a hard-coded key (blocking ``disable``/``delete`` when
        active, current and not accepted), plus one warning per never-read unit.
    """
    owners = inventory_index(inventories)
    acceptances = list(acceptances)
    users: dict[tuple[str, str], _UserKeys] = {}
    for finding in found:
        owner = owners.get(finding.key_id or "")
        if owner is None:
            continue
        entry = users.setdefault(
            (owner.account_id, owner.user),
            _UserKeys(owner.account_id, owner.user, owner.user_class),
        )
        entry.keys.setdefault(finding.key_id or "", []).append(finding)
    acting = {
        (a.account_id, a.target)
        for a in plan.actions
        if a.stage in (Stage.DISABLE, Stage.DELETE) and a.account_id
    }
    replaced = {
        (u.account_id, u.user) for u in plan.users if u.outcome == Outcome.REPLACE_WITH_ROLE
    }
    results = [
        _user_finding(
            entry, owners, (account_id, user) in acting, acceptances, (account_id, user) in replaced
        )
        for (account_id, user), entry in sorted(users.items())
    ]
    for unit in unscanned:
        results.append(
            Finding(
                severity="warning",
                kind="key-scan-gap",
                message=f"{unit}: no key scan has read this yet; keys written down there are "
                "unknown",
            )
        )
    return results


def _user_finding(
    entry: _UserKeys,
    owners: Mapping[str, KeyOwner],
    acts: bool,
    acceptances: list[KeyAcceptance],
    replaced: bool = False,
) -> Finding:
    """One user's finding: blocking when the plan acts on it and an active key is current.

    A workload the plan moves to a role is the exception: where its key is written down is
    the owner's worklist (the hand-off lists it), and its disable waits for proof that the key
    is no longer used (the disable stage's live ``workload-cut-over`` check), not for a scan.
    """
    account_id, user = entry.account_id, entry.user
    parts, keys_out, blocking_keys = _describe_keys(entry, owners)
    details: dict[str, Any] = {"user_class": entry.user_class, "keys": keys_out}
    message = "hard-coded " + " | ".join(parts)
    severity = "warning"
    if blocking_keys and acts and replaced:
        message += (
            ": its owner removes it when switching to the role (the hand-off lists where); "
            "disable waits until the key is quiet or the role is in use since its last use"
        )
    elif blocking_keys and acts:
        acceptance = _covering(acceptances, account_id, user, set(entry.keys))
        if acceptance is None:
            severity = "blocking"
            details["stages"] = BLOCKED_STAGES
            message += (
                ": disable and delete are held until a later 'iamc scan' no longer finds "
                f"the active key there, or 'iamc scan accept {account_id}/{user} --by NAME "
                "--reason ...' records why it is safe"
            )
        else:
            details["accepted"] = {
                "by": acceptance.approver,
                "reason": acceptance.reason,
                "at": acceptance.at.isoformat(),
            }
            message += (
                f": accepted by {acceptance.approver} at {acceptance.at:%Y-%m-%d %H:%M}: "
                f"{acceptance.reason}"
            )
    elif blocking_keys:
        message += ": the plan does not disable this user; replace the key before it does"
    return Finding(
        severity=severity,
        kind=HARD_CODED_KEY,
        message=message,
        account_id=account_id,
        subject=user,
        details=details,
    )


def _describe_keys(
    entry: _UserKeys, owners: Mapping[str, KeyOwner]
) -> tuple[list[str], list[dict[str, Any]], set[str]]:
    """Per key of the user: its message part, its details row; and the keys that block."""
    keys_out = []
    parts = []
    blocking_keys = set()
    for key_id, findings in sorted(entry.keys.items()):
        owner = owners[key_id]
        locations = sorted(
            {(f.where(), f.source): f for f in findings}.values(),
            key=lambda f: (not f.current, f.where()),
        )
        current = [f for f in locations if f.current]
        if owner.status == "Active" and current:
            blocking_keys.add(key_id)
        last_used = f", last used {owner.last_used:%Y-%m-%d}" if owner.last_used else ""
        shown = [f.where() for f in locations[:_MAX_LOCATIONS_IN_MESSAGE]]
        more = len(locations) - len(shown)
        parts.append(
            f"{mask_key_id(key_id)} ({owner.status}{last_used}) at "
            + "; ".join(shown)
            + (f"; and {more} more" if more > 0 else "")
        )
        keys_out.append(
            {
                "key": mask_key_id(key_id),
                "status": owner.status,
                "last_used": owner.last_used.isoformat() if owner.last_used else None,
                "locations": [_location(f) for f in locations],
            }
        )
    return parts, keys_out, blocking_keys


def add_hard_coded_key_risks(
    plan: Plan,
    inventories: list[AccountInventory],
    found: Iterable[KeyFinding],
    acceptances: Iterable[KeyAcceptance] = (),
    unscanned: Iterable[str] = (),
) -> None:
    """Add :func:`hard_coded_key_findings` to the plan's findings, in the plan's order."""
    plan.findings.extend(hard_coded_key_findings(plan, inventories, found, acceptances, unscanned))
    plan.findings.sort(
        key=lambda f: (f.severity, f.kind, f.account_id or "", f.subject or "", f.message)
    )


def worklist_markdown(plan: Plan) -> list[str]:
    """plan.md's worklist: for each user with hard-coded keys, where each key lives and the
    role that replaces it there. Empty when no scan found any."""
    findings = [f for f in plan.findings if f.kind == HARD_CODED_KEY]
    if not findings:
        return []
    lines = [
        "## Hard-coded keys: worklist",
        "",
        "Where each key of an IAM user is written down, and what replaces it there. Workload "
        "users first: their keys must move to roles before anything is disabled.",
        "",
        "| Account | IAM user | Class | Key | Where | Replace with | Status |",
        "|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(
        findings,
        key=lambda f: (f.details.get("user_class") != "workload", f.account_id, f.subject),
    )
    for finding in ordered:
        status = (
            "**blocks disable/delete**"
            if finding.severity == "blocking"
            else ("accepted" if finding.details.get("accepted") else "risk")
        )
        for key in finding.details.get("keys", []):
            for location in key["locations"]:
                where = location["where"].replace("|", "\\|")
                lines.append(
                    f"| {finding.account_id} | `{finding.subject}` | "
                    f"{finding.details.get('user_class') or '-'} | {key['key']} ({key['status']})"
                    f" | {where} | {location['replace_with']} | {status} |"
                )
    lines.append("")
    return lines
