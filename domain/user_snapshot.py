"""A user's pre-deletion snapshot as data: when it changed, and how a re-read joins the old one.

The delete stage snapshots a user before its first teardown step. A resumed delete reads the
user again: whatever changed since (a group joined, an inline policy put while the run was
stopped) must be in the snapshot, or the teardown removes it and a restore can't bring it back.
But a teardown step that already began removed things on purpose: for those kinds the stored
snapshot still knows them, and the re-read adds only what appeared since.
"""

from __future__ import annotations

import json
from typing import Any

from domain.credentials import CONSOLE_PASSWORD, CREDENTIAL_KINDS

# Snapshot field -> the teardown kind that removes it (domain.teardown.TEARDOWN), and for
# lists of records, the key that identifies one record.
TORN_DOWN_BY: dict[str, str] = {
    **{kind.snapshot_field: kind.teardown_kind for kind in CREDENTIAL_KINDS},
    "inline_policies": "delete-inline-policy",
    "attached_policies": "detach-managed-policy",
    "groups": "remove-from-group",
    "permissions_boundary": "delete-permissions-boundary",
}
_RECORD_KEYS = {
    kind.snapshot_field: kind.snapshot_id for kind in CREDENTIAL_KINDS if kind.snapshot_id
}
# Fields that change without the user changing: an access key's last use.
_VOLATILE = {
    kind.snapshot_field: kind.snapshot_volatile
    for kind in CREDENTIAL_KINDS
    if kind.snapshot_volatile
}


def _comparable(content: dict[str, Any]) -> str:
    """The snapshot as canonical JSON, without volatile fields, lists in a stable order."""
    shown: dict[str, Any] = {}
    for name, value in content.items():
        if name in _VOLATILE and isinstance(value, list):
            value = [{k: v for k, v in r.items() if k not in _VOLATILE[name]} for r in value]
        if isinstance(value, list):
            value = sorted(value, key=lambda item: json.dumps(item, sort_keys=True))
        shown[name] = value
    return json.dumps(shown, sort_keys=True, default=str)


def same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two snapshots describe the same user state (volatile fields and order aside)."""
    return _comparable(a) == _comparable(b)


def _union(name: str, stored: Any, live: Any) -> Any:
    if name == CONSOLE_PASSWORD.snapshot_field:
        return live if (live or {}).get("existed") else stored
    if name == "permissions_boundary":
        return live or stored
    if name == "inline_policies":
        return {**(stored or {}), **(live or {})}
    live = list(live or [])
    if name in _RECORD_KEYS:
        key = _RECORD_KEYS[name]
        seen = {record.get(key) for record in live}
        return [r for r in stored or [] if r.get(key) not in seen] + live
    return [item for item in stored or [] if item not in live] + live


def merge_snapshot(stored: dict[str, Any], live: dict[str, Any], begun: set[str]) -> dict[str, Any]:
    """The snapshot to keep after reading a user again during its deletion.

    Args:
        stored: The newest stored snapshot of the user (same unique id).
        live: The user as read now.
        begun: Teardown kinds already attempted for the user (their journal rows exist).

    Returns:
        ``live``, except that for a kind whose teardown began, what the stored snapshot had is
        kept beside what is live now (the teardown removed it, not a person).
    """
    merged = dict(live)
    for name, kind in TORN_DOWN_BY.items():
        if kind in begun:
            merged[name] = _union(name, stored.get(name), live.get(name))
    return merged
