"""Access key ids as people may see them: prefix and last four (``AKIA…WXYZ``)."""

from __future__ import annotations

import re

# A whole access key id inside a longer text (an evidence line, a location): AWS's prefixes for
# user keys, temporary keys and the rarer kinds (IAM user guide, "Unique identifiers").
_KEY_ID_IN_TEXT = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")


def mask_key_id(key_id: str | None) -> str:
    """Show an access key id as prefix + last four (``AKIA…WXYZ``), never whole outside state.

    ``None`` or an empty id (a secret found with no key id near it) shows as ``-``.
    """
    if not key_id:
        return "-"
    if len(key_id) <= 8:
        return "…" + key_id[-4:]
    return f"{key_id[:4]}…{key_id[-4:]}"


def mask_key_ids_in(text: str) -> str:
    """``text`` with every whole access key id in it masked (:func:`mask_key_id`)."""
    return _KEY_ID_IN_TEXT.sub(lambda m: mask_key_id(m.group(0)), text)
