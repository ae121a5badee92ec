"""The consoles the commands print to: reports on stdout, errors on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Reports are wide tables: when output goes to a file or pipe, don't squeeze them to 80 columns.
_WIDTH = None if sys.stdout.isatty() else 200
console = Console(width=_WIDTH)
# An error is one logical line per problem: never hard-wrapped, so it can be grepped and pasted.
err_console = Console(stderr=True, width=_WIDTH, soft_wrap=True)
