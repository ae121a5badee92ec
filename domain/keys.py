"""Access key ids as people may see them: prefix and last four (``AKIA…WXYZ``)."""

from __future__ import annotations


def mask_key_id(key_id: str | None) -> str:
    """Show an access key id as prefix + last four (``AKIA…WXYZ``), never whole outside state.

    ``None`` or an empty id (a secret found with no key id near it) shows as ``-``.
    """
    if not key_id:
        return "-"
    if len(key_id) <= 8:
        return "…" + key_id[-4:]
    return f"{key_id[:4]}…{key_id[-4:]}"
