"""The plan's "Least privilege" section in plan.md: per set granted / used / never used, and
in trim mode what each person loses."""

from __future__ import annotations

from typing import Any

_SHOWN = 8  # items named in a cell before "and N more"


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _used(used: dict[str, dict[str, Any]]) -> str:
    parts = []
    for ns, seen in used.items():
        who = seen["by"]
        by = who[0] if len(who) == 1 else f"{len(who)} people"
        parts.append(f"{ns} ({by}, {seen['last'][:10]})")
    return _names(parts)


def _lost(loss: dict[str, Any]) -> tuple[str, str, str]:
    removed = list(loss["services_removed"])
    if loss["all_other_services"]:
        removed.insert(0, "every service not used")
    if loss["statements_narrowed"] and not removed:
        removed.append(f"{loss['statements_narrowed']} inline statement(s) narrowed")
    kept = [f"{name} ({n} unused)" for name, n in loss["kept_whole"].items()]
    narrowed = [
        f"{name} (narrowed to the used services: {f'{n} unused' if n else 'all others'} removed)"
        for name, n in loss.get("policies_narrowed", {}).items()
    ]
    return _names([*loss["policies_dropped"], *narrowed]), _names(removed), _names(kept)


def _never_used(entry: dict[str, Any]) -> str:
    never = entry["never_used"]
    if never is None:
        return "unknown: no holder's use was read"
    unread = entry.get("holders_unread", 0)
    if unread and never:
        return f"{_names(never)} (by the {entry['holders'] - unread} holder(s) read)"
    return _names(never)


def least_privilege_markdown(section: dict[str, Any]) -> list[str]:
    """The section's lines (empty when the plan read no usage)."""
    trim = section["mode"] == "trim"
    lines = [
        "## Least privilege",
        "",
        f"- **Mode:** `{section['mode']}` — "
        + (
            "each person's set keeps only the services they used; what they lose is listed below"
            if trim
            else "nothing is changed; granted, used and never used are shown for review"
        ),
        f"- **Window:** {section['window_days']} days; usage read at {section['read_at']} "
        f"(hash `{section['usage_hash'][:12]}`)",
        "- Narrowed by service, never by action: CloudTrail logs management events only and "
        "IAM reports actions for a few services, so an unseen action may have been used. "
        "A managed policy granting used and unused services becomes its own statements for "
        "the used services, inline; Deny statements and guardrail policies are kept; NotAction "
        "statements can't be narrowed.",
        "",
        "| Permission set | Holders | Granted | Used (by whom, last) | Never used in the window |",
        "|---|---:|---|---|---|",
    ]
    for name, entry in section["sets"].items():
        granted = entry["granted"]
        granted_text = granted if isinstance(granted, str) else _names(granted)
        unread = entry.get("holders_unread", 0)
        holders = f"{entry['holders']}" + (f" ({unread} unread)" if unread else "")
        lines.append(
            f"| `{name}` | {holders} | {_cell(granted_text)} | {_cell(_used(entry['used']))} | "
            f"{_cell(_never_used(entry))} |"
        )
    if section["unread"]:
        lines += ["", "**Not trimmed: usage unknown** (unread is never taken as unused)", ""]
        lines += ["| Account | Holder | Permission set | Why |", "|---|---|---|---|"]
        for item in section["unread"]:
            lines.append(
                f"| {item['account_id']} | {_cell(item['holder'])} | "
                f"`{item['permission_set'] or '—'}` | {_cell(item['reason'])} |"
            )
    if trim:
        lines += ["", "### What each person loses", ""]
        if not section.get("trimmed", True):
            lines.append(
                f"Nobody was trimmed: the usage read covers {section['read_window_days']} days, "
                f"fewer than the window's {section['window_days']} (finding usage-window-short)."
            )
        elif not section["losses"]:
            lines.append("Nobody loses anything.")
        else:
            lines += [
                "| Account | IAM user | Via | Now in set | Policies dropped or narrowed | "
                "Services removed | Kept whole (services unused) |",
                "|---|---|---|---|---|---|---|",
            ]
            for loss in section["losses"]:
                dropped, removed, kept = _lost(loss)
                lines.append(
                    f"| {loss['account_id']} | `{loss['user']}` | {loss['via']} | "
                    f"`{loss['permission_set'] or 'none: nothing used'}` | {_cell(dropped)} | "
                    f"{_cell(removed)} | {_cell(kept)} |"
                )
    lines.append("")
    return lines
