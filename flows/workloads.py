"""Runbook step after the key scan: where each workload user's keys are used from.

Per account, one task (``workloads 893263693528 acme-prod-app``): for each WORKLOAD user of the
latest inventory (and each user declared in ``[[workloads]]``), every request its keys signed
in the last 90 days (CloudTrail ``LookupEvents`` by access key id, every in-scope region, at
the ``cloudtrail`` rate limit), their last-used dates, the replacement role's last use, and
where the key scan found the keys written down; from that the runtime that most likely holds
them (``domain.workload_runtime``). Reads only; recorded as a ``workloads`` run whose
placements ``store.workloads.latest`` gives the plan (``replace``) and the CIS report. On a
work pool the accounts go out in batches to its workers (``engine.batches``), as the
inventory's do, each account's placements coming back through the state DB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import artifact_key, flow_run_id, publish_table, run_logger
from console.run_names import step_run_name
from domain.errors import NoInventoryError
from domain.keys import mask_key_id, mask_key_ids_in
from domain.records import AccountInventory, User, UserClass
from domain.spec import scan_paths_of
from domain.workload_json import placement_from_json, placement_to_json
from domain.workload_runtime import infer_placement
from domain.workload_spec import workloads_by_user
from domain.workloads import KeyUsage, Placement, replacement_role_name
from engine.account_steps import AccountFailure, account_task_result, failures_text
from engine.account_work import account_label, settle
from engine.batches import batch_label, dispatch, distributed
from engine.migration import Migration
from scanner.git_remote import origin_repository
from state.workloads import WORKLOADS_RUN
from tasks.aws import AwsSessions
from tasks.cloudtrail import key_uses
from tasks.workload_use import key_last_uses, role_use

# This step's name for the batches on a work pool (flows.account_batch.STEPS).
WORKLOADS_STEP = "workloads"


class _Runtime:
    """What the account tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(
        self,
        spec: Any,
        sessions: AwsSessions,
        findings: list[Any],
        now: datetime,
        scan_paths: dict[str, Path] | None = None,
    ):
        self.spec = spec
        self.sessions = sessions
        self.findings = findings
        self.now = now
        self.declared = workloads_by_user(spec.workloads)
        self.regions = tuple(dict.fromkeys([*spec.scan.regions, spec.region]))
        # The GitHub repository of each scanned clone (its origin remote), read once: a
        # GitHub Actions role's trust is pinned to it.
        # A code finding's root is its [scan] paths entry as written (scan_paths: resolved).
        where = scan_paths or {}
        roots = sorted({f.root for f in findings if getattr(f, "root", None)})
        self.repositories = {
            root: repo
            for root in roots
            if (repo := origin_repository(where.get(root, Path(root)))) is not None
        }


def workload_users(inventory: AccountInventory, declared: dict[tuple[str, str], Any]) -> list[User]:
    """The account's WORKLOAD users and the users declared in ``[[workloads]]``."""
    account_id = inventory.account.account_id
    return [
        u
        for u in inventory.users
        if u.user_class == UserClass.WORKLOAD or (account_id, u.name) in declared
    ]


def place_account(rt: _Runtime, inventory: AccountInventory) -> list[Placement]:
    """Every workload user of one account, placed (one account's work: may raise)."""
    account_id = inventory.account.account_id
    rt.sessions.check_access(account_id)  # a missing role is reported as such, first
    session = rt.sessions.for_account(account_id)
    iam = session.client("iam")
    placements = []
    for user in workload_users(inventory, rt.declared):
        # The keys as IAM has them now (a key disabled or created since the inventory shows
        # as it is); a user deleted since keeps the inventory's keys, marked so.
        live = key_last_uses(iam, user.name)
        keys = (
            [KeyUsage(k.key_id, "deleted", last_used=k.last_used_date) for k in user.access_keys]
            if live is None
            else [KeyUsage(k.access_key_id, k.status, last_used=k.last_used) for k in live]
        )
        uses = [
            use for key in keys for use in key_uses(session, key.access_key_id, rt.regions, rt.now)
        ]
        ids = {k.access_key_id for k in keys}
        findings = [f for f in rt.findings if f.key_id in ids and f.is_org_key]
        placements.append(
            infer_placement(
                account_id,
                user.name,
                keys,
                uses,
                findings,
                declared=rt.declared.get((account_id, user.name)),
                owner=user.tags.get("owner"),
                role_first_used=role_use(iam, replacement_role_name(user.name)).last_used,
                repositories=rt.repositories,
            )
        )
    return placements


@task(
    name="workloads-account",
    task_run_name="workloads {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def workloads_account(rt: _Runtime, inventory: AccountInventory, label: str) -> Any:
    """Ends Failed with AWS's reason when the account could not be read (its role, its calls)."""
    account_id = inventory.account.account_id
    found = account_task_result(account_id, label, lambda: place_account(rt, inventory))
    if isinstance(found, list):
        run_logger().info(
            "%s: %d workload user(s): %s",
            label,
            len(found),
            ", ".join(f"{p.user} {p.runtime} ({p.confidence})" for p in found) or "none",
        )
    return found


@flow(
    name="workloads",
    flow_run_name=step_run_name("workloads"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=8),
)
def workloads_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Place every workload user's keys: the runtime that most likely holds them, and why.

    Args:
        spec_path: The migration spec (TOML).
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, users placed by runtime, accounts not read (and why).
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        snapshot = store.snapshots.latest_snapshot(migration_id)
        if snapshot is None:
            raise NoInventoryError(
                f"no inventory yet for migration {spec.name!r}: run '{mig.hint('inventory')}' "
                "first, so its workload users are known"
            )
        run_id = store.runs.start_run(
            migration_id, WORKLOADS_RUN, {"spec": spec_path, "prefect_flow_run_id": flow_run_id()}
        )
        try:
            rt = _runtime(mig, migration_id, profile, _now())
            # Users and keys only: the placing reads no policy.
            inventories = store.snapshots.load_snapshot(snapshot.id, policies=False)
            todo = [i for i in inventories if not i.error and workload_users(i, rt.declared)]
            at = {"migration_id": migration_id, "run_id": run_id, "snapshot_id": snapshot.id}
            outcomes = _place(rt, mig, {**at, "profile": profile}, todo)
            failures = [o for o in outcomes if isinstance(o, AccountFailure)]
            placements = [p for o in outcomes if not isinstance(o, AccountFailure) for p in o]
            store.workloads.save_placements(migration_id, run_id, placements)
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        summary = _summary(run_id, snapshot.id, placements, failures)
        message = _incomplete(run_id, failures, mig.hint("workloads"))
        publish_table(
            artifact_key(spec.name, "workloads"),
            workload_rows(placements) + _failed_rows(failures),
            f"**Workloads run {run_id}** of {spec.name}: {len(placements)} workload user(s)"
            + (f"; **INCOMPLETE, {len(failures)} account(s) not read**" if failures else ""),
        )
        # Succeeded even when incomplete: what it read counts, what it could not read keeps
        # the placements of the last run that did (store.workloads.latest); the run says so.
        store.runs.finish_run(run_id, "succeeded", summary=summary, error=message)
    if message:
        from prefect.states import Completed

        run_logger().warning("%s", message)
        return Completed(message=message, data=summary)
    return summary


def _now() -> datetime:
    return datetime.now(UTC)


def _label(inventory: AccountInventory) -> str:
    return account_label(inventory) or inventory.account.account_id


def _runtime(mig: Migration, migration_id: int, profile: str | None, now: datetime) -> _Runtime:
    """What the account tasks share, read as the parent reads it (a batch run reads it again)."""
    findings, _ = mig.store.scans.current_key_findings(migration_id)
    scan_paths = {p.label: p.path for p in scan_paths_of(mig.spec, mig.spec_path)}
    sessions = AwsSessions.from_spec(mig.spec, profile=profile)
    return _Runtime(mig.spec, sessions, findings, now, scan_paths)


def work_key(run_id: int) -> str:
    """Where a workloads run's batches record their accounts' placements."""
    return f"workloads:{run_id}"


def _place(
    rt: _Runtime, mig: Migration, run: dict[str, Any], inventories: list[AccountInventory]
) -> list[list[Placement] | AccountFailure]:
    """Each account's placements, or its failure: on this run's threads, or on a work pool."""
    if distributed():
        return _spread(rt, mig, run, inventories)
    futures = [workloads_account.submit(rt, i, _label(i)) for i in inventories]
    return [settle(future) for future in futures]


def _spread(
    rt: _Runtime, mig: Migration, run: dict[str, Any], inventories: list[AccountInventory]
) -> list[list[Placement] | AccountFailure]:
    """On a work pool: the accounts placed by batch runs on the pool's workers (engine.batches).

    A batch reads its accounts' inventories from the snapshot again (only ids go out: a
    flow run's parameters stay small); an account whose batch never reported is an account
    not read, with the reason: the run is incomplete, as with any account that failed.
    """
    params = {
        **run,
        "spec_path": str(Path(mig.spec_path).resolve()),
        "now": rt.now.isoformat(),
    }
    results, missing = dispatch(
        rt.spec,
        mig.store,
        work=work_key(run["run_id"]),
        step=WORKLOADS_STEP,
        params=params,
        accounts=[i.account.account_id for i in inventories],
        label=lambda batch: batch_label(WORKLOADS_STEP, batch),
        here=lambda batch: workloads_batch(params["spec_path"], params, batch, None),
    )
    outcomes: list[list[Placement] | AccountFailure] = []
    for inventory in inventories:
        account_id = inventory.account.account_id
        if account_id in results:
            outcomes.append(_from_json(results[account_id]))
        else:
            why = missing.get(account_id, "its batch run reported nothing")
            outcomes.append(AccountFailure(account_id, _label(inventory), why))
    return outcomes


def workloads_batch(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """One batch run's work (on a worker): its accounts' workload users placed, reported."""
    with Migration.open(spec_path) as mig:
        now = datetime.fromisoformat(params["now"])
        rt = _runtime(mig, int(params["migration_id"]), params.get("profile"), now)
        inventories = mig.store.snapshots.load_snapshot(
            int(params["snapshot_id"]), policies=False, accounts=accounts
        )
        futures = [(i, workloads_account.submit(rt, i, _label(i))) for i in inventories]
        work, results = work_key(int(params["run_id"])), {}
        for inventory, future in futures:
            account_id = inventory.account.account_id
            result = _to_json(account_id, _label(inventory), settle(future))
            mig.store.account_results.save(work, account_id, result, flow_run_id)
            results[account_id] = result
        return results


def _to_json(
    account_id: str, label: str, outcome: list[Placement] | AccountFailure
) -> dict[str, Any]:
    """One account's outcome as plain JSON (key ids whole: it goes to the state DB)."""
    if isinstance(outcome, AccountFailure):
        return {"account_id": account_id, "label": outcome.label, "error": outcome.reason}
    placements = [placement_to_json(p, masked=False) for p in outcome]
    return {"account_id": account_id, "label": label, "error": None, "placements": placements}


def _from_json(result: dict[str, Any]) -> list[Placement] | AccountFailure:
    if result.get("error"):
        return AccountFailure(result["account_id"], result["label"], result["error"])
    return [placement_from_json(p) for p in result["placements"]]


def _summary(
    run_id: int, snapshot_id: int, placements: list[Placement], failures: list[AccountFailure]
) -> dict[str, Any]:
    runtimes: dict[str, int] = {}
    for p in placements:
        runtimes[str(p.runtime)] = runtimes.get(str(p.runtime), 0) + 1
    return {
        "run_id": run_id,
        "snapshot_id": snapshot_id,
        "users": len(placements),
        "runtimes": dict(sorted(runtimes.items())),
        "accounts_failed": {f.account_id: f.reason for f in failures},
    }


def _incomplete(run_id: int, failures: list[AccountFailure], again: str) -> str | None:
    if not failures:
        return None
    return (
        f"workloads run {run_id} is INCOMPLETE: {len(failures)} account(s) not read; their "
        "workload users keep the placements of the last run that read them:\n  "
        + failures_text(failures)
        + f"\nFix the cause, then press Retry on this flow run, or run '{again}' again."
    )


def workload_rows(placements: list[Placement]) -> list[dict[str, Any]]:
    """One row per user and key for people: every key id masked."""
    rows = []
    for p in sorted(placements, key=lambda p: p.key):
        for key in p.keys or [KeyUsage("", "-")]:
            rows.append(
                {
                    "account": p.account_id,
                    "user": p.user,
                    "runtime": str(p.runtime),
                    "confidence": str(p.confidence),
                    "key": mask_key_id(key.access_key_id),
                    "last used": _day(key.last_seen or key.last_used),
                    "role first used": _day(p.role_first_used),
                    "evidence": mask_key_ids_in(p.evidence[0]) if p.evidence else "",
                    "written down": mask_key_ids_in("; ".join(key.written_down)),
                }
            )
    return rows


def _failed_rows(failures: list[AccountFailure]) -> list[dict[str, Any]]:
    return [
        {"account": f.account_id, "user": "", "runtime": "FAILED", "evidence": f.reason}
        for f in failures
    ]


def _day(when: datetime | None) -> str:
    return when.date().isoformat() if when else ""


def run_workloads(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Run the workloads flow (what ``iamc workloads`` does)."""
    return workloads_flow(str(spec_path), profile)
