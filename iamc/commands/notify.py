"""The notify step's command: ``iamc notify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import MailError
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from iamc.commands.common import SpecOption, report_to_prefect
from iamc.consoles import console

app = typer.Typer()

# Addresses listed in the dry run's line; the rest are counted (notices.csv lists them all).
_SHOWN = 20


@app.command("notify")
def notify(
    spec: SpecOption,
    plan_id: Annotated[
        int | None, typer.Argument(help="The provisioned plan; default: the latest plan.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write them; default: [notify] out_dir / plan id."),
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send",
            help="Mail each notice through [notify.smtp]; each recipient is journaled, so "
            "nobody is mailed the same notice twice. Without it nothing is sent.",
        ),
    ] = False,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown",
            help="With --send: mail again the notices whose earlier sending has no recorded "
            "outcome (the mail log shows they did not arrive).",
        ),
    ] = False,
    mark_unknown_sent: Annotated[
        bool,
        typer.Option(
            "--mark-unknown-sent",
            help="With --send: record those notices as sent (the mail log shows they arrived).",
        ),
    ] = False,
) -> None:
    """Write each person's notice: what changes, when, how they sign in now; mail with --send.

    Per person a Markdown message and an .eml, and notices.csv for mail merge: the access
    portal (Identity Center), or for a central-roles plan each account's switch-role link and
    an ~/.aws/config profile; the dates their old IAM users are disabled and deleted. With
    [notify.smtp] in the spec, --send mails each .eml (credentials from the environment
    variables the spec names); without --send the command says who would be mailed.
    """
    if resend_unknown and mark_unknown_sent:
        raise MailError("--resend-unknown and --mark-unknown-sent exclude each other: choose one")
    if (resend_unknown or mark_unknown_sent) and not send:
        raise MailError("--resend-unknown and --mark-unknown-sent act on sending: add --send")
    unknown = "resend" if resend_unknown else "mark-sent" if mark_unknown_sent else "report"
    report_to_prefect()
    # Deferred: the flow imports Prefect, which reads its settings at import.
    with imports_without_gc():
        from flows.notify import notify_flow

    doing = "writing and mailing" if send else "writing"
    with Migration.open(spec) as mig, console.status(f"[bold]notify[/] {doing} the notices"):
        summary = notify_flow(str(spec), plan_id, str(out) if out else None, send, unknown)
        again = mig.hint(f"notify {summary['plan_id']} --send")
    console.print(
        f"notify run {summary['run_id']} of plan {summary['plan_id']}: {summary['people']} "
        f"people, notices in {summary['out_dir']} (mail merge: {summary['csv']}). Old IAM "
        f"users disabled on {summary['disable_on']}, deleted on {summary['delete_on']}.",
        highlight=False,
    )
    _print_mail(summary.get("mail"), again)
    if summary.get("held_back"):
        console.print(
            f"[yellow]{summary['held_back']} notice(s) held back: their accounts failed "
            "(see notices.csv)[/]",
            highlight=False,
        )


def _print_mail(mail: dict[str, Any] | None, again: str) -> None:
    """What was mailed, or who would be and how to send: addresses, never credentials."""
    if mail is None:
        console.print(
            "Nothing was sent: the spec has no [notify.smtp] (mail the .eml files or "
            "notices.csv yourself, or add [notify.smtp] and run with --send).",
            highlight=False,
        )
        return
    counts = mail["counts"]
    recipients = mail["recipients"]
    shown = ", ".join(recipients[:_SHOWN])
    if len(recipients) > _SHOWN:
        shown += f" and {len(recipients) - _SHOWN} more"
    already = counts.get("already sent", 0)
    done = f"; {already} already sent earlier" if already else ""
    if mail["send"]:
        console.print(
            f"Mailed {counts.get('sent', 0)} notice(s) through {mail['smtp']}"
            f"{': ' + shown if shown else ''}{done}.",
            highlight=False,
        )
    else:
        console.print(
            f"Nothing was sent (dry run). {counts.get('would send', 0)} notice(s) would be "
            f"mailed through {mail['smtp']}{': ' + shown if shown else ''}{done}.\n"
            f"To send them: {again}",
            highlight=False,
        )
        if counts.get("unknown"):
            console.print(
                f"[yellow]{counts['unknown']} earlier sending(s) have no recorded outcome: "
                "see the notify run's table; --send reports them[/]",
                highlight=False,
            )
    if mail["no_address"]:
        console.print(
            f"[yellow]No e-mail address, not mailed: {', '.join(mail['no_address'])} "
            "(tell them yourself: their .md notices)[/]",
            highlight=False,
        )
