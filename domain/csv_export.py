"""The one CSV writer of every export: no cell reaches a spreadsheet as a live formula.

Our exports carry names we did not choose: IAM user names (which may contain ``=``, ``+``,
``@`` and ``-``), file paths found by the key scan, tag values, AWS error messages. A
spreadsheet that opens the CSV evaluates a cell beginning with ``=``, ``+``, ``-`` or ``@``
as a formula (``=HYPERLINK(...)`` links anywhere, ``=cmd|...`` runs commands in old Excel),
and some also after a leading tab or carriage return. OWASP's advice for CSV injection
(https://owasp.org/www-community/attacks/CSV_Injection): prefix such a cell with a single
quote, which spreadsheets show as text; the csv module already quotes separators and quotes.

Only text is neutralised. An ``int`` or ``float`` (a count, a line number) is written as the
number it is, so ``-5`` from a numeric column stays a number; the text ``"-5"`` (a name that
happens to look like one) gets its quote like any other text that begins with ``-``. Readers
that want the original value strip one leading ``'`` from a cell that begins with ``'`` and a
trigger character.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

# What makes a spreadsheet treat a cell as a formula (OWASP's list).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """One cell made inert: text beginning with a formula trigger gets a leading ``'``.

    Numbers (``int``, ``float``, ``bool``) and ``None`` (an empty cell) are returned as they
    are; anything else is written as its text, and neutralised as text.
    """
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def render_csv(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    extra: Literal["raise", "ignore"] = "raise",
) -> str:
    """A CSV document: a header of ``columns``, then one line per row, every cell inert.

    Args:
        columns: The header, in order; a row's missing column is an empty cell.
        rows: One mapping per line, by column name.
        extra: ``"raise"`` (a row's key outside ``columns`` is a bug) or ``"ignore"``
            (rows carry more than this export shows).

    Returns:
        The document, ``\\n`` line endings.

    Raises:
        ValueError: a row has a key outside ``columns`` and ``extra`` is ``"raise"``.
    """
    out = io.StringIO()
    # The only csv writers in the code base (tests/test_csv_exports.py keeps it so).
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction=extra, lineterminator="\n")
    # Python 3.11's writer quotes a field only for the characters of its line terminator: a
    # bare carriage return would go out unquoted and split the row for every reader. A row
    # with one is written with every field quoted (valid CSV, the value kept as it is).
    quoted = csv.DictWriter(
        out,
        fieldnames=columns,
        extrasaction=extra,
        lineterminator="\n",
        quoting=csv.QUOTE_ALL,
    )
    writer.writeheader()
    for row in rows:
        inert = {key: neutralise(value) for key, value in row.items()}
        has_cr = any(isinstance(value, str) and "\r" in value for value in inert.values())
        (quoted if has_cr else writer).writerow(inert)
    return out.getvalue()
