"""Runbook step 1: inventory the IAM users of every member account into a new snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from domain.errors import AwsAccessError
from domain.progress import emit
from domain.records import Account, AccountInventory, Finding
from domain.spec import MigrationSpec, load_spec
from state import Store
from tasks.aws import AwsSessions, error_code
from tasks.iam_users import ClassificationRules, inventory_account
from tasks.organizations import ScopedAccounts, select_accounts, walk_organization

log = logging.getLogger(__name__)


class _Runtime:
    """What every account task shares. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, spec: MigrationSpec, sessions: AwsSessions, store: Store, snapshot_id: int):
        self.spec = spec
        self.sessions = sessions
        self.store = store
        self.snapshot_id = snapshot_id
        self.rules = ClassificationRules(
            protected_globs=tuple(spec.protected_users),
            protected_tag=spec.protected_tag,
            inactive_days=spec.decommission.inactive_days,
        )
        self.now = datetime.now(UTC)


@dataclass
class AccountOutcome:
    account_id: str
    users: int
    error: str | None
    findings: list[Finding]


@task(name="resolve-scope", cache_policy=NO_CACHE, persist_result=False)
def resolve_scope(runtime: _Runtime) -> ScopedAccounts:
    tree = walk_organization(runtime.sessions.management())
    return select_accounts(tree, runtime.spec.scope)


@task(name="inventory-account", cache_policy=NO_CACHE, persist_result=False)
def inventory_one_account(runtime: _Runtime, account: Account) -> AccountOutcome:
    """Read one account and save it; an account that fails becomes findings, not a crash."""
    findings: list[Finding] = []
    try:
        runtime.sessions.check_access(account.account_id)
        inventory = inventory_account(
            runtime.sessions.for_account(account.account_id), account, runtime.rules, runtime.now
        )
    except AwsAccessError as err:
        inventory = AccountInventory(account=account, error=str(err))
        kind = "cannot-assume-role" if "cannot assume role" in str(err) else "access-denied"
        findings.append(
            Finding(severity="error", kind=kind, message=str(err), account_id=account.account_id)
        )
    except Exception as err:
        # Inventory only reads: one account's failure (an AWS error, a malformed response)
        # is recorded against that account and the others go on; the run reports it.
        log.warning("inventory of %s failed", account.account_id, exc_info=True)
        code = error_code(err) if isinstance(err, ClientError) else type(err).__name__
        message = f"inventory failed: {code}: {err}"
        inventory = AccountInventory(account=account, error=message)
        findings.append(
            Finding(
                severity="error",
                kind="inventory-failed",
                message=message,
                account_id=account.account_id,
                details={"code": code},
            )
        )
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
    runtime.store.save_account_inventory(runtime.snapshot_id, inventory)
    emit("account-done", account_id=account.account_id, users=len(inventory.users))
    return AccountOutcome(account.account_id, len(inventory.users), inventory.error, findings)


@flow(name="inventory", log_prints=False)
def inventory_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Inventory every in-scope member account into one new snapshot.

    Args:
        spec_path: The migration spec (TOML).
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, snapshot id, accounts, users, failed accounts.
    """
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        migration_id = store.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.start_run(migration_id, "inventory", {"spec": str(Path(spec_path))})
        try:
            summary = _inventory(spec, store, migration_id, run_id, profile)
        except BaseException as err:
            store.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        store.finish_run(run_id, "succeeded", summary=summary)
        return summary


def _inventory(
    spec: MigrationSpec, store: Store, migration_id: int, run_id: int, profile: str | None
) -> dict[str, Any]:
    sessions = AwsSessions.from_spec(spec, profile=profile)
    snapshot_id = store.new_snapshot(migration_id, run_id)
    runtime = _Runtime(spec, sessions, store, snapshot_id)
    scoped = resolve_scope(runtime)
    store.add_findings(run_id, scoped.findings)
    emit("scope", accounts=len(scoped.in_scope))
    futures = [inventory_one_account.submit(runtime, account) for account in scoped.in_scope]
    outcomes = [future.result() for future in futures]
    store.add_findings(run_id, [f for outcome in outcomes for f in outcome.findings])
    store.complete_snapshot(snapshot_id)
    failed = sorted(o.account_id for o in outcomes if o.error)
    return {
        "run_id": run_id,
        "snapshot_id": snapshot_id,
        "accounts": len(outcomes),
        "accounts_failed": failed,
        "users": sum(o.users for o in outcomes),
        "skipped_accounts": len(scoped.findings),
    }


def run_inventory(spec_path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """Run the inventory flow with the spec's concurrency (accounts at once)."""
    spec = load_spec(spec_path)
    runner = ThreadPoolTaskRunner(max_workers=spec.inventory.concurrency)
    return inventory_flow.with_options(task_runner=runner)(str(spec_path), profile)
