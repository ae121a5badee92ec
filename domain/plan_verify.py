"""Is the plan.json in front of a change board the stored plan? Compare content, name the changes.

A plan.json holds the plan's content (key ids masked, as everywhere outside the state DB) plus
metadata (id, hash, approvals). The stored plan, rendered the same way, must equal the file's
content exactly; otherwise we say which sections, and which actions, users, assignments or
permission sets, differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from domain.plan import Plan, hashed_content, sha256_of
from domain.plan_render import render_json

# Keys of plan.json that describe the plan rather than belong to it (plan_meta and friends).
META_KEYS = frozenset({"plan_id", "hash", "created", "approvals", "runs", "organization_sets"})
_SHOWN = 5  # items named per section before "and N more"

# How the items of a list section are told apart, to name what was added, removed or changed.
_ITEM_KEYS = {
    "actions": lambda item: str(item.get("id")),
    "users": lambda item: f"{item.get('account_id')}/{item.get('user')}",
    "permission_sets": lambda item: str(item.get("name")),
    "assignments": lambda item: (
        f"{item.get('account_id')}:{item.get('permission_set_name')}:"
        f"{item.get('principal_type')}:{item.get('principal_name')}"
    ),
}


@dataclass
class PlanFileCheck:
    """The outcome of comparing a plan file with the stored plan."""

    file_hash: str  # the content hash recomputed from the file
    expected_hash: str  # the same hash of the stored plan, rendered as files are
    hash_in_file: str | None
    stored_hash: str
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def rendered_content(plan: Plan) -> dict[str, Any]:
    """The stored plan's content exactly as ``plan.json`` shows it (key ids masked)."""
    return json.loads(render_json(plan, {}))


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _list_differences(section: str, found: Any, expected: Any) -> str:
    key = _ITEM_KEYS.get(section)
    if key is None or not isinstance(found, list) or not isinstance(expected, list):
        return f"section {section!r} differs"
    in_file = {key(item): item for item in found if isinstance(item, dict)}
    stored = {key(item): item for item in expected}
    added = sorted(set(in_file) - set(stored))
    removed = sorted(set(stored) - set(in_file))
    changed = sorted(k for k in set(in_file) & set(stored) if in_file[k] != stored[k])
    parts = []
    if changed:
        parts.append(f"{len(changed)} changed ({_names(changed)})")
    if added:
        parts.append(f"{len(added)} not in the stored plan ({_names(added)})")
    if removed:
        parts.append(f"{len(removed)} missing from the file ({_names(removed)})")
    if not parts:
        parts.append("order or duplicates differ")
    return f"section {section!r}: " + "; ".join(parts)


def compare_plan_file(data: dict[str, Any], stored: Plan, stored_hash: str) -> PlanFileCheck:
    """Compare a parsed plan.json with the stored plan.

    Args:
        data: The file, parsed.
        stored: The stored plan (from the state DB; key ids whole).
        stored_hash: The hash stored with it (what approvals bind).

    Returns:
        Both content hashes, and one line per difference (empty when identical).
    """
    expected = rendered_content(stored)
    content = {k: v for k, v in data.items() if k not in META_KEYS}
    check = PlanFileCheck(
        file_hash=sha256_of(hashed_content(content)),
        expected_hash=sha256_of(hashed_content(expected)),
        hash_in_file=data.get("hash"),
        stored_hash=stored_hash,
    )
    if check.file_hash != check.expected_hash:
        check.differences.append(
            f"content hash of the file {check.file_hash[:12]} differs from the stored plan's "
            f"{check.expected_hash[:12]} (as rendered in plan files)"
        )
    if check.hash_in_file != stored_hash:
        check.differences.append(
            f"the file says hash {str(check.hash_in_file)[:12]}, the stored plan has "
            f"{stored_hash[:12]}"
        )
    for section in sorted(set(content) | set(expected)):
        if section not in expected:
            check.differences.append(f"section {section!r} is not in the stored plan")
        elif section not in content:
            check.differences.append(f"section {section!r} is missing from the file")
        elif content[section] != expected[section]:
            check.differences.append(
                _list_differences(section, content[section], expected[section])
            )
    return check
