"""The one error hierarchy of iam-centralize; the CLI maps it to messages and exit codes."""

from __future__ import annotations


class IamcError(Exception):
    """Base of every error the tool raises on purpose.

    The CLI prints ``str(err)`` (no traceback) and exits with ``exit_code``.
    """

    exit_code = 1


class SpecError(IamcError):
    """The migration spec (TOML) is unreadable or invalid.

    One problem is one line, ``spec.toml:2: invalid migration spec: regoin: unknown key``;
    several are a line each under ``spec.toml: invalid migration spec``.

    Args:
        path: The spec file.
        problems: One ``(key, message)`` pair per invalid field; the key is dotted
            (``decommission.bake_days``) or empty for a file-level problem.
        lines: The line of the file each key is on, where it was found.
    """

    exit_code = 2

    def __init__(
        self, path: str, problems: list[tuple[str, str]], lines: dict[str, int] | None = None
    ):
        self.path = path
        self.problems = problems
        self.lines = lines or {}
        if len(problems) == 1:
            key, message = problems[0]
            line = self.lines.get(key)
            where = f"{path}:{line}" if line else path
            text = f"{where}: invalid migration spec: " + (f"{key}: {message}" if key else message)
            super().__init__(text)
            return
        text = [f"{path}: invalid migration spec"]
        for key, message in problems:
            line = self.lines.get(key)
            where = f"{key} (line {line})" if line else key
            text.append(f"  {where}: {message}" if key else f"  {message}")
        super().__init__("\n".join(text))


class InputFileError(IamcError):
    """A user-supplied file (CSV, overrides) is malformed; names the file, line and field."""

    exit_code = 2

    def __init__(self, path: str, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = path, line, field
        where = path if line is None else f"{path}:{line}"
        if field:
            where += f" (field {field!r})"
        super().__init__(f"{where}: {message}")


class StateError(IamcError):
    """The state store can't be opened, upgraded or read."""

    exit_code = 3


class AwsAccessError(IamcError):
    """AWS refused us or can't be reached: expired credentials, a role we can't assume, etc."""

    exit_code = 4

    def __init__(self, message: str, account_id: str | None = None, operation: str | None = None):
        self.account_id, self.operation = account_id, operation
        prefix = []
        if account_id:
            prefix.append(f"account {account_id}")
        if operation:
            prefix.append(operation)
        super().__init__(f"{' '.join(prefix)}: {message}" if prefix else message)


class AwsUnreachableError(AwsAccessError):
    """An AWS endpoint could not be reached (refused, timed out, closed): not a refusal by AWS."""


class InventoryIncompleteError(IamcError):
    """In-scope accounts could not be inventoried; the snapshot holds only those that answered.

    Args:
        snapshot_id: The snapshot that was stored (partial).
        run_id: The inventory run, recorded as failed.
        accounts: How many in-scope accounts were tried.
        failures: One ``(account_id, account_name, reason, message, what_to_do)`` per account.
    """

    exit_code = 4

    def __init__(
        self,
        snapshot_id: int,
        run_id: int,
        accounts: int,
        failures: list[tuple[str, str, str, str, str]],
    ):
        self.snapshot_id, self.run_id, self.accounts = snapshot_id, run_id, accounts
        self.failures = failures
        lines = [
            f"inventory incomplete: {len(failures)} of {accounts} in-scope account(s) could not "
            f"be read; snapshot {snapshot_id} (run {run_id}, recorded as failed) holds only the "
            f"{accounts - len(failures)} that answered, and a plan made from it is blocked "
            "until every in-scope account is inventoried or excluded"
        ]
        for account_id, name, reason, message, what_to_do in failures:
            label = f"{account_id} ({name})" if name else account_id
            lines.append(f"  {label}: {reason}: {message}")
            lines.append(f"    what to do: {what_to_do}")
        super().__init__("\n".join(lines))


class UnknownAccountError(IamcError):
    """The spec or a command names an account that is not in the organization."""

    exit_code = 2


class WaveError(IamcError):
    """A wave is unknown, or its accounts can't be resolved (unknown, out of scope, in two)."""

    exit_code = 2


class SandboxError(IamcError):
    """The local sandbox AWS could not be started or seeded."""

    exit_code = 5


class ApplyRefused(IamcError):
    """Nothing was changed: the plan is not approved, stale, in conflict, or not runnable."""

    exit_code = 2


class ApplyFailed(IamcError):
    """The run ended with failed actions; what is done stays done, a resume continues."""

    exit_code = 1


class BatchFailed(IamcError):
    """Accounts of a batch run on the pool failed; each one's reason is recorded for its parent
    (``engine.batches``), whose run says what to do."""

    exit_code = 1


class NoMappingError(IamcError):
    """No mapping run has succeeded yet for the migration."""

    exit_code = 2


class PlanError(IamcError):
    """The plan can't be computed, found, or approved as asked."""

    exit_code = 2


class PlanMismatchError(PlanError):
    """A plan file is not the stored plan: its content (or hash) differs from what was stored."""

    exit_code = 1


class NoInventoryError(IamcError):
    """No complete inventory snapshot exists yet for the migration."""

    exit_code = 2


class ServeError(IamcError):
    """The Prefect server or the served deployments could not be started."""

    exit_code = 5


class ActionError(IamcError):
    """One action failed in a way AWS explained; its account's remaining work stops."""

    def __init__(self, action_id: str, message: str):
        self.action_id = action_id
        super().__init__(f"{action_id}: {message}")


class ConflictError(ActionError):
    """What the action would create exists already but differs: the whole run stops."""

    exit_code = 2


class BlockedError(ActionError):
    """An action whose prerequisite is not done: left pending."""


class NoKeyScanError(IamcError):
    """No key scan has succeeded yet for the migration."""

    exit_code = 2


class ScanIncomplete(IamcError):
    """The key scan ran, but an account or a repository's git history could not be read.

    What was read is stored. Exits 4, as an incomplete inventory does.
    """

    exit_code = 4


class NoWorkloadsRun(IamcError):
    """No workloads run has succeeded yet for the migration."""

    exit_code = 2


class WorkloadsIncomplete(IamcError):
    """The workloads step ran, but an account could not be read (its role, its calls).

    What was read is stored; the unread account keeps its last placements. Exits 4, as an
    incomplete inventory does.
    """

    exit_code = 4


class AccessNotVerified(IamcError):
    """After provisioning, someone's access did not land as planned, or is less than before."""

    exit_code = 1


class NothingToExport(IamcError):
    """The migration has applied nothing yet: there is nothing for Terraform to take over."""

    exit_code = 2


class NothingToCompare(IamcError):
    """The migration has applied nothing yet: nothing it made can have drifted."""

    exit_code = 2


class NotForThisTarget(IamcError):
    """The command reads Identity Center only, and the spec's target is ``central-roles``."""

    exit_code = 2


class DriftIncomplete(IamcError):
    """The drift read ran, but an account (or the permission sets) could not be read.

    Exits 4, as an incomplete inventory does: what was not read may have drifted too.
    """

    exit_code = 4


class UsageIncomplete(IamcError):
    """The usage step ran, but an account or some users could not be read.

    What was read is stored; least privilege leaves the unread users' access as it is. Exits
    4, as an incomplete inventory does.
    """

    exit_code = 4


class MailError(IamcError):
    """Nothing was mailed: no ``[notify.smtp]``, a credential's environment variable is not
    set, or the SMTP server can't be reached or refused the login."""

    exit_code = 2


class MailFailed(IamcError):
    """Some notices were not mailed: the server refused a recipient, or a delivery's outcome is
    unknown; the others were sent and journaled, a re-run sends only what is left."""

    exit_code = 1
