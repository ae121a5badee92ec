"""Bringing a deleted IAM user back, as far as AWS allows, from its pre-deletion snapshot.

A restore is a run (kind ``restore``) whose steps go through the journal like a plan stage's:
a restore cut off half-way is continued by ``iamc resume RUN_ID`` or by the same ``iamc
restore`` command again, and sends no creation twice. It holds the delete stage's lease of the
snapshot's plan, so it never runs beside a delete of the same plan. It refuses, changing
nothing, when the user's name now belongs to another unique id than the snapshot's (or than a
user an earlier restore made); a user whose deletion stopped half-way (same unique id) gets
back what it lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from console.operator import artifact_key, in_flow_run, operator_step, publish_table, run_logger
from console.run_names import step_run_name
from domain.errors import ApplyFailed, ApplyRefused
from domain.plan import Stage
from domain.runs import RESTORE_RUN
from engine.account_steps import AccountFailure, contained_account
from engine.account_work import settle
from engine.executor import Executor
from engine.lease import LeaseLost, stage_lease
from engine.migration import Migration
from engine.progress import account_names
from state import Store
from state.journal import ADOPTED, DONE_STATUSES
from state.user_snapshots import RESTORE_STAGE, StoredSnapshot
from tasks.aws import AwsSessions, translate_errors
from tasks.handler import ExecutionContext
from tasks.iam_user_live import user_record
from tasks.user_restore import (
    HANDLERS,
    cannot_come_back,
    describe,
    ours,
    restore_actions,
)

log = logging.getLogger(__name__)


def _chosen(
    store: Store, migration_id: int, user: str | None, run_id: int | None
) -> list[StoredSnapshot]:
    """The newest snapshot of each user to restore (a resumed delete may have stored several
    of one user: the newest of that unique id is the user as it was last)."""
    from domain.retire import parse_user

    if user is not None:
        account_id, name = parse_user(user)
        found = store.retired.user_snapshots(migration_id, account_id=account_id, user_name=name)
        if not found:
            raise ApplyRefused(f"no snapshot of {user}: it was not deleted by this migration")
        return [found[-1]]  # the latest deletion of that name
    every = store.retired.user_snapshots(migration_id)
    wanted = {(s.account_id, s.user_name, s.user_id) for s in every if s.run_id == run_id}
    if not wanted:
        raise ApplyRefused(f"run {run_id} deleted no user of this migration: nothing to restore")
    newest = {(s.account_id, s.user_name, s.user_id): s for s in every}  # oldest first
    return [newest[key] for key in sorted(wanted)]


def _open_run(store: Store, migration_id: int, params: dict[str, Any], resume: int | None) -> int:
    """The restore run to record steps under: the one resumed, the latest one of the same
    restore if it did not succeed (the same command again continues it), or a new one."""
    if resume is None:
        same = [
            r
            for r in store.runs.list_runs(migration_id)
            if r.kind == RESTORE_RUN
            and (r.params.get("user"), r.params.get("of_run")) == (params["user"], params["of_run"])
        ]
        if same and same[-1].status != "succeeded":
            resume = same[-1].id
    if resume is None:
        return store.runs.start_run(migration_id, RESTORE_RUN, params)
    log.info("continuing restore run %s", resume)
    store.runs.reopen_run(resume)
    return resume


def _refusal(store: Store, iam: Any, snapshot: StoredSnapshot) -> str | None:
    """Why this user may not be restored now: its name belongs to someone else."""
    live = user_record(iam, snapshot.user_name)
    if live is None:
        return None
    earlier = store.retired.restore_rows(snapshot.plan_id, snapshot.account_id, snapshot.user_name)
    if ours(live, snapshot.user_id, earlier):
        return None
    return (
        f"{snapshot.account_id}/{snapshot.user_name} now belongs to a different user (unique "
        f"id {live['UserId']}, created {live.get('CreateDate')}), not the one deleted (unique "
        f"id {snapshot.user_id}): restoring would give it the deleted user's policies, groups "
        "and tags. Rename or remove that user first, or leave it"
    )


def _restore_one(executor: Executor, iam: Any, snapshot: StoredSnapshot) -> dict[str, Any]:
    """Run one user's restore steps through the journal; what came back, what was there."""
    result: dict[str, Any] = {
        "user": f"{snapshot.account_id}/{snapshot.user_name}",
        "account_id": snapshot.account_id,
        "user_name": snapshot.user_name,
        "old_user_id": snapshot.user_id,
        "user_id": None,
        "restored": [],
        "present": [],
        "cannot": [],
    }
    for action in restore_actions(executor.run_id, snapshot.account_id, snapshot.content):
        executor.run(action)
        entry = executor.journal.journal_entry(executor.plan_id, action.id)
        assert entry is not None and entry.status in DONE_STATUSES
        outcome = entry.outcome or {}
        if action.kind == "restore-user":
            adopted = outcome.get("adopted") or {}
            result["user_id"] = outcome.get("user_id") or adopted.get("user_id")
        if "cannot" in outcome:
            result["cannot"].append(outcome["cannot"])
        elif entry.status == ADOPTED:
            result["present"].append(describe(action))
        else:
            result["restored"].append(outcome.get("restored") or describe(action))
    result["cannot"].extend(cannot_come_back(iam, snapshot.content, result["user_id"]))
    if result["user_id"] == snapshot.user_id:
        result["present"].append(
            f"unique id {snapshot.user_id}: the user was not deleted (its deletion stopped "
            "half-way), so resource policies that name it still apply"
        )
    return result


def restore(
    spec_path: str | Path,
    user: str | None = None,
    run_id: int | None = None,
    *,
    resume_run_id: int | None = None,
    fault: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Re-create one deleted user (``ACCOUNT/NAME``) or every user a delete run deleted.

    Args:
        spec_path: The migration spec.
        user: ``ACCOUNT/NAME`` of one deleted user.
        run_id: Or every user one delete run deleted.
        resume_run_id: The restore run to continue (``iamc resume``).
        fault: ``(action id, point)`` where the process "dies" (tests only).

    Returns:
        ``{"run_id", "users": [{"user", "restored", "present", "cannot", ...}]}``.

    Raises:
        ApplyRefused: Neither or both of ``user`` and ``run_id``; no snapshot to restore; a
            name now held by another unique id; a delete of the same plan is running.
        ApplyFailed: An account's users could not (all) be restored (its role, its calls):
            the other accounts' are; a resume (or the same command) continues.
    """
    if (user is None) == (run_id is None):
        raise ApplyRefused("restore: name one user (ACCOUNT/NAME) or one delete run (--run ID)")
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        sessions = AwsSessions.from_spec(spec)
        migration_id = store.migrations.find_migration(spec.name)
        if migration_id is None:
            raise ApplyRefused(f"migration {spec.name!r} has no state: nothing to restore")
        snapshots = _chosen(store, migration_id, user, run_id)
        with ExitStack() as leases:
            # Never beside a delete of the same plan (nor another restore of it).
            holders = {
                plan_id: leases.enter_context(stage_lease(store, plan_id, Stage.DELETE))
                for plan_id in sorted({s.plan_id for s in snapshots})
            }
            params = {"spec": str(spec_path), "user": user, "of_run": run_id}
            restore_run = _open_run(store, migration_id, params, resume_run_id)
            for lease in holders.values():
                for stage in lease.stages:
                    store.leases.stage_lock_run(lease.plan_id, stage, lease.holder, restore_run)

            def still_leased() -> None:
                for lease in holders.values():
                    lease.ensure()

            try:
                results, failed = _restore_all(
                    mig, sessions, snapshots, restore_run, fault, guard=still_leased
                )
            except LeaseLost:
                raise  # another process holds the plan now: not ours to end the run
            except BaseException as err:
                store.runs.finish_run(restore_run, "failed", error=str(err) or type(err).__name__)
                raise
            return _finish(mig, restore_run, results, failed)


def _finish(
    mig: Migration, restore_run: int, results: list[dict[str, Any]], failed: list[AccountRestore]
) -> dict[str, Any]:
    """Publish the table and record the run: succeeded, or failed saying what to do.

    Raises:
        ApplyFailed: An account's users could not (all) be restored; the rest are.
    """
    summary: dict[str, Any] = {"run_id": restore_run, "users": results}
    if failed:
        summary["accounts_failed"] = {a.account_id: str(a.failure.reason) for a in failed}
    rows = _rows(results, failed)
    publish_table(
        artifact_key(mig.spec.name, "restore"),
        rows,
        f"**Restore run {restore_run}**: {len(results)} user(s) restored"
        + (f", **{len(rows) - len(results)} not restored**." if failed else "."),
    )
    if not failed:
        mig.store.runs.finish_run(restore_run, "succeeded", summary=summary)
        return summary
    message = (
        f"restore run {restore_run}: {len(rows) - len(results)} user(s) not restored, "
        f"{len(results)} restored; fix the cause, then '{mig.hint(f'resume {restore_run}')}' "
        "(or the same restore command again): what is restored is not created twice:\n  "
        + "\n  ".join(
            f"account {a.label}: {a.failure.reason} ({', '.join(a.not_restored())})"
            for a in failed
            if a.failure is not None
        )
    )
    mig.store.runs.finish_run(restore_run, "failed", summary=summary, error=message)
    raise ApplyFailed(message)


def _restore_all(
    mig: Migration,
    sessions: AwsSessions,
    snapshots: list[StoredSnapshot],
    restore_run: int,
    fault: tuple[str, str] | None,
    guard: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[AccountRestore]]:
    """Each account's users restored, contained: (what came back, the accounts that failed).

    Every name is checked before anything changes (a refusal changes nothing at all); an
    account that can't be read (its role, its calls) is that account's failure alone.
    """
    store = mig.store
    # A restore acts on IAM only: no Identity Center instance.
    ctx = ExecutionContext(sessions.management, sessions.for_restore, instance=None)
    names = account_names(mig)
    accounts: dict[str, AccountRestore] = {}
    for snapshot in snapshots:
        account_id = snapshot.account_id
        label = f"{account_id} {names.get(account_id, '')}".strip()
        accounts.setdefault(account_id, AccountRestore(account_id, label)).snapshots.append(
            snapshot
        )
    refusals = []
    for account in accounts.values():
        checked = contained_account(
            account.account_id, account.label, lambda a=account: _refusals(store, ctx, a)
        )
        if isinstance(checked, AccountFailure):
            account.failure = checked
        else:
            refusals.extend(checked)
    if refusals:
        raise ApplyRefused("restore refused; nothing was changed: " + "; ".join(refusals))

    def work(account_id: str) -> AccountRestore:
        return _restore_account(store, ctx, accounts[account_id], restore_run, fault, guard)

    if in_flow_run():
        rt = _Work(work, accounts)
        futures = [restore_account_task.submit(rt, a, accounts[a].label) for a in accounts]
        done = [settle(f) for f in futures]
    else:
        done = [work(a) for a in accounts]
    results = [r for account in done for r in account.results]
    return results, [a for a in done if a.failure is not None]


@dataclass
class AccountRestore:
    """One account's users to restore, what came back and, if it failed, why."""

    account_id: str
    label: str
    snapshots: list[StoredSnapshot] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    failure: AccountFailure | None = None

    def not_restored(self) -> list[str]:
        done = {r["user"] for r in self.results}
        return [
            f"{s.account_id}/{s.user_name}"
            for s in self.snapshots
            if f"{s.account_id}/{s.user_name}" not in done
        ]


def _refusals(store: Store, ctx: ExecutionContext, account: AccountRestore) -> list[str]:
    found = []
    with translate_errors(account.account_id, "restore"):
        for snapshot in account.snapshots:
            refusal = _refusal(store, ctx.iam(account.account_id), snapshot)
            if refusal:
                found.append(refusal)
    return found


def _restore_account(
    store: Store,
    ctx: ExecutionContext,
    account: AccountRestore,
    restore_run: int,
    fault: tuple[str, str] | None,
    guard: Callable[[], None] | None,
) -> AccountRestore:
    """One account's users, in order; the first failure stops the account (the rest wait
    for a Retry, as a stage's account does)."""
    if account.failure is not None:
        return account
    for snapshot in account.snapshots:
        executor = Executor(
            store.journal,
            HANDLERS,
            ctx,
            run_id=restore_run,
            plan_id=snapshot.plan_id,
            stage=RESTORE_STAGE,
            fault=fault,
            guard=guard,
        )

        def one(snapshot: StoredSnapshot = snapshot, executor: Executor = executor) -> Any:
            with translate_errors(snapshot.account_id, "restore"):
                return _restore_one(executor, ctx.iam(snapshot.account_id), snapshot)

        result = contained_account(account.account_id, account.label, one)
        if isinstance(result, AccountFailure):
            account.failure = result
            return account
        log.info(
            "restored %s: %s re-created, %s already there, %s not possible",
            result["user"],
            len(result["restored"]),
            len(result["present"]),
            len(result["cannot"]),
        )
        account.results.append(result)
    return account


class _Work:
    """What the account tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(
        self, work: Callable[[str], AccountRestore], accounts: dict[str, AccountRestore]
    ) -> None:
        self.work = work
        self.accounts = accounts


@task(
    name="restore-account",
    task_run_name="restore {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def restore_account_task(rt: _Work, account_id: str, label: str) -> Any:
    """One account's users; Failed (red in the UI) with AWS's reason when the account failed."""
    from prefect.states import Failed

    logger = run_logger()
    logger.info("%s: %d user(s) to restore", label, len(rt.accounts[account_id].snapshots))
    done = rt.work(account_id)
    if done.failure is not None:
        logger.error("%s", done.failure)
        return Failed(message=str(done.failure), data=done)
    logger.info("%s: %d user(s) restored", label, len(done.results))
    return done


def _rows(results: list[dict[str, Any]], failed: list[AccountRestore]) -> list[dict[str, Any]]:
    rows = [
        {
            "user": r["user"],
            "result": "restored",
            "re-created": len(r["restored"]),
            "already there": len(r["present"]),
            "can't come back": "; ".join(r["cannot"]),
        }
        for r in results
    ]
    for account in failed:
        assert account.failure is not None
        for user in account.not_restored():
            rows.append(
                {
                    "user": user,
                    "result": "FAILED",
                    "re-created": 0,
                    "already there": 0,
                    "can't come back": f"not restored: {account.failure.reason}",
                }
            )
    return rows


def resume_restore(spec_path: str | Path, run_id: int) -> dict[str, Any]:
    """Continue a restore run that failed or was cut off, under the same run id.

    Raises:
        ApplyRefused: Not a restore run of this migration, or it succeeded.
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        run = store.runs.get_run(run_id)
    if run.migration != spec.name or run.kind != RESTORE_RUN:
        raise ApplyRefused(f"run {run_id} is not a restore run of {spec.name!r}")
    if run.status == "succeeded":
        raise ApplyRefused(
            f"run {run_id} succeeded: there is nothing to resume; nothing was changed"
        )
    return restore_flow(str(spec_path), run.params.get("user"), run.params.get("of_run"), run_id)


@flow(name="restore", flow_run_name=step_run_name("restore"), log_prints=False)
@operator_step("restore")
def restore_flow(
    spec_path: str,
    user: str | None = None,
    run_id: int | None = None,
    resume_run_id: int | None = None,
) -> dict[str, Any]:
    """Re-create deleted IAM users from their snapshots: the user, path, tags, boundary,
    policies, groups, SSH keys and signing certificates; and list what can't come back
    (access key secrets, the password, MFA devices, resource-policy grants).

    Args:
        spec_path: The migration spec (TOML).
        user: ``ACCOUNT/NAME`` of one deleted user.
        run_id: Or every user one delete run deleted.
        resume_run_id: A restore run to continue.
    """
    return restore(spec_path, user, run_id, resume_run_id=resume_run_id)
