"""Placements as JSON: whole for the state DB, key ids masked for people (``iamc workloads``)."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from domain.keys import mask_key_id
from domain.workloads import Confidence, KeyUsage, Placement, Runtime

_KEY_DATES = ("last_used", "first_seen", "last_seen")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def placement_to_json(placement: Placement, *, masked: bool = True) -> dict[str, Any]:
    """Every field of ``placement``; key ids masked unless ``masked`` is False (state DB)."""
    data = asdict(placement)
    data["runtime"], data["confidence"] = str(placement.runtime), str(placement.confidence)
    data["role_first_used"] = _iso(placement.role_first_used)
    data["last_used"] = _iso(placement.last_used)
    for key in data["keys"]:
        for name in _KEY_DATES:
            key[name] = _iso(key[name])
        if masked:
            key["access_key_id"] = mask_key_id(key["access_key_id"])
    return data


def placement_from_json(data: dict[str, Any]) -> Placement:
    """The placement :func:`placement_to_json` (``masked=False``) wrote."""
    names = {f.name for f in fields(Placement)}
    known = {k: v for k, v in data.items() if k in names}
    key_names = {f.name for f in fields(KeyUsage)}
    keys = []
    for key in known.pop("keys", []):
        key = {k: v for k, v in key.items() if k in key_names}
        for name in _KEY_DATES:
            key[name] = _date(key.get(name))
        keys.append(KeyUsage(**key))
    known["runtime"] = Runtime(known["runtime"])
    known["confidence"] = Confidence(known["confidence"])
    known["role_first_used"] = _date(known.get("role_first_used"))
    return Placement(**known, keys=keys)
