"""The inventory report: per-account rows from a snapshot (CIS 1.21 verdicts), as JSON or CSV."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from domain import csv_export
from domain.records import AccountInventory, UserClass

# CIS 1.21 asks that IAM users be managed centrally: an account passes when the only IAM users
# left are protected ones (break-glass), which the benchmark's guidance accepts.
CIS_PASS, CIS_FAIL, CIS_UNKNOWN = "PASS", "FAIL", "UNKNOWN"
KEY_RECENCY_DAYS = 90

INVENTORY_COLUMNS = [
    "account_id",
    "account_name",
    "users",
    *[c.value for c in UserClass],
    "active_keys",
    "keys_used_90d",
    "console_without_mfa",
    "gaps",
    "cis_1_21",
    "cis_1_21_why",
    "error",
]

# What each class of IAM user left in an account needs before the account can pass.
_STILL_NEEDS = {
    UserClass.HUMAN: "human user(s): migrate, then disable and delete",
    UserClass.WORKLOAD: "workload user(s): replace their keys with roles, then retire",
    UserClass.UNUSED: "unused user(s): disable and delete",
}


def cis_why(classes: Counter, error: str | None) -> str:
    """Why an account fails CIS 1.21 (or can't be judged), from the users left in it."""
    if error:
        return "not inventoried: " + error
    parts = [
        f"{classes[user_class]} {need}"
        for user_class, need in _STILL_NEEDS.items()
        if classes[user_class]
    ]
    unclassified = sum(
        n for c, n in classes.items() if c not in _STILL_NEEDS and c != UserClass.PROTECTED
    )
    if unclassified:
        parts.append(f"{unclassified} unclassified user(s)")
    return "; ".join(parts)


def inventory_rows(inventories: list[AccountInventory], now: datetime) -> list[dict[str, Any]]:
    """One row per account: users by class, key activity, console users without MFA, CIS 1.21."""
    rows = []
    recent = now - timedelta(days=KEY_RECENCY_DAYS)
    for inventory in inventories:
        classes = Counter(u.user_class for u in inventory.users)
        keys = [k for u in inventory.users for k in u.access_keys]
        unprotected = len(inventory.users) - classes[UserClass.PROTECTED]
        if inventory.error:
            verdict = CIS_UNKNOWN
        else:
            verdict = CIS_PASS if unprotected == 0 else CIS_FAIL
        rows.append(
            {
                "account_id": inventory.account.account_id,
                "account_name": inventory.account.name,
                "users": len(inventory.users),
                **{c.value: classes[c] for c in UserClass},
                "active_keys": sum(1 for k in keys if k.status == "Active"),
                "keys_used_90d": sum(
                    1 for k in keys if k.last_used_date is not None and k.last_used_date >= recent
                ),
                "console_without_mfa": sum(
                    1 for u in inventory.users if u.password_enabled and not u.mfa_devices
                ),
                "gaps": len(inventory.gaps),
                "cis_1_21": verdict,
                "cis_1_21_why": "" if verdict == CIS_PASS else cis_why(classes, inventory.error),
                "error": inventory.error or "",
            }
        )
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    numeric = [
        c
        for c in INVENTORY_COLUMNS
        if c not in ("account_id", "account_name", "cis_1_21", "cis_1_21_why", "error")
    ]
    total: dict[str, Any] = {c: sum(r[c] for r in rows) for c in numeric}
    total["accounts"] = len(rows)
    total["accounts_passing"] = sum(1 for r in rows if r["cis_1_21"] == CIS_PASS)
    total["accounts_failing"] = sum(1 for r in rows if r["cis_1_21"] == CIS_FAIL)
    total["accounts_unknown"] = sum(1 for r in rows if r["cis_1_21"] == CIS_UNKNOWN)
    return total


def render_json(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "accounts": rows, "totals": totals(rows)}, indent=2, default=str)


def render_csv(rows: list[dict[str, Any]]) -> str:
    return csv_export.render_csv(INVENTORY_COLUMNS, rows)
