"""``json.dumps``'s exact bytes at orjson's speed: plan hashes and plan.json of 10,000 users.

A plan's hash and its fingerprints are SHA-256 of ``json.dumps(sort_keys=True, default=str)``
text, stored with approved plans and recomputed at apply time, so the bytes must not change.
orjson writes the same layout about ten times faster; what it writes differently is put
right here: non-ASCII characters (and DEL) escaped as ``json.dumps(ensure_ascii=True)`` does.
What orjson can't take (non-string keys, integers beyond 64 bits) goes the slow way. Floats
below 1e-4 or from 1e16 on, NaN and infinities, and plain ``Enum`` members (orjson writes
their value, json.dumps their ``str``) would differ: plans hold no floats, and our enums are
``StrEnum``s, which both write as their value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# What json.dumps(ensure_ascii=True) escapes that orjson writes as is: inside JSON strings
# only, since JSON's own syntax is ASCII.
_NOT_ASCII_BYTES = re.compile(rb"[\x7f-\xff]+")
# As json.dumps(default=str) shows datetimes and dataclasses, not orjson's own forms.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _escape_non_ascii(match: re.Match[bytes]) -> bytes:
    escaped = []
    for char in match.group().decode():
        code = ord(char)
        if code < 0x10000:
            escaped.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            escaped.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
    return "".join(escaped).encode()


def _as_json_writes(raw: bytes) -> bytes:
    # Masked key ids in action ids are the one non-ASCII character most plans hold.
    raw = raw.replace("…".encode(), b"\\u2026")
    if raw.isascii() and b"\x7f" not in raw:
        return raw
    return _NOT_ASCII_BYTES.sub(_escape_non_ascii, raw)


def dumps_compact(data: Any) -> bytes:
    """``json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)``, as ASCII."""
    try:
        raw = orjson.dumps(data, default=str, option=_OPTIONS)
    except TypeError:
        return _COMPACT.encode(data).encode()
    return _as_json_writes(raw)


def dumps_indented(data: Any) -> bytes:
    """``json.dumps(data, indent=2, sort_keys=True, default=str)``, as ASCII."""
    try:
        raw = orjson.dumps(data, default=str, option=_OPTIONS | orjson.OPT_INDENT_2)
    except TypeError:
        return json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    return _as_json_writes(raw)
