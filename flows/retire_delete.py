"""The delete stage's per-user work: preconditions right before the first delete action."""

from __future__ import annotations
