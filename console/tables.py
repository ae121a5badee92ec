"""Table artifacts whose columns fit the Prefect UI, with every long text still readable whole.

The newer Prefect UI draws each table cell on one line cut with an ellipsis (its full text only
in a hover tooltip), so AWS's reasons and other long texts lost their end, and a wide column
pushed the others off the page. A cell longer than :data:`CELL_LIMIT` characters is cut at a
word and marked ``[n]``; the artifact's description, which both UIs render as Markdown that
wraps, lists each cut cell whole under that number.
"""

from __future__ import annotations

from typing import Any

CELL_LIMIT = 60  # characters a cell keeps: AWS's error code and the start of its message
NOTES_LIMIT = 40  # cut cells written out whole in one description


def _cut(text: str, limit: int, mark: str) -> str:
    room = limit - len(mark) - 2
    head = text[:room]
    if " " in head[room // 2 :]:
        head = head[: head.rfind(" ")]
    return f"{head.rstrip(' ,;:')}… {mark}"


def _row_label(row: dict[str, Any]) -> str:
    """The row's first two cells (``980303999753 acme-prod-app``): what the row is about."""
    values = [str(v) for v in list(row.values())[:2] if v not in (None, "")]
    return " ".join(values)[:80]


def fit_cells(
    rows: list[dict[str, Any]], limit: int = CELL_LIMIT
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows with every text cell over ``limit`` characters cut, and the notes that hold
    each cut cell whole (``[1] 980303999753 acme-prod-app, reasons: …``), in order."""
    fitted: list[dict[str, Any]] = []
    notes: list[str] = []
    for row in rows:
        out = {}
        for column, value in row.items():
            text = value if isinstance(value, str) else None
            if text is not None and len(text) > limit:
                mark = f"[{len(notes) + 1}]"
                out[column] = _cut(" ".join(text.split()), limit, mark)
                notes.append(f"{mark} {_row_label(row)}, {column}: {text}")
            else:
                out[column] = value
        fitted.append(out)
    return fitted, notes


def notes_markdown(notes: list[str], more_hint: str | None = None) -> str:
    """The cut cells written out whole, as a Markdown list for the artifact's description."""
    if not notes:
        return ""
    shown = notes[:NOTES_LIMIT]
    lines = ["", "", "**Cells cut short above, in full:**", ""]
    lines += [f"- {note.replace(chr(10), ' ')}" for note in shown]
    if len(notes) > len(shown):
        rest = len(notes) - len(shown)
        lines.append(f"- … and {rest} more" + (f": {more_hint}" if more_hint else ""))
    return "\n".join(lines)


def fitted_table(
    rows: list[dict[str, Any]], description: str, more_hint: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """(rows, description) for a table artifact: long cells cut, and written whole below the
    description."""
    fitted, notes = fit_cells(rows)
    return fitted, description + notes_markdown(notes, more_hint)
