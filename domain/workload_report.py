"""The workloads report for people: table rows, JSON and CSV of the stored placements.

``iamc workloads`` and ``iamc report workloads`` print it. Every key id is masked
(``AKIA…WXYZ``): the placements' own fields, and any whole key id a free-text field (an
evidence line, a place the key is written down) might quote.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from domain import csv_export
from domain.keys import mask_key_id, mask_key_ids_in
from domain.workload_json import placement_to_json
from domain.workloads import Placement

# One row per access key; a user without keys has one row with an empty key.
CSV_COLUMNS = [
    "account",
    "user",
    "runtime",
    "confidence",
    "key",
    "status",
    "last_used",
    "first_seen",
    "last_seen",
    "events",
    "user_agents",
    "source_ips",
    "calls",
    "written_down",
    "role_first_used",
    "settled_by",
    "owner",
    "evidence",
]
# What the table shows per workload user (``iamc workloads``), in this order.
TABLE_COLUMNS = [
    "Account",
    "User",
    "Runtime",
    "Confidence",
    "Keys",
    "Key last used",
    "Role first used",
    "Evidence",
    "Written down",
]


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when else ""


def _day(when: datetime | None) -> str:
    return when.date().isoformat() if when else "-"


def table_row(placement: Placement) -> dict[str, str]:
    """One workload user as the table shows it (keys masked, dates as days)."""
    keys = [f"{mask_key_id(k.access_key_id)} {k.status}" for k in placement.keys]
    written = sum(len(k.written_down) for k in placement.keys)
    return {
        "Account": placement.account_id,
        "User": placement.user,
        "Runtime": str(placement.runtime),
        "Confidence": str(placement.confidence),
        "Keys": "\n".join(keys) or "-",
        "Key last used": _day(placement.last_used),
        "Role first used": _day(placement.role_first_used),
        "Evidence": mask_key_ids_in(placement.evidence[0]) if placement.evidence else "-",
        "Written down": str(written),
    }


def render_json(placements: list[Placement], meta: dict[str, Any]) -> str:
    """Every field of every placement (key ids masked), with the run id and accounts not read."""
    shown = []
    for placement in placements:
        data = placement_to_json(placement, masked=True)
        data["evidence"] = [mask_key_ids_in(line) for line in data["evidence"]]
        for key in data["keys"]:
            key["written_down"] = [mask_key_ids_in(w) for w in key["written_down"]]
            key["ignored"] = [mask_key_ids_in(w) for w in key["ignored"]]
        shown.append(data)
    document = {
        "migration": meta.get("migration"),
        "run_id": meta.get("run_id"),
        "recorded": meta.get("recorded"),
        "accounts_failed": meta.get("accounts_failed", {}),
        "placements": shown,
    }
    return json.dumps(document, indent=2)


def csv_rows(placements: list[Placement]) -> list[dict[str, Any]]:
    """One row per user and access key (:data:`CSV_COLUMNS`), key ids masked."""
    rows = []
    for p in placements:
        common = {
            "account": p.account_id,
            "user": p.user,
            "runtime": str(p.runtime),
            "confidence": str(p.confidence),
            "role_first_used": _iso(p.role_first_used),
            "settled_by": p.settled_by,
            "owner": p.owner or "",
            "evidence": mask_key_ids_in("; ".join(p.evidence)),
        }
        for key in p.keys or [None]:
            per_key = {
                "key": mask_key_id(key.access_key_id) if key else "",
                "status": key.status if key else "",
                "last_used": _iso(key.last_used) if key else "",
                "first_seen": _iso(key.first_seen) if key else "",
                "last_seen": _iso(key.last_seen) if key else "",
                "events": key.events if key else 0,
                "user_agents": "; ".join(key.user_agents) if key else "",
                "source_ips": "; ".join(key.source_ips) if key else "",
                "calls": "; ".join(key.calls) if key else "",
                "written_down": mask_key_ids_in("; ".join(key.written_down)) if key else "",
            }
            rows.append({c: {**common, **per_key}[c] for c in CSV_COLUMNS})
    return rows


def render_csv(placements: list[Placement]) -> str:
    """:func:`csv_rows` as CSV with a header line (every cell inert: ``domain.csv_export``)."""
    return csv_export.render_csv(CSV_COLUMNS, csv_rows(placements))
