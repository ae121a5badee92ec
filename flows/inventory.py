"""Runbook step 1: inventory the IAM users of every member account into a new snapshot."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from console.artifacts import publish_inventory
from console.operator import ProgressEvents, operator_step, run_logger
from console.run_names import step_run_name
from domain.classification import ClassificationRules
from domain.errors import AwsAccessError, AwsUnreachableError, InventoryIncompleteError
from domain.progress import emit
from domain.records import Account, AccountInventory, Finding
from domain.spec import MigrationSpec
from engine.account_work import settle
from engine.batches import batch_label, dispatch, distributed
from engine.migration import Migration
from engine.prefect_runtime import old_objects_frozen
from state import Store, warm_up_models
from tasks.aws import (
    UNREACHABLE_ERRORS,
    AwsSessions,
    error_code,
    unreachable,
    warm_up_clients,
)
from tasks.iam_users import inventory_account
from tasks.organizations import ScopedAccounts, parent_of, read_organization, select_accounts

log = logging.getLogger(__name__)
# The run's progress artifact (and the CLI's bar): one unit an account, ended with its event.
INVENTORY_PROGRESS = ProgressEvents("scope", "accounts", "account-done", "accounts", "account_id")


class _Runtime:
    """What every account task shares. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, spec: MigrationSpec, sessions: AwsSessions, store: Store, snapshot_id: int):
        self.spec = spec
        self.sessions = sessions
        self.store = store
        self.snapshot_id = snapshot_id
        self.spec_path = ""
        self.rules = ClassificationRules(
            protected_globs=tuple(spec.protected_users),
            protected_tag=spec.protected_tag,
            inactive_days=spec.decommission.inactive_days,
            central_account=spec.central_account,
        )
        self.now = datetime.now(UTC)


@dataclass
class AccountOutcome:
    account_id: str
    users: int
    # Left out of the repr: Prefect logs a failed task's state, its result's repr in it, and
    # the state's message says the error already.
    error: str | None = field(repr=False)
    findings: list[Finding] = field(repr=False)
    account_name: str = ""
    reason: str | None = None  # the failure's kind: unreachable, access-denied, ...


# What an operator does about each kind of account failure.
WHAT_TO_DO = {
    "unreachable": "the AWS endpoint did not answer: check the network, proxy or "
    "AWS_ENDPOINT_URL, then run 'iamc inventory' again",
    "cannot-assume-role": "make sure the member role exists in the account and trusts the "
    "management account, or exclude the account in [scope] exclude_accounts; then run "
    "'iamc inventory' again",
    "access-denied": "AWS refused a read: compare the member role with 'iamc policy member' "
    "(or refresh expired credentials), then run 'iamc inventory' again",
    "inventory-failed": "AWS answered with an error the inventory could not handle: see "
    "'iamc report inventory' and run 'iamc inventory' again",
}


def _failure_kind(err: AwsAccessError) -> str:
    if isinstance(err, AwsUnreachableError):
        return "unreachable"
    return "cannot-assume-role" if "cannot assume role" in str(err) else "access-denied"


@task(name="resolve-scope", cache_policy=NO_CACHE, persist_result=False)
def resolve_scope(runtime: _Runtime) -> ScopedAccounts:
    spec = runtime.spec
    # The OUs the waves name are walked too: the inventory report places a wave's accounts by
    # their parent until a plan resolves the wave against the organization.
    wave_nodes = [s for w in spec.waves for s in [*w.include_accounts, *w.exclude_accounts]]
    tree = read_organization(runtime.sessions.management(), spec.scope, also_walk=wave_nodes)
    return select_accounts(tree, spec.scope)


@task(
    name="inventory-account",
    task_run_name="inventory {account.account_id} {account.name}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def inventory_one_account(runtime: _Runtime, account: Account) -> Any:
    """Read one account and save it; an account that fails becomes findings and a Failed task
    (red in the UI, with the reason; the flow gets its outcome from ``settle``), not a crash."""
    findings: list[Finding] = []
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        runtime.sessions.check_access(account.account_id)
        timings["assume_role"] = time.perf_counter() - started
        inventory = inventory_account(
            runtime.sessions.for_account(account.account_id),
            account,
            runtime.rules,
            runtime.now,
            timings=timings,
            user_concurrency=runtime.spec.inventory.user_concurrency,
        )
    except Exception as err:  # one account's failure: recorded against it, the others go on
        inventory, finding = _unread(account, err)
        findings.append(finding)
    if inventory.error and account.parent_id is None:
        inventory.account = _with_parent(runtime, account)
    for gap in inventory.gaps:
        findings.append(
            Finding(
                severity="warning",
                kind="inventory-gap",
                message=f"{gap}: not implemented by this endpoint; that part of the picture is "
                "missing for this account",
                account_id=account.account_id,
                details={"operation": gap},
            )
        )
    saving = time.perf_counter()
    runtime.store.snapshots.save_account_inventory(runtime.snapshot_id, inventory)
    timings["save"] = time.perf_counter() - saving
    timings["total"] = time.perf_counter() - started
    _account_done(account.account_id, len(inventory.users), bool(inventory.error), timings)
    _log_account(inventory, findings)
    reason = next((f.kind for f in findings if f.severity == "error"), None)
    outcome = AccountOutcome(
        account.account_id,
        len(inventory.users),
        inventory.error,
        findings,
        account_name=account.name,
        reason=reason if inventory.error else None,
    )
    if inventory.error:
        # Red in the UI, as the other steps' accounts are: the run goes on (``settle``).
        label = f"{account.account_id} {account.name}".strip()
        return Failed(message=f"{label}: not inventoried: {inventory.error}", data=outcome)
    return outcome


def _account_done(
    account_id: str, users: int, failed: bool, timings: dict[str, float] | None = None
) -> None:
    """One unit of the run's progress (INVENTORY_PROGRESS), wherever the account was read."""
    status = "failed" if failed else "done"
    emit("account-done", account_id=account_id, users=users, timings=timings, status=status)


def _batch_progress(results: dict[str, dict[str, Any]]) -> None:
    """A batch's accounts are done: the progress its own process reported, here."""
    for account_id, result in results.items():
        _account_done(account_id, result.get("users", 0), bool(result.get("error")))


def _unread(account: Account, err: Exception) -> tuple[AccountInventory, Finding]:
    """An account that could not be read: its empty inventory with the reason, and the error
    finding the run reports (an outage and a refused role kept apart from other failures)."""
    if isinstance(err, (AwsAccessError, *UNREACHABLE_ERRORS)):
        # A transport failure that escaped translate_errors is an outage all the same.
        failure = err if isinstance(err, AwsAccessError) else unreachable(err, account.account_id)
        kind = _failure_kind(failure)
        inventory = AccountInventory(account=account, error=str(failure))
        return inventory, Finding(
            severity="error",
            kind=kind,
            message=str(failure),
            account_id=account.account_id,
            details={"reason": kind},
        )
    # Inventory only reads: one account's failure (an AWS error, a malformed response) is
    # recorded against that account and the others go on; the run reports it.
    log.warning("inventory of %s failed", account.account_id, exc_info=True)
    code = error_code(err) if isinstance(err, ClientError) else type(err).__name__
    message = f"inventory failed: {code}: {err}"
    return AccountInventory(account=account, error=message), Finding(
        severity="error",
        kind="inventory-failed",
        message=message,
        account_id=account.account_id,
        details={"code": code, "reason": "inventory-failed"},
    )


def _with_parent(runtime: _Runtime, account: Account) -> Account:
    """The account with its parent OU, read for an account that failed.

    A plan excludes a failed account by its parent OU too (domain.plan), and the scope read
    parents only where it named OUs; one ListParents call per failed account keeps that.
    """
    try:
        parent = parent_of(runtime.sessions.management(), account.account_id)
    except (AwsAccessError, ClientError, *UNREACHABLE_ERRORS):
        log.info("parent of %s not read: left unknown", account.account_id, exc_info=True)
        return account
    return replace(account, parent_id=parent)


@flow(
    name="inventory",
    flow_run_name=step_run_name("inventory"),
    log_prints=False,
    persist_result=False,
)
@operator_step(
    "inventory",
    progress=INVENTORY_PROGRESS,
    publish=publish_inventory,
)
def inventory_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Inventory every in-scope member account into one new snapshot.

    Args:
        spec_path: The migration spec (TOML).
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, snapshot id, accounts, users, failed accounts.

    Raises:
        InventoryIncompleteError: An in-scope account could not be read. The snapshot of the
            accounts that answered is stored (a plan made from it is blocked), the run is
            recorded as failed, and the error names each account, its reason and the fix.
    """
    with old_objects_frozen(), Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.runs.start_run(migration_id, "inventory", {"spec": str(Path(spec_path))})
        try:
            summary, failures = _inventory(
                spec, store, migration_id, run_id, profile, mig.spec_path
            )
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        if failures:
            incomplete = InventoryIncompleteError(
                summary["snapshot_id"],
                run_id,
                summary["accounts"],
                [
                    (
                        o.account_id,
                        o.account_name,
                        o.reason or "inventory-failed",
                        o.error or "",
                        WHAT_TO_DO.get(o.reason or "", WHAT_TO_DO["inventory-failed"]),
                    )
                    for o in failures
                ],
            )
            store.runs.finish_run(run_id, "failed", summary=summary, error=str(incomplete))
            raise incomplete
        store.runs.finish_run(run_id, "succeeded", summary=summary)
        return summary


def _inventory(
    spec: MigrationSpec,
    store: Store,
    migration_id: int,
    run_id: int,
    profile: str | None,
    spec_path: str,
) -> tuple[dict[str, Any], list[AccountOutcome]]:
    sessions = AwsSessions.from_spec(spec, profile=profile)
    snapshot_id = store.snapshots.new_snapshot(migration_id, run_id)
    runtime = _Runtime(spec, sessions, store, snapshot_id)
    runtime.spec_path = str(Path(spec_path).resolve())
    emit("inventory-start")
    scoped = resolve_scope(runtime)
    store.snapshots.add_findings(run_id, scoped.findings)
    emit("scope", accounts=len(scoped.in_scope))
    # Both accounts, so the plan can tell a delegated administrator's run (domain.delegated_admin).
    # Asked before the accounts are read: asked after, an endpoint gone meanwhile failed the run
    # with this one call's error, and the accounts' own failures (each named, with its reason)
    # were never reported, the snapshot left neither complete nor failed (an operator check).
    store.snapshots.record_organization(
        snapshot_id, scoped.management_account_id, sessions.management_account_id()
    )
    if distributed():
        outcomes = _spread(runtime, run_id, scoped.in_scope)
    else:
        futures = [inventory_one_account.submit(runtime, account) for account in scoped.in_scope]
        outcomes = [settle(future) for future in futures]
    store.snapshots.add_findings(run_id, [f for outcome in outcomes for f in outcome.findings])
    store.snapshots.complete_snapshot(snapshot_id)
    failed = sorted((o for o in outcomes if o.error), key=lambda o: o.account_id)
    summary = {
        "run_id": run_id,
        "snapshot_id": snapshot_id,
        "accounts": len(outcomes),
        "accounts_failed": [o.account_id for o in failed],
        "failures": {o.account_id: {"reason": o.reason, "error": o.error} for o in failed},
        "users": sum(o.users for o in outcomes),
        "skipped_accounts": len(scoped.findings),
    }
    return summary, failed


def _spread(runtime: _Runtime, run_id: int, accounts: list[Account]) -> list[AccountOutcome]:
    """On a work pool: the accounts read by batch runs on the pool's workers (engine.batches).

    An account whose batch never reported (its worker died twice) is an account not read,
    with the reason: the snapshot is incomplete, as with any account that failed.
    """
    params = {
        "spec_path": runtime.spec_path,
        "snapshot_id": runtime.snapshot_id,
        "now": runtime.now.isoformat(),
        "accounts": {a.account_id: asdict(a) for a in accounts},
    }
    results, missing = dispatch(
        runtime.spec,
        runtime.store,
        work=f"inventory:{runtime.snapshot_id}",
        step="inventory",
        params=params,
        accounts=[a.account_id for a in accounts],
        label=lambda batch: batch_label("inventory", batch),
        here=lambda batch: inventory_batch(runtime.spec_path, params, batch, None),
        on_batch_done=_batch_progress,
    )
    outcomes = []
    for account in accounts:
        result = results.get(account.account_id)
        if result is None:
            _account_done(account.account_id, 0, failed=True)
            why = f"not read: {missing.get(account.account_id, 'its batch reported nothing')}"
            finding = Finding("error", "inventory-failed", why, account_id=account.account_id)
            outcomes.append(
                AccountOutcome(
                    account.account_id, 0, why, [finding], account.name, "inventory-failed"
                )
            )
            continue
        findings = [Finding(**f) for f in result.pop("findings")]
        outcomes.append(AccountOutcome(**result, findings=findings))
    return outcomes


def inventory_batch(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """One batch run's inventory (on a worker): its accounts read into the parent's snapshot."""
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        runtime = _Runtime(spec, AwsSessions.from_spec(spec), store, int(params["snapshot_id"]))
        runtime.now = datetime.fromisoformat(params["now"])
        futures = [
            inventory_one_account.submit(runtime, Account(**params["accounts"][a]))
            for a in accounts
        ]
        work = f"inventory:{runtime.snapshot_id}"
        results = {}
        for future in futures:
            outcome = settle(future)
            result = asdict(outcome)
            store.account_results.save(work, outcome.account_id, result, flow_run_id)
            results[outcome.account_id] = result
        return results


def _log_account(inventory: AccountInventory, findings: list[Finding]) -> None:
    """One or two lines per account in the run's logs: what was found, or why not."""
    logger = run_logger()
    account = inventory.account
    label = f"{account.account_id} {account.name}".strip()
    if inventory.error:
        logger.warning("%s: not inventoried: %s", label, inventory.error)
        return
    classes = Counter(str(u.user_class) for u in inventory.users)
    logger.info(
        "%s: %d IAM users (%s)",
        label,
        len(inventory.users),
        ", ".join(f"{n} {c}" for c, n in sorted(classes.items())) or "none",
    )
    for finding in findings:
        logger.warning("%s: %s", label, finding.message)


def run_inventory(spec_path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """Run the inventory flow with the spec's concurrency (accounts at once)."""
    # Opened here, handed on to the flow run (engine.migration): one load per command.
    with Migration.open(spec_path) as mig:
        spec = mig.spec
        # While Prefect creates the run and the organization is walked, mostly waiting.
        warm_up_clients(("sts", "iam", "organizations"), spec.region)
        warm_up_models()
        runner = ThreadPoolTaskRunner(max_workers=spec.inventory.concurrency)
        return inventory_flow.with_options(task_runner=runner)(str(spec_path), profile)
