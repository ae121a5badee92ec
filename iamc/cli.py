"""The `iamc` command line: parses arguments and calls flows; no AWS calls or SQL here."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from domain.errors import IamcError

app = typer.Typer(
    help="Move the IAM users of an AWS Organization to IAM Identity Center (CIS AWS 1.21).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sandbox_app = typer.Typer(help="A strict local AWS organization (moto) to rehearse on.")
app.add_typer(sandbox_app, name="sandbox")
report_app = typer.Typer(help="Reports from the state store.", no_args_is_help=True)
app.add_typer(report_app, name="report")
server_app = typer.Typer(
    help="The local Prefect server the step commands report to (started by the first).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")

# Reports are wide tables: when output goes to a file or pipe, don't squeeze them to 80 columns.
_WIDTH = None if sys.stdout.isatty() else 200
console = Console(width=_WIDTH)
# An error is one logical line per problem: never hard-wrapped, so it can be grepped and pasted.
err_console = Console(stderr=True, width=_WIDTH, soft_wrap=True)

# Run logs at INFO go to Prefect's API (the UI's Logs tab tells the run's story); on the
# console our own progress display replaces them (console handler CRITICAL, see _root).
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="AWS profile of the management account (default: boto3 chain)."),
]


def _valid_spec(spec: Path | None) -> Path | None:
    """Load the spec as its option is parsed, before the command starts anything.

    A typo is then one error line (SpecError, exit 2) within the CLI's own start-up, not
    after a Prefect server started, Prefect and boto3 were imported and a progress display
    was drawn. The command still passes the path on (flows take a path, deployments too).
    """
    if spec is not None:
        from domain.spec import load_spec

        load_spec(spec)
    return spec


SpecOption = Annotated[
    Path,
    typer.Option(
        "--spec",
        "-c",
        help="The migration spec (TOML).",
        show_default=False,
        callback=_valid_spec,
    ),
]
# Of a command group that also has subcommands (plan, scan, bake): required only when it runs.
GroupSpecOption = Annotated[
    Path | None,
    typer.Option("--spec", "-c", help="The migration spec (TOML).", callback=_valid_spec),
]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    # Our own packages log to stderr; Prefect's run loggers go to its API (and UI), and to
    # the console only with --verbose, so an expected error reads as one line, not a traceback.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("iamc", "flows", "tasks", "state", "sandbox"):
        package_logger = logging.getLogger(name)
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO if verbose else logging.WARNING)
        package_logger.propagate = False
    if os.environ.get("IAMC_TIMINGS", "").lower() in ("1", "on", "true"):
        logging.getLogger("flows.timing").setLevel(logging.DEBUG)
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    else:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


@app.command("check")
def check(spec: SpecOption) -> None:
    """Validate a migration spec and print it as understood."""
    from domain.spec import load_spec

    loaded = load_spec(spec)
    console.print(f"[green]{spec}: valid[/green]")
    console.print_json(data=loaded.model_dump(mode="json"))


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command("inventory")
def inventory(spec: SpecOption, profile: ProfileOption = None) -> None:
    """Inventory the IAM users of every in-scope member account into a new snapshot."""
    from iamc import views

    _report_to_prefect()
    views.inventory_with_progress(console, spec, profile)
    console.print(f"next: iamc report inventory -c {spec}", style="dim")


def _report_to_prefect() -> None:
    """Flows of this command report to the local Prefect server (started once, then reused),
    recorded as they start and end with nothing that only costs time (console.prefect_runtime)."""
    from console.prefect_runtime import imports_without_gc
    from iamc.prefect_server import use_local_server

    use_local_server(err_console)
    with imports_without_gc():
        from console.prefect_runtime import prepare_flow_runs

        prepare_flow_runs()


@report_app.command("inventory")
def report_inventory(
    spec: SpecOption,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """Per account: users by class, key activity, console users without MFA, CIS 1.21 verdict."""
    from iamc import views

    views.print_inventory_report(console, spec, output_format.value)


plan_app = typer.Typer(
    help="Compute the dry-run plan (default), or show a stored one.", invoke_without_command=True
)
app.add_typer(plan_app, name="plan")


@plan_app.callback()
def plan(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write plan.md, plan.json, assignments.csv.")
    ] = None,
    wave: Annotated[
        str | None, typer.Option("--wave", help="The wave to plan (specs with [[waves]]).")
    ] = None,
) -> None:
    """Compute the plan from the latest inventory and mapping; exit 2 if it has blocking errors."""
    if ctx.invoked_subcommand is not None:
        return
    if spec is None:
        raise typer.BadParameter("missing option --spec / -c", param_hint="--spec")
    from iamc import views

    _report_to_prefect()
    result = views.plan_with_summary(console, spec, out, wave)
    if result["blocking"]:
        raise typer.Exit(2)


@plan_app.command("show")
def plan_show(
    plan_id: Annotated[int, typer.Argument(help="The plan's id (iamc plan prints it).")],
    spec: SpecOption,
    output_format: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = (
        "markdown"
    ),
) -> None:
    """Print a stored plan with its approval status."""
    from iamc import views

    views.show_plan(console, spec, plan_id, output_format)


@plan_app.command("verify")
def plan_verify(
    path: Annotated[Path, typer.Argument(help="A plan.json written by 'iamc plan'.")],
    spec: SpecOption,
) -> None:
    """Check that a plan.json is the stored plan, content and hash; show its approvals.

    Exits 1 and names what differs when the file was edited (or the stored plan changed).
    """
    from iamc import views

    views.verify_plan_file(console, spec, path)


@app.command("approve")
def approve(
    plan_id: Annotated[int, typer.Argument(help="The plan's id.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who approves (name or e-mail).")],
    ticket: Annotated[str, typer.Option("--ticket", help="The change ticket.")],
    plan_hash: Annotated[
        str,
        typer.Option(
            "--hash", help="The plan hash the reviewer read in plan.md (at least 12 characters)."
        ),
    ],
    stage: Annotated[
        str,
        typer.Option(
            help="Required, no default: provision, disable, all (provision and disable) or "
            "delete (irreversible: approved only on its own, with --deletes)."
        ),
    ],
    deletes: Annotated[
        int | None,
        typer.Option(
            "--deletes",
            min=0,
            help="Approving --stage delete: how many IAM users it deletes (plan.md says); a "
            "wrong number is refused.",
        ),
    ] = None,
    comment: str = "",
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead.")] = False,
) -> None:
    """Record who approved which plan hash, for which stage, and when.

    Every decision names its stage. Delete is approved on its own, quoting the number of IAM
    users it deletes; an approval of "all" (provision and disable) never covers it.
    """
    from engine.approvals import record_decision
    from engine.migration import Migration

    with Migration.open(spec) as mig:
        meta = record_decision(
            mig,
            plan_id,
            approver=by,
            ticket=ticket,
            decision="rejected" if reject else "approved",
            stage=stage,
            expected_hash=plan_hash,
            comment=comment,
            deletes=deletes,
        )
    latest = meta["approvals"][-1]
    quoted = f" ({deletes} IAM users to delete)" if stage == "delete" and not reject else ""
    console.print(
        f"plan {plan_id} ({meta['hash'][:12]}): stage {latest['stage']}{quoted} "
        f"{latest['decision']} by {latest['approver']}, ticket {latest['ticket']}, at "
        f"{latest['at']}",
        highlight=False,
    )


@app.command("apply")
def apply(
    plan_id: Annotated[int, typer.Argument(help="The approved plan's id.")],
    spec: SpecOption,
    stage: Annotated[str, typer.Option(help="provision, disable or delete.")] = "provision",
) -> None:
    """Apply one stage of an approved plan, journaled: a resume continues where it stopped.

    disable: credentials Inactive and the quarantine policy on (reversible); delete: after
    the bake period, with a snapshot first (irreversible; see iamc restore).
    """
    from iamc import views

    _report_to_prefect()
    views.apply_with_progress(console, spec, plan_id, stage)


scan_app = typer.Typer(
    help="Find every place an access key is written down (default), or accept a finding.",
    invoke_without_command=True,
)
app.add_typer(scan_app, name="scan")


@scan_app.callback()
def scan(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    profile: ProfileOption = None,
) -> None:
    """Scan the spec's code paths and every in-scope account's configuration for access keys.

    Exit 4 when an account could not be scanned, or git refused a path's repository (the
    rest is stored), as an incomplete inventory does; a skipped path, file or blob, or a gap,
    is reported, not fatal.
    """
    if ctx.invoked_subcommand is not None:
        return
    if spec is None:
        raise typer.BadParameter("missing option --spec / -c", param_hint="--spec")
    from domain.errors import ScanIncomplete
    from iamc import views

    _report_to_prefect()
    summary = views.scan_with_progress(console, spec, profile)
    failed = [f"account(s) {', '.join(summary['accounts_failed'])} could not be scanned"]
    failed = failed if summary["accounts_failed"] else []
    failed += [
        f"path {path} could not be scanned completely: {reason}"
        for path, reason in summary.get("paths_failed", {}).items()
    ]
    if failed:
        raise ScanIncomplete(
            f"key scan run {summary['run_id']} is incomplete: " + "; ".join(failed)
        )
    console.print(f"next: iamc report keys -c {spec}; iamc plan -c {spec}", style="dim")


@scan_app.command("accept")
def scan_accept(
    target: Annotated[str, typer.Argument(help="ACCOUNT/USER whose hard-coded keys to accept.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who accepts (name or e-mail).")],
    reason: Annotated[str, typer.Option("--reason", help="Why disabling it is safe anyway.")],
) -> None:
    """Record that a user's hard-coded keys (as found now) need not hold its disable/delete."""
    from engine.key_acceptance import accept_hard_coded_keys
    from engine.migration import Migration

    account_id, sep, user = target.partition("/")
    if not sep or not account_id or not user:
        raise typer.BadParameter("expected ACCOUNT/USER, e.g. 111111111111/deployer")
    with Migration.open(spec) as mig:
        acceptance = accept_hard_coded_keys(mig, account_id, user, approver=by, reason=reason)
    console.print(
        f"accepted {len(acceptance.key_ids)} hard-coded key(s) of {account_id}/{user} by "
        f"{acceptance.approver} at {acceptance.at:%Y-%m-%d %H:%M}: the next 'iamc plan' shows "
        "them as an accepted risk",
        highlight=False,
    )


class KeyReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    sarif = "sarif"


@report_app.command("keys")
def report_keys(
    spec: SpecOption,
    output_format: Annotated[
        KeyReportFormat, typer.Option("--format", "-f", help="table, json, csv or sarif.")
    ] = KeyReportFormat.table,
) -> None:
    """Every access key written down, its owner and status (key ids masked); SARIF for code."""
    from iamc import views

    views.print_key_report(console, spec, output_format.value)


@app.command("runs")
def runs(spec: SpecOption) -> None:
    """List the migration's runs (inventory, plan, apply, rollback) with their status."""
    from iamc import views

    views.print_runs(console, spec)


@app.command("status")
def status(
    run_id: Annotated[int, typer.Argument(help="An apply or rollback run's id.")],
    spec: SpecOption,
) -> None:
    """Per stage and account: done, pending and failed actions of a run, with the errors."""
    from iamc import views

    views.print_status(console, spec, run_id)


@app.command("resume")
def resume(
    run_id: Annotated[int, typer.Argument(help="The apply or rollback run to continue.")],
    spec: SpecOption,
) -> None:
    """Continue a failed or interrupted apply or rollback run; done steps are skipped."""
    from iamc import views

    _report_to_prefect()
    views.resume_with_progress(console, spec, run_id)


@app.command("rollback")
def rollback(
    run_id: Annotated[int, typer.Argument(help="The apply run to undo.")],
    spec: SpecOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be undone.")
    ] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="ACCOUNT/NAME: bring back only this IAM user (disable runs)."),
    ] = None,
) -> None:
    """Undo what an apply run did; --user brings back one IAM user of a disable run.

    Assignments before permission sets; credentials back to their prior status, then the
    quarantine lifted. Adopted things stay. A delete run can't be undone: see restore.
    """
    from iamc import views

    _report_to_prefect()
    views.rollback_with_listing(console, spec, run_id, dry_run, user)


bake_app = typer.Typer(
    help="The bake period: look for use of disabled users (default), or record a decision.",
    invoke_without_command=True,
)
app.add_typer(bake_app, name="bake")


@bake_app.callback()
def bake(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    no_lookup: Annotated[
        bool, typer.Option("--no-lookup", help="Only report what is recorded; read no AWS.")
    ] = False,
) -> None:
    """Look for attempted use of every disabled user (CloudTrail, key last use); show who is
    baking, ready, in use (who/when/where), kept or re-enabled. Exit 3 if any is in use."""
    if ctx.invoked_subcommand is not None:
        return
    if spec is None:
        raise typer.BadParameter("missing option --spec / -c", param_hint="--spec")
    from iamc.retire_views import bake_with_table

    if not no_lookup:
        _report_to_prefect()
    report = bake_with_table(console, spec, collect=not no_lookup)
    if report["counts"].get("in-use"):
        raise typer.Exit(3)


@bake_app.command("decide")
def bake_decide(
    user: Annotated[str, typer.Argument(help="ACCOUNT/NAME of a disabled user.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who decides (name or e-mail).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")],
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the user (never delete it in this plan).")
    ] = False,
) -> None:
    """Record a decision about a user with evidence of use: delete it anyway, or --keep it."""
    from domain.retire import Decision
    from engine.bake_evidence import decide
    from iamc.retire_views import print_decision

    print_decision(
        console,
        decide(
            spec, user, by=by, reason=reason, decision=Decision.KEEP if keep else Decision.DELETE
        ),
    )


@app.command("restore")
def restore(
    spec: SpecOption,
    user: Annotated[
        str | None, typer.Argument(help="ACCOUNT/NAME of a deleted user.", show_default=False)
    ] = None,
    run_id: Annotated[
        int | None, typer.Option("--run", help="Every user this delete run deleted.")
    ] = None,
) -> None:
    """Re-create deleted users from their snapshots as far as AWS allows; list the rest.

    What can't come back is printed: access key secrets, the password, MFA devices,
    resource-policy grants. Access keys are never created.
    """
    from iamc.retire_views import restore_with_listing

    _report_to_prefect()
    restore_with_listing(console, spec, user, run_id)


@app.command("map")
def map_identities(spec: SpecOption, profile: ProfileOption = None) -> None:
    """Map the latest inventory's human IAM users and groups to Identity Center identities."""
    from iamc import views

    _report_to_prefect()
    views.mapping_with_status(console, spec, profile)
    console.print(f"next: iamc report mapping -c {spec} --unmatched", style="dim")


@report_app.command("waves")
def report_waves(
    spec: SpecOption,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """Per wave: accounts, users migrated, disabled, deleted, CIS 1.21 verdicts, what is pending."""
    from iamc import views

    views.print_waves_report(console, spec, output_format.value)


@report_app.command("mapping")
def report_mapping(
    spec: SpecOption,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only unmatched and ambiguous users and groups.")
    ] = False,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """Per IAM user: the identity it maps to and the rule, or why not (csv: for the IdP team)."""
    from iamc import views

    views.mapping_report(console, spec, unmatched, output_format.value)


@app.command("serve")
def serve(spec: SpecOption) -> None:
    """Serve the runbook's flows as Prefect deployments (start, watch and Retry them in the UI).

    Talks to the Prefect API named by PREFECT_API_URL; runs the flow runs in this process.
    """
    from iamc.serve import serve_deployments

    serve_deployments(spec)


@app.command("ui")
def ui_command(
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            "-c",
            help="The migration spec; default: a sandbox demo spec.",
            callback=_valid_spec,
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server and UI.")] = 4200,
    with_sandbox: Annotated[
        bool, typer.Option("--sandbox/--no-sandbox", help="Also run a seeded sandbox AWS.")
    ] = True,
    workdir: Path = Path(".iamc/ui"),
) -> None:
    """Start a local Prefect server and UI, and serve the runbook's deployments to it."""
    from iamc.prefect_ui import run_ui

    run_ui(console, spec=spec, port=port, with_sandbox=with_sandbox, workdir=workdir)


class PolicyKind(StrEnum):
    member = "member"
    restore = "restore"
    management = "management"


@app.command("policy")
def policy(
    which: Annotated[
        PolicyKind,
        typer.Argument(
            help="member (the role every command but restore assumes in member accounts), "
            "restore (the role iamc restore assumes) or management."
        ),
    ] = PolicyKind.member,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", "-c", help="The migration spec: its role names and protected tag."),
    ] = None,
) -> None:
    """Print the least-privilege IAM policy iamc needs, generated from the code's declarations."""
    import json

    from tasks.permissions import DEFAULT_MEMBER_ROLE, least_privilege_policies

    if spec is None:
        policies = least_privilege_policies()
        # The policy goes to stdout for piping; what it assumed, to stderr.
        err_console.print(
            f"no spec given: member and restore role {DEFAULT_MEMBER_ROLE}, protected tag "
            "iamc:protected; pass -c SPEC for yours",
            style="dim",
            highlight=False,
        )
    else:
        from domain.spec import load_spec

        loaded = load_spec(spec)
        policies = least_privilege_policies(
            loaded.member_role, loaded.restore_role, loaded.protected_tag
        )
    sys.stdout.write(json.dumps(policies[which.value], indent=2) + "\n")


@sandbox_app.command("up")
def sandbox_up(
    accounts: Annotated[int, typer.Option(min=0, max=500, help="Member accounts.")] = 6,
    users_per_account: Annotated[int, typer.Option(min=0, max=5000)] = 12,
    seed: Annotated[int, typer.Option(help="Same seed, same organization.")] = 7,
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 5123,
    empty: Annotated[bool, typer.Option(help="Seed only the org and Identity Center.")] = False,
    samples_dir: Annotated[
        Path | None, typer.Option(help="Where to write sample code with a hard-coded key.")
    ] = Path(".iamc/sandbox-samples"),
) -> None:
    """Run a seeded local AWS organization on 127.0.0.1 until interrupted (Ctrl-C)."""
    from sandbox.run import up

    up(
        accounts=accounts,
        users_per_account=users_per_account,
        seed=seed,
        port=port,
        empty=empty,
        samples_dir=samples_dir,
        console=console,
    )


@app.command("demo")
def demo(
    accounts: Annotated[int, typer.Option(min=1, max=500)] = 6,
    users_per_account: Annotated[int, typer.Option(min=0, max=5000)] = 12,
    seed: int = 7,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its spec and state.")] = Path(
        ".iamc/demo"
    ),
) -> None:
    """Seed a sandbox organization and run the migration steps against it, end to end."""
    from iamc.demo import run_demo

    run_demo(
        accounts=accounts,
        users_per_account=users_per_account,
        seed=seed,
        workdir=workdir,
        console=console,
    )


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server now (the first step command otherwise does)."""
    from iamc import prefect_server

    server = prefect_server.running() or prefect_server.start(err_console)
    console.print(f"Prefect server: {server.ui_url} (API {server.api_url}, pid {server.pid})")


@server_app.command("status")
def server_status() -> None:
    """Whether the local Prefect server runs, and where its UI is; exit 1 if it does not."""
    from iamc import prefect_server

    server = prefect_server.running()
    if server is None:
        console.print("no local Prefect server runs; the next step command starts one")
        raise typer.Exit(1)
    console.print(f"Prefect server: {server.ui_url} (API {server.api_url}, pid {server.pid})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (runs stay in its database for the next start)."""
    from iamc import prefect_server

    stopped = prefect_server.stop()
    console.print(f"stopped the Prefect server (pid {stopped.pid})" if stopped else "none ran")


# The exit code main() settled on; None while running, or when an unexpected error propagates
# (then the interpreter exits as usual, printing the traceback).
_exit_code: int | None = None


def _exit_without_teardown() -> None:
    """The last exit handler: once everything that sends or flushes has run, end the process.

    By the time it runs (exit handlers run last-registered first, and it is registered first
    thing in main()), the interpreter has joined our threads and drained Prefect's log and event
    workers to the API (they drain at thread shutdown), and Prefect's own exit handlers have
    stopped its event loops. What remains is tearing down a few thousand modules and objects,
    0.5-2 s on a busy machine, which nobody needs: flush logging and stdio, then exit.
    """
    if _exit_code is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe has nothing to flush
            stream.flush()
    os._exit(_exit_code)


def _exit_code_of(exit_: SystemExit) -> int:
    if exit_.code is None:
        return 0
    # sys.exit("message"): Python prints the message before the exit handlers run.
    return exit_.code if isinstance(exit_.code, int) else 1


def main() -> None:
    """Console-script entry point: runs the app and maps our errors to messages and exit codes."""
    global _exit_code
    import atexit

    atexit.register(_exit_without_teardown)
    try:
        _run()
    except SystemExit as exit_:
        _exit_code = _exit_code_of(exit_)
        raise
    _exit_code = 0


def _run() -> None:
    # Prefect's temporary server (when no local or remote one is used) gets 20 s to start by
    # default; a busy machine misses that and the command fails before doing anything.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    try:
        app()
    except IamcError as err:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as err:
        # Credentials that expire or go missing mid-run can surface from any AWS call: say
        # so in one line, as for the calls that translate them at the boundary.
        from tasks.aws import AwsAccessError, translate_errors

        try:
            with translate_errors():
                raise err
        except AwsAccessError as access:
            err_console.print(f"[bold red]error:[/bold red] {escape(str(access))}")
            sys.exit(access.exit_code)
        except Exception:
            raise err from None


if __name__ == "__main__":
    main()
