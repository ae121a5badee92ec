"""IAM policy documents in canonical form: equal access gives equal text and fingerprint.

Normalisation folds what IAM treats as the same (key order, single-item lists, whitespace,
action case, statement order; Sid ignored) so that identical access is recognised across users,
accounts and waves.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# Omitting Version means 2008-10-17 to IAM, but the issue asks us to normalise to the current
# language version; the "policy-version-changed" finding flags where that changes meaning.
DEFAULT_POLICY_VERSION = "2012-10-17"

# IAM JSON policy reference, "Sid": ASCII letters and digits only.
SID_PATTERN = re.compile(r"[A-Za-z0-9]+")
_ACTION_KEYS = ("Action", "NotAction")
_RESOURCE_KEYS = ("Resource", "NotResource")
_PRINCIPAL_KEYS = ("Principal", "NotPrincipal")


def canonical_json(obj: Any) -> str:
    """Serialise to the one canonical JSON text: sorted keys, no whitespace, UTF-8 characters.

    Args:
        obj: Any JSON-serialisable value.

    Returns:
        The compact, key-sorted JSON text.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def as_list(value: Any) -> list[Any]:
    """A policy element as a list: IAM allows a single value where a list is meant; an
    element that is absent (None) is an empty list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sorted_unique(values: Any) -> list[Any]:
    """A single item and a one-item list mean the same in IAM: always a sorted, unique list."""
    by_key: dict[str, Any] = {}
    for value in as_list(values):
        by_key.setdefault(canonical_json(value), value)
    return [by_key[key] for key in sorted(by_key)]


def _actions(values: Any, *, fold: bool) -> list[str]:
    # Action names are case-insensitive (IAM JSON policy elements reference, "Action"):
    # compare lower-cased; when shown, lower-case the service prefix and keep the smallest
    # spelling of the name, so the choice doesn't depend on which document came first.
    chosen: dict[str, str] = {}
    for raw in as_list(values):
        text = str(raw)
        prefix, sep, rest = text.partition(":")
        spelled = text.lower() if fold else prefix.lower() + sep + rest
        key = spelled.lower()
        if key not in chosen or spelled < chosen[key]:
            chosen[key] = spelled
    return [chosen[key] for key in sorted(chosen)]


def _principal(value: Any) -> Any:
    if isinstance(value, dict):
        return {kind: _sorted_unique(ids) for kind, ids in sorted(value.items())}
    return value  # "*"


def _condition(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        operator: (
            {key: _sorted_unique(v) for key, v in sorted(keys.items())}
            if isinstance(keys, dict)
            else keys
        )
        for operator, keys in sorted(value.items())
    }


def _statement(raw: dict[str, Any], *, for_output: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "Sid":
            # A Sid is a label: it changes no access, so only the shown form keeps it.
            if for_output:
                out[key] = value
        elif key in _ACTION_KEYS:
            out[key] = _actions(value, fold=not for_output)
        elif key in _RESOURCE_KEYS:
            out[key] = _sorted_unique(value)
        elif key in _PRINCIPAL_KEYS:
            out[key] = _principal(value)
        elif key == "Condition":
            out[key] = _condition(value)
        else:
            out[key] = value
    return {key: out[key] for key in sorted(out)}


def statement_pairs(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(fingerprint key, shown statement) per distinct statement, sorted by key."""
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    for raw in as_list(document.get("Statement", [])):
        if not isinstance(raw, dict):
            continue
        key = canonical_json(_statement(raw, for_output=False))
        shown = _statement(raw, for_output=True)
        shown_text = canonical_json(shown)
        if key not in chosen or shown_text < chosen[key][0]:
            chosen[key] = (shown_text, shown)
    return [(key, chosen[key][1]) for key in sorted(chosen)]


def _loads(document: dict[str, Any] | str) -> dict[str, Any]:
    return json.loads(document) if isinstance(document, str) else document


def normalize_policy(document: dict[str, Any] | str, *, for_output: bool = False) -> dict[str, Any]:
    """Normalise a policy document so that documents granting the same access compare equal.

    Keys are sorted; ``Action``, ``NotAction``, ``Resource``, ``NotResource``, principal and
    condition values become sorted, de-duplicated lists (a single item equals a one-item list);
    action names compare case-insensitively; statements are de-duplicated and sorted by their
    canonical JSON; ``Version`` defaults to 2012-10-17. Wildcards are not expanded: two
    documents that grant the same access in different words still differ, which only costs an
    extra permission set, never a wrong one.

    Args:
        document: A policy document (dict, or its JSON text).
        for_output: False (default) gives the fingerprint form: no ``Sid`` or ``Id``, actions
            all lower-case. True gives the form to write: ``Sid`` kept, service prefix
            lower-case, action names in their canonical spelling.

    Returns:
        The normalised document.
    """
    document = _loads(document)
    normalized: dict[str, Any] = {
        "Statement": [
            shown if for_output else json.loads(key) for key, shown in statement_pairs(document)
        ],
        "Version": document.get("Version", DEFAULT_POLICY_VERSION),
    }
    if for_output and "Id" in document:
        normalized["Id"] = document["Id"]
    return normalized


def policy_fingerprint(document: dict[str, Any] | str) -> str:
    """The sha256 hex digest of a policy document's normalised (fingerprint) form.

    Args:
        document: A policy document (dict, or its JSON text).

    Returns:
        64 hex characters; equal for documents that differ only in form.
    """
    return sha256_hex(canonical_json(normalize_policy(document)))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
