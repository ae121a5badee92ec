"""The bake period's record: who is baking, ready, in use, kept; decisions. No Prefect here.

What ``iamc bake --no-lookup``, ``iamc bake decide`` and ``iamc plan show`` read, so those
commands start without importing Prefect or boto3; only the watch (``collect=True``) reads AWS,
importing what it needs then. The flow that runs the watch is in ``flows.bake``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.errors import ApplyRefused, IamcError, PlanError
from domain.plan import Plan
from domain.retire import BakeStatus, Decision, UseEvidence, bake_status, parse_user
from engine.migration import Migration
from state import Store
from state.journal import DONE_STATUSES, ROLLED_BACK
from state.user_snapshots import DisabledUser

log = logging.getLogger(__name__)

BAKE_RUN = "bake"
ACCOUNT_CONCURRENCY = 8


def _now() -> datetime:
    return datetime.now(UTC)


def _latest_disable(rows: list[DisabledUser]) -> dict[tuple[str, str], DisabledUser]:
    latest: dict[tuple[str, str], DisabledUser] = {}
    for row in rows:  # oldest plan first: the newest plan's row wins
        latest[(row.account_id, row.user_name)] = row
    return latest


def _plan_bake_days(store: Store, plan_id: int, default: int) -> int:
    info = store.plans.get_plan(plan_id)
    if info is None:
        return default
    return max(int(Plan.from_content(info.content).settings.get("bake_days", default)), default)


def bake_report(
    spec_path: str | Path,
    *,
    collect: bool = True,
    clock: Callable[[], datetime] | None = None,
    plan_id: int | None = None,
) -> dict[str, Any]:
    """Look for use of every disabled user (unless ``collect`` is False) and report its state.

    Args:
        spec_path: The migration spec.
        collect: Read CloudTrail and key last-used dates now (the watch); False only reports
            what is recorded.
        clock: What "now" is (tests move it); default the real time.
        plan_id: Only the users this plan disabled.

    Returns:
        ``{"run_id", "users": [BakeStatus as dict...], "counts": {state: n}, "errors": [...]}``.

    Raises:
        ApplyRefused: The migration has no state yet.
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        now = (clock or _now)()
        migration_id = store.migrations.find_migration(spec.name)
        if migration_id is None:
            raise ApplyRefused(f"migration {spec.name!r} has no state yet: nothing was disabled")
        # Only a watch that reads AWS is a run; a report of what is recorded only reads.
        run_id = (
            store.runs.start_run(migration_id, BAKE_RUN, {"spec": str(spec_path)})
            if collect
            else None
        )
        try:
            latest = _latest_disable(store.retired.disabled_users(migration_id))
            if plan_id is not None:
                latest = {k: row for k, row in latest.items() if row.plan_id == plan_id}
            deleted = store.retired.deleted_users(migration_id)
            errors: list[str] = []
            if collect:
                errors = _collect(store, spec, migration_id, latest, deleted)
            bake_days = {
                plan_id: _plan_bake_days(store, plan_id, spec.decommission.bake_days)
                for plan_id in {row.plan_id for row in latest.values()}
            }
            statuses = []
            for (account_id, user), row in sorted(latest.items()):
                done = row.status in DONE_STATUSES
                statuses.append(
                    bake_status(
                        account_id=account_id,
                        user_name=user,
                        plan_id=row.plan_id,
                        disabled_at=row.disabled_at if done else None,
                        bake_days=bake_days[row.plan_id],
                        evidence=store.retired.use_evidence(migration_id, account_id, user),
                        decisions=store.retired.bake_decisions(migration_id, account_id, user),
                        now=now,
                        re_enabled=row.status == ROLLED_BACK,
                        deleted=(account_id, user) in deleted,
                    )
                )
        except BaseException as err:
            if run_id is not None:
                store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status.state] = counts.get(status.state, 0) + 1
        summary = {"run_id": run_id, "counts": counts, "errors": errors}
        if run_id is not None:
            store.runs.finish_run(
                run_id,
                "failed" if errors else "succeeded",
                summary=summary,
                error="; ".join(errors) or None,
            )
    return {**summary, "users": [_status_dict(s) for s in statuses], "now": now.isoformat()}


def _collect(
    store: Store,
    spec: Any,
    migration_id: int,
    latest: dict[tuple[str, str], DisabledUser],
    deleted: set[tuple[str, str]],
) -> list[str]:
    """Read the evidence of every disabled (not deleted) user, one task per account."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.aws import AwsSessions
    from tasks.cloudtrail import GLOBAL_EVENTS_REGION, collect_evidence

    sessions = AwsSessions.from_spec(spec)
    by_account: dict[str, list[DisabledUser]] = {}
    for key, row in latest.items():
        if row.status in DONE_STATUSES and row.disabled_at and key not in deleted:
            by_account.setdefault(row.account_id, []).append(row)

    def account(account_id: str, rows: list[DisabledUser]) -> list[str]:
        problems = []
        session = sessions.for_account(account_id)
        for row in rows:
            assert row.disabled_at is not None
            try:
                found = collect_evidence(
                    session,
                    account_id,
                    row.user_name,
                    row.disabled_at,
                    regions=(GLOBAL_EVENTS_REGION, spec.region),
                )
            except (ClientError, BotoCoreError, IamcError) as err:
                # One user's (or account's) failure is reported; the others are still read.
                problems.append(f"{account_id}/{row.user_name}: {err}")
                continue
            new = store.retired.add_use_evidence(migration_id, found)
            if new:
                log.warning("%s/%s: %s new sign(s) of use", account_id, row.user_name, new)
        return problems

    with ThreadPoolExecutor(max_workers=ACCOUNT_CONCURRENCY) as pool:
        futures = [pool.submit(account, a, rows) for a, rows in sorted(by_account.items())]
        return [problem for future in futures for problem in future.result()]


def _evidence_dict(item: UseEvidence) -> dict[str, Any]:
    return {
        "when": item.event_time.isoformat(),
        "event": item.event_name,
        "error": item.error_code,
        "source_ip": item.source_ip,
        "user_agent": item.user_agent,
        "key": item.access_key_id,
        "source": item.source,
        "line": item.describe(),
    }


def _status_dict(status: BakeStatus) -> dict[str, Any]:
    return {
        "user": f"{status.account_id}/{status.user_name}",
        "plan_id": status.plan_id,
        "state": str(status.state),
        "disabled_at": status.disabled_at.isoformat() if status.disabled_at else None,
        "deletable_from": status.deletable_from.isoformat() if status.deletable_from else None,
        "reason": status.reason,
        "evidence": [_evidence_dict(e) for e in status.evidence],
        "decision": (
            {
                "decision": str(status.decision.decision),
                "by": status.decision.decided_by,
                "reason": status.decision.reason,
                "at": status.decision.at.isoformat(),
            }
            if status.decision
            else None
        ),
    }


def decide(
    spec_path: str | Path,
    user: str,
    *,
    by: str,
    reason: str,
    decision: Decision = Decision.DELETE,
) -> dict[str, Any]:
    """Record a person's decision about a disabled user (delete anyway, or keep).

    Raises:
        PlanError: No ``--by`` or ``--reason``; the user was not disabled by this migration.
    """
    if not by.strip() or not reason.strip():
        raise PlanError("a decision needs both --by (who) and --reason (why)")
    account_id, name = parse_user(user)
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        migration_id = store.migrations.find_migration(spec.name)
        disabled = (
            _latest_disable(store.retired.disabled_users(migration_id))
            if migration_id is not None
            else {}
        )
        if migration_id is None or (account_id, name) not in disabled:
            raise PlanError(f"{user} was not disabled by migration {spec.name!r}: nothing decided")
        recorded = store.retired.record_bake_decision(
            migration_id, account_id, name, decision, by, reason
        )
    return {
        "user": user,
        "decision": str(recorded.decision),
        "by": recorded.decided_by,
        "reason": recorded.reason,
        "at": recorded.at.isoformat(),
    }
