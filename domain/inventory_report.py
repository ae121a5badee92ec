"""The inventory report: per-account rows from a snapshot (CIS 1.21 verdicts), as JSON or CSV."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from domain import cis, csv_export
from domain.cis_rules import Cis
from domain.records import AccountInventory, UserClass
from domain.workloads import Placement

# CIS 1.21 as the benchmark states it (domain.cis); re-exported for the report's readers.
CIS_PASS, CIS_PASS_EXCEPTIONS, CIS_FAIL, CIS_UNKNOWN = (
    cis.PASS,
    cis.PASS_EXCEPTIONS,
    cis.FAIL,
    cis.UNKNOWN,
)
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
    "cis_1_21_exceptions",
    "cis_1_21_evidence",
    "long_lived_keys",
    "long_lived_keys_why",
    "error",
]


def inventory_rows(
    inventories: list[AccountInventory],
    now: datetime,
    rules: Cis | None = None,
    placements: dict[tuple[str, str], Placement] | None = None,
    central_account: str | None = None,
) -> list[dict[str, Any]]:
    """One row per account: users by class, key activity, console users without MFA, CIS 1.21
    (``domain.cis``: the verdict, its why and evidence, and the long-lived keys beside it).

    ``central_account``: the ``central-roles`` target's identity account, which passes CIS 1.21
    with its users (``MigrationSpec.central_account``)."""
    rules = rules or Cis()
    rows = []
    recent = now - timedelta(days=KEY_RECENCY_DAYS)
    for inventory in inventories:
        classes = Counter(u.user_class for u in inventory.users)
        keys = [k for u in inventory.users for k in u.access_keys]
        verdict = cis.verdict(inventory, rules, now, placements, central_account)
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
                "cis_1_21": verdict.status,
                "cis_1_21_why": verdict.why,
                "cis_1_21_exceptions": "; ".join(verdict.exceptions),
                "cis_1_21_evidence": "; ".join(verdict.evidence),
                "long_lived_keys": verdict.long_lived_keys,
                "long_lived_keys_why": "; ".join(verdict.keys_left),
                "error": inventory.error or "",
            }
        )
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    numeric = [
        c
        for c in INVENTORY_COLUMNS
        if c
        not in (
            "account_id",
            "account_name",
            "cis_1_21",
            "cis_1_21_why",
            "cis_1_21_exceptions",
            "cis_1_21_evidence",
            "long_lived_keys_why",
            "error",
        )
    ]
    total: dict[str, Any] = {c: sum(r[c] for r in rows) for c in numeric}
    total["accounts"] = len(rows)
    total["accounts_passing"] = sum(1 for r in rows if r["cis_1_21"] in cis.PASSING)
    total["accounts_passing_with_exceptions"] = sum(
        1 for r in rows if r["cis_1_21"] == CIS_PASS_EXCEPTIONS
    )
    total["accounts_failing"] = sum(1 for r in rows if r["cis_1_21"] == CIS_FAIL)
    total["accounts_unknown"] = sum(1 for r in rows if r["cis_1_21"] == CIS_UNKNOWN)
    return total


def render_json(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "accounts": rows, "totals": totals(rows)}, indent=2, default=str)


def render_csv(rows: list[dict[str, Any]]) -> str:
    return csv_export.render_csv(INVENTORY_COLUMNS, rows)
