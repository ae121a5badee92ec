"""The state DB's schema: ``iamc db upgrade`` (once, before a work pool's workers start) and
``iamc db current``."""

from __future__ import annotations

import typer

from engine.migration import state_db_revisions, upgrade_state_db
from iamc.commands.common import SpecOption
from iamc.consoles import console

app = typer.Typer()
db_app = typer.Typer(
    help="The state DB's schema: upgrade it once before workers start, or show its revision.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "empty"


@db_app.command("upgrade")
def upgrade(spec: SpecOption) -> None:
    """Upgrade the spec's state DB to this iamc's schema; a DB at it already is left as it is.

    Run it once before the workers of a work pool start (they would each try it otherwise).
    Several at once are safe: PostgreSQL's advisory lock (SQLite's write lock) lets one
    upgrade and the others find it done.
    """
    url, before, head = upgrade_state_db(spec)
    if before == (head,):
        console.print(f"state DB {url}: already at revision {head}")
    else:
        console.print(f"state DB {url}: upgraded from {_revisions(before)} to {head}")


@db_app.command("current")
def current(spec: SpecOption) -> None:
    """The spec's state DB's schema revision and this iamc's; exit 1 when they differ."""
    url, revisions, head = state_db_revisions(spec)
    if revisions == (head,):
        console.print(f"state DB {url}: at revision {head}, this iamc's")
        return
    console.print(
        f"state DB {url}: at revision {_revisions(revisions)}, this iamc's is {head}: "
        f"run 'iamc db upgrade -c {spec}'"
    )
    raise typer.Exit(1)
