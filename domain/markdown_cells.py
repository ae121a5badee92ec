"""Markdown table cells: a value escaped so it stays in its own cell on one line."""

from __future__ import annotations

from typing import Any


def cell(value: Any) -> str:
    """``value`` as text for a Markdown table cell: pipes escaped, newlines flattened.

    Args:
        value: Anything; it is written as ``str(value)``.

    Returns:
        The text, safe between two ``|``.
    """
    return str(value).replace("|", "\\|").replace("\n", " ")
