"""The `iamc` command line: the root app, which imports a command's module only when it runs.

The commands live in ``iamc.commands``, one module per runbook step; what ``--help`` lists is
declared here (``COMMANDS``), so listing them imports none. Errors map to exit codes here.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, ClassVar

import typer
from rich.markup import escape

from domain.errors import IamcError
from iamc.consoles import err_console
from iamc.lazy_commands import Lazy, LazyGroup

# Run logs at INFO go to Prefect's API (the UI's Logs tab tells the run's story); on the
# console our own progress display replaces them (console handler CRITICAL, see _root).
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

_STEPS = "iamc.commands."
# In the order `iamc --help` lists them; each help is the first paragraph of the command's own.
COMMANDS = {
    "check": Lazy(_STEPS + "spec", "Validate a migration spec and print it as understood."),
    "inventory": Lazy(
        _STEPS + "inventory",
        "Inventory the IAM users of every in-scope member account into a new snapshot.",
    ),
    "approve": Lazy(
        _STEPS + "plan", "Record who approved which plan hash, for which stage, and when."
    ),
    "apply": Lazy(
        _STEPS + "apply",
        "Apply one stage of an approved plan, journaled: a resume continues where it stopped.",
    ),
    "runs": Lazy(
        _STEPS + "apply",
        "List the migration's runs (inventory, plan, apply, rollback) with their status.",
    ),
    "status": Lazy(
        _STEPS + "apply",
        "Per stage and account: done, pending and failed actions of a run, with the errors.",
    ),
    "resume": Lazy(
        _STEPS + "apply",
        "Continue a failed or interrupted apply or rollback run; done steps are skipped.",
    ),
    "rollback": Lazy(
        _STEPS + "apply",
        "Undo what an apply run did; --user brings back one IAM user of a disable run.",
    ),
    "restore": Lazy(
        _STEPS + "retire",
        "Re-create deleted users from their snapshots as far as AWS allows; list the rest.",
    ),
    "map": Lazy(
        _STEPS + "mapping",
        "Map the latest inventory's human IAM users and groups to Identity Center identities.",
    ),
    "serve": Lazy(
        _STEPS + "server",
        "Serve the runbook's flows as Prefect deployments (start, watch and Retry them in the UI).",
    ),
    "deploy": Lazy(
        _STEPS + "server",
        "Register the runbook's deployments on a Prefect work pool, run by its workers.",
    ),
    "ui": Lazy(
        _STEPS + "rehearse",
        "Start a local Prefect server and UI, and serve the runbook's deployments to it.",
    ),
    "policy": Lazy(
        _STEPS + "spec",
        "Print the least-privilege IAM policy iamc needs, generated from the code's declarations.",
    ),
    "demo": Lazy(
        _STEPS + "rehearse",
        "Seed a sandbox organization and run the migration steps against it, end to end.",
        spec_first=False,
    ),
    "sandbox": Lazy(
        _STEPS + "rehearse",
        "A strict local AWS organization (moto) to rehearse on.",
        spec_first=False,
    ),
    "report": Lazy(_STEPS + "report", "Reports from the state store."),
    "server": Lazy(
        _STEPS + "server",
        "The local Prefect server the step commands report to (started by the first).",
        spec_first=False,
    ),
    "plan": Lazy(_STEPS + "plan", "Compute the dry-run plan (default), or show a stored one."),
    "scan": Lazy(
        _STEPS + "scan",
        "Find every place an access key is written down (default), or accept a finding.",
    ),
    "workloads": Lazy(
        _STEPS + "workloads",
        "Find where each workload user's keys are used from, and the runtime that holds them.",
    ),
    "drift": Lazy(
        _STEPS + "drift",
        "Compare what the migration created or adopted with AWS; plan what puts it back.",
    ),
    "verify": Lazy(
        _STEPS + "verify",
        "Check that each migrated person's new access landed, and that nobody lost what they used.",
    ),
    "notify": Lazy(
        _STEPS + "notify",
        "Write each person's notice: what changes, when, how they sign in now; mail with --send.",
    ),
    "usage": Lazy(
        _STEPS + "usage",
        "Read what each IAM user used in the least-privilege window (services, actions).",
    ),
    "export": Lazy(
        _STEPS + "export",
        "Write what the migration created or adopted as another tool's configuration.",
    ),
    "db": Lazy(
        _STEPS + "db",
        "The state DB's schema: upgrade it once before workers start, or show its revision.",
    ),
    "bake": Lazy(
        _STEPS + "retire",
        "The bake period: look for use of disabled users (default), or record a decision.",
    ),
}


def spec_before_import(args: list[str]) -> None:
    """Load the spec a command is given before its module is imported (Prefect aside, its
    views and the state store take ~0.5 s): a typo is one error line (SpecError, exit 2) within
    the CLI's own start-up. The command reuses that parse (domain.spec keeps it)."""
    if "--help" in args:
        return
    spec = _spec_argument(args)
    if spec is not None:
        # Deferred: the spec's model (pydantic) is not for `iamc --help` or `iamc server`.
        from domain.spec import load_spec

        load_spec(Path(spec))


def _spec_argument(args: list[str]) -> str | None:
    """The value of ``--spec``/``-c`` among a command's arguments, as click would read it."""
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        if arg in ("--spec", "-c"):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--spec="):
            return arg.removeprefix("--spec=")
        if arg.startswith("-c") and not arg.startswith("--"):
            return arg.removeprefix("-c")
    return None


class _Commands(LazyGroup):
    lazy: ClassVar[dict[str, Lazy]] = COMMANDS
    check_before_import = staticmethod(spec_before_import)


app = typer.Typer(
    cls=_Commands,
    help="Move the IAM users of an AWS Organization to IAM Identity Center (CIS AWS 1.21).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
        # so in one line, as for the calls that translate them at the boundary. Deferred:
        # tasks.aws imports botocore (~0.3 s), which only an unexpected error needs here.
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
