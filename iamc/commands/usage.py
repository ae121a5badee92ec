"""The usage step's command: ``iamc usage``."""

from __future__ import annotations

import typer

from domain.errors import UsageIncomplete
from engine.migration import Migration
from iamc.commands.common import ProfileOption, SpecOption, report_to_prefect
from iamc.consoles import console
from iamc.views.usage import print_usage_summary, usage_with_progress

app = typer.Typer()


@app.command("usage")
def usage(spec: SpecOption, profile: ProfileOption = None) -> None:
    """Read what each IAM user used in the least-privilege window (services, actions).

    Reads IAM's service-last-accessed data and CloudTrail (nothing in AWS changes), stores the
    read for the plan and prints per account the users read and not read. Exit 4 when an
    account or a user could not be read (the rest is stored; least privilege leaves their
    access as it is).
    """
    report_to_prefect()
    with Migration.open(spec):
        summary = usage_with_progress(console, spec, profile)
    print_usage_summary(console, summary)
    if summary["unread"]:
        raise UsageIncomplete(
            f"usage run {summary['run_id']} is incomplete: {summary['unread']} account(s) or "
            "user(s) not read (listed above, with why); least privilege leaves their access "
            f"as it is. Fix the cause and run 'iamc usage -c {spec}' again"
        )
    console.print(f"next: iamc plan -c {spec}", style="dim")
