"""Where the key scan's records used to live: plain data, now in ``domain.key_findings``.

Kept so that older imports keep working; the one masking function is ``domain.keys.mask_key_id``.
"""

from __future__ import annotations

from domain.key_findings import (
    HitSource,
    IgnoredHit,
    IgnoreReason,
    KeyHit,
    ScanGap,
    ScanResult,
    ScanStats,
    SkippedItem,
)
from domain.keys import mask_key_id

__all__ = [
    "HitSource",
    "IgnoreReason",
    "IgnoredHit",
    "KeyHit",
    "ScanGap",
    "ScanResult",
    "ScanStats",
    "SkippedItem",
    "mask_key_id",
]
