"""domain.json_compat writes json.dumps's bytes: plan hashes stored with approvals must not move."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

import pytest

from domain.json_compat import dumps_compact, dumps_indented
from domain.plan import canonical, sha256_of


class Color(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass
class Record:
    name: str


VALUES = [
    {"b": 1, "a": [1, 2, {"z": None, "y": True}], "c": "text"},
    {"name": "Zoë Ünal", "emoji": "key 🔑", "ellipsis": "AKIA…WXYZ", "del": "a\x7fb"},
    {"controls": 'tab\there\nnew line \x00 \x1f quote" backslash\\ slash/'},
    {"when": datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "record": Record("r")},
    {"enums": [Color.RED, Level.HIGH], "tuple": (1, "two"), "set": {"only"}},
    {"big": 2**70, "negative": -(2**63)},
    {2: "non-string keys", 1: "go the slow way"},
    {"unicode\u2028line": "separator\u2029", "bmp": "\uffff", "astral": "\U0001f600"},
    [],
    "just a string",
    12345678901234567,
]


@pytest.mark.parametrize("value", VALUES)
def test_bytes_are_json_dumps_bytes(value):
    compact = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    indented = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
    assert dumps_compact(value) == compact
    assert dumps_indented(value) == indented


def test_plan_hashes_are_those_of_the_json_text():
    value = VALUES[1]
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    assert canonical(value) == text
    import hashlib

    assert sha256_of(value) == hashlib.sha256(text.encode()).hexdigest()
