"""Runbook step after provisioning: check that each migrated person's access landed, in AWS.

Per account, one task (``verify 893263693528 acme-prod-app``): the planned assignments exist,
the provisioned ``AWSReservedSSO_*`` roles carry their permission sets' policies, and no person
has less than their old IAM user had (``tasks.verify_access``), or, when the plan trimmed
their access to what they used, lost nothing they used in the window (``tasks.verify_use``).
For a ``central-roles`` plan (``settings["target"]``) each member account's task checks its
roles instead (``tasks.verify_central``): per person and role, the live trust policy names
them (with MFA) and nobody outside the central account, IAM's policy simulator says their own
policies allow the switch, and they have an MFA device. Same table, artifact and failure.
Reads only; recorded as a ``verify`` run of the plan, so ``centralize`` knows it is done.
On a work pool the accounts go out in batches to its workers (``engine.batches``), as the
inventory's do, each account's checks coming back through the state DB.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import (
    artifact_key,
    flow_run_id,
    operator_step,
    publish_table,
    resolve_plan_id,
    run_logger,
)
from console.run_names import step_run_name
from domain.central_spec import CENTRAL_ROLES, Central
from domain.errors import AccessNotVerified, SpecError
from domain.plan import Plan
from domain.records import AccountInventory
from domain.runs import VERIFY_RUN
from domain.stages import Stage
from engine.account_steps import AccountFailure, account_task_result, failures_text
from engine.account_work import account_label, settle
from engine.batches import batch_label, dispatch, distributed
from engine.migration import Migration
from engine.reports import get_plan_info
from tasks.aws import AwsSessions
from tasks.identity_store import find_instance
from tasks.verify_access import AccessCheck, permission_set_arns, verify_account
from tasks.verify_central import (
    RoleCheck,
    member_role_actions,
    planned_checks,
    verify_member_roles,
)

# This step's name for the batches on a work pool (flows.account_batch.STEPS).
VERIFY_STEP = "verify"

# A row of the verify table: a person in an account (Identity Center), or a person's role
# in an account (central roles).
Check = AccessCheck | RoleCheck


class _Runtime:
    """What the account tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, plan: Plan, inventories: dict[str, AccountInventory], sessions: Any):
        self.plan = plan
        self.inventories = inventories
        self.sessions = sessions
        self.sso: Any = None
        self.instance_arn = ""
        self.set_arns: dict[str, str] = {}
        # The latest usage read, when the plan trimmed access to what was used.
        self.usage: Any = None
        # central-roles: the spec's [central] and the provision journal's statuses.
        self.central: Central | None = None
        self.statuses: dict[str, str] = {}


@task(
    name="verify-account",
    task_run_name="verify {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def verify_account_task(rt: _Runtime, account_id: str, label: str) -> Any:
    """Ends Failed, naming the first problem, when someone's access is not as planned, or
    naming AWS's reason when the account could not be read (its role, its calls)."""
    from prefect.states import Failed

    logger = run_logger()
    checks = account_task_result(account_id, label, lambda: _verify(rt, account_id))
    if not isinstance(checks, list):
        return checks  # the account's failure, Failed
    bad = [c for c in checks if not c.ok]
    logger.info("%s: %d person(s) checked, %d with problems", label, len(checks), len(bad))
    for check in bad:
        for problem in check.problems:
            logger.error("%s: %s: %s", label, check.identity, problem)
    if bad:
        return Failed(
            message=f"{label}: {bad[0].identity}: {bad[0].problems[0]}"
            + (f" (and {len(bad) - 1} more person(s))" if len(bad) > 1 else ""),
            data=checks,
        )
    return checks


def _verify(rt: _Runtime, account_id: str) -> list[AccessCheck] | list[RoleCheck]:
    rt.sessions.check_access(account_id)  # a missing role is reported as such, first
    if rt.central is not None:
        rt.sessions.check_access(rt.central.account)  # the simulator runs there
        return verify_member_roles(
            rt.plan,
            account_id,
            rt.statuses,
            rt.sessions.for_account(account_id),
            rt.sessions.for_account(rt.central.account),
            rt.central,
        )
    return verify_account(
        rt.plan,
        account_id,
        rt.inventories.get(account_id),
        rt.sso,
        rt.instance_arn,
        rt.set_arns,
        rt.sessions.for_account(account_id),
        rt.usage,
    )


def _not_checked(plan: Plan, failure: AccountFailure) -> list[Check]:
    """One FAILED row per person of an account that could not be read, with the reason."""
    if _is_central(plan):
        roles: list[Check] = [*planned_checks(plan, failure.account_id)]
        return roles
    people: dict[str, AccessCheck] = {}
    for user in plan.users:
        if user.account_id == failure.account_id and user.outcome == "migrate":
            identity = user.identity or user.user
            check = people.setdefault(identity, AccessCheck(identity, user.account_id, [], []))
            check.iam_users.append(user.user)
            check.permission_sets = sorted(set(check.permission_sets) | set(user.permission_sets))
    return list(people.values())


def _is_central(plan: Plan) -> bool:
    return plan.settings.get("target") == CENTRAL_ROLES


def _rows(
    checks: list[Check], names: dict[str, str], failed: dict[str, str]
) -> list[dict[str, Any]]:
    def row(c: Check, result: str, problems: str) -> dict[str, Any]:
        return {
            "person": c.identity,
            "account": c.account_id,
            "name": names.get(c.account_id, ""),
            **c.columns(),
            "result": result,
            "problems": problems,
        }

    rows = [
        row(c, "ok" if c.ok else "PROBLEM", "; ".join(c.problems))
        for c in checks
        if c.account_id not in failed
    ]
    rows.extend(
        row(c, "FAILED", f"not checked: {failed[c.account_id]}")
        for c in checks
        if c.account_id in failed
    )
    return rows


@flow(
    name="verify",
    flow_run_name=step_run_name("verify"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=8),
)
@operator_step("verify")
def verify_flow(spec_path: str, plan_id: int | None = None) -> dict[str, Any]:
    """Check that the plan's provisioning gave each migrated person what they had before.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: The provisioned plan; empty: the migration's latest plan.

    Returns:
        The run's summary: people and accounts checked, and how many have problems.
    """
    plan_id = resolve_plan_id(spec_path, plan_id)
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        info = get_plan_info(store, spec.name, plan_id)
        plan = Plan.from_content(info.content)
        inventories = {
            i.account.account_id: i
            for i in store.snapshots.load_snapshot(plan.inventory_snapshot_id)
        }
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.runs.start_run(
            migration_id,
            VERIFY_RUN,
            {"spec": spec_path, "plan_id": plan_id, "prefect_flow_run_id": flow_run_id()},
        )
        try:
            rt, accounts = _runtime(mig, plan, plan_id, inventories)
            run_logger().info("verifying plan %s in %d account(s)", plan_id, len(accounts))
            if distributed():
                outcomes = _spread(rt, mig, plan_id, run_id, accounts)
            else:
                outcomes = _run_accounts(rt, accounts)
            checks, failures = _gathered(plan, outcomes)
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        return _finish(mig, run_id, plan_id, inventories, checks, failures, info.wave)


def _runtime(
    mig: Migration, plan: Plan, plan_id: int, inventories: dict[str, AccountInventory]
) -> tuple[_Runtime, list[str]]:
    """What the account tasks share, and the accounts to check (a batch run reads it again)."""
    spec, store = mig.spec, mig.store
    sessions = AwsSessions.from_spec(spec)
    rt = _Runtime(plan, inventories, sessions)
    # Who the plan trimmed is checked against what they used (tasks.verify_use): the read
    # the plan was computed from, not a newer one.
    if plan.least_privilege and plan.usage_read_id is not None:
        rt.usage = store.usage.load(plan.usage_read_id)
    if _is_central(plan):
        if spec.central is None:
            raise SpecError(
                f"plan {plan_id} is for the central-roles target but the spec has no [central] "
                "table: put back [central] (the identity account) to verify it"
            )
        rt.central = spec.central
        rt.statuses = {
            e.action_id: e.status for e in store.journal.journal_entries(plan_id, Stage.PROVISION)
        }
        return rt, sorted({str(a.account_id) for a in member_role_actions(plan)})
    management = sessions.management()
    instance = find_instance(
        management,
        identity_store_id=spec.mapping.identity_store_id,
        instance_arn=spec.mapping.instance_arn,
        spec_path=mig.spec_path,
    )
    rt.sso, rt.instance_arn = management.client("sso-admin"), instance.instance_arn
    rt.set_arns = permission_set_arns(rt.sso, rt.instance_arn)
    return rt, sorted({u.account_id for u in plan.users if u.outcome == "migrate"})


def _label(rt: _Runtime, account_id: str) -> str:
    return account_label(rt.inventories.get(account_id)) or account_id


def _run_accounts(rt: _Runtime, accounts: list[str]) -> list[Any]:
    """One task per account: each account's checks, or its :class:`AccountFailure`."""
    futures = [verify_account_task.submit(rt, a, _label(rt, a)) for a in accounts]
    return [settle(future) for future in futures]


def _gathered(plan: Plan, outcomes: list[Any]) -> tuple[list[Check], list[AccountFailure]]:
    """Every check, and the accounts that could not be read (as FAILED rows)."""
    checks: list[Check] = []
    failures: list[AccountFailure] = []
    for outcome in outcomes:
        if isinstance(outcome, AccountFailure):
            failures.append(outcome)
            checks.extend(_not_checked(plan, outcome))
        else:
            checks.extend(outcome)
    return checks, failures


def work_key(run_id: int) -> str:
    """Where a verify run's batches record their accounts' checks."""
    return f"verify:{run_id}"


def _spread(
    rt: _Runtime, mig: Migration, plan_id: int, run_id: int, accounts: list[str]
) -> list[Any]:
    """On a work pool: the accounts checked by batch runs on its workers (engine.batches).

    A batch reads the plan and its accounts' inventories from the state DB again (only ids
    go out); an account whose batch never reported is an account not checked, with the
    reason: the run fails, as with any account that could not be read.
    """
    params = {
        "spec_path": str(Path(mig.spec_path).resolve()),
        "plan_id": plan_id,
        "run_id": run_id,
    }
    results, missing = dispatch(
        mig.spec,
        mig.store,
        work=work_key(run_id),
        step=VERIFY_STEP,
        params=params,
        accounts=accounts,
        label=lambda batch: batch_label(VERIFY_STEP, batch),
        here=lambda batch: verify_batch(params["spec_path"], params, batch, None),
    )
    return [
        _from_json(rt.plan, results[a])
        if a in results
        else AccountFailure(a, _label(rt, a), missing.get(a, "its batch run reported nothing"))
        for a in accounts
    ]


def verify_batch(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """One batch run's work (on a worker): its accounts' people checked, reported."""
    plan_id = int(params["plan_id"])
    with Migration.open(spec_path) as mig:
        plan = Plan.from_content(get_plan_info(mig.store, mig.spec.name, plan_id).content)
        inventories = {
            i.account.account_id: i
            for i in mig.store.snapshots.load_snapshot(
                plan.inventory_snapshot_id, accounts=accounts
            )
        }
        rt, _ = _runtime(mig, plan, plan_id, inventories)
        work, results = work_key(int(params["run_id"])), {}
        for account_id, outcome in zip(accounts, _run_accounts(rt, accounts), strict=True):
            result = _to_json(account_id, _label(rt, account_id), outcome)
            mig.store.account_results.save(work, account_id, result, flow_run_id)
            results[account_id] = result
        return results


def _to_json(account_id: str, label: str, outcome: Any) -> dict[str, Any]:
    """One account's outcome as plain JSON; ``errors``: its problems (its batch run fails)."""
    if isinstance(outcome, AccountFailure):
        return {"account_id": account_id, "label": outcome.label, "error": outcome.reason}
    return {
        "account_id": account_id,
        "label": label,
        "error": None,
        "errors": [f"{c.identity}: {c.problems[0]}" for c in outcome if not c.ok],
        "checks": [asdict(c) for c in outcome],
    }


def _from_json(plan: Plan, result: dict[str, Any]) -> list[Check] | AccountFailure:
    if result.get("error"):
        return AccountFailure(result["account_id"], result["label"], result["error"])
    if _is_central(plan):
        return [RoleCheck(**c) for c in result["checks"]]
    return [AccessCheck(**c) for c in result["checks"]]


def _finish(
    mig: Migration,
    run_id: int,
    plan_id: int,
    inventories: dict[str, AccountInventory],
    checks: list[Check],
    failures: list[AccountFailure],
    wave: str | None = None,
) -> dict[str, Any]:
    """Publish the table and record the run: succeeded, or failed saying what to fix.

    Raises:
        AccessNotVerified: Someone's access is not as planned, or an account could not be read.
    """
    spec, store = mig.spec, mig.store
    names = {a: i.account.name for a, i in inventories.items()}
    failed = {f.account_id: f.reason for f in failures}
    bad = [c for c in checks if not c.ok and c.account_id not in failed]
    summary = {
        "run_id": run_id,
        "plan_id": plan_id,
        "people": len({c.identity for c in checks}),
        "accounts": len({c.account_id for c in checks}),
        "checked": len(checks) - sum(1 for c in checks if c.account_id in failed),
        "problems": len(bad),
        "accounts_failed": failed,
    }
    verdict = "everyone's access landed."
    if bad or failed:
        verdict = f"**{len(bad)} with problems, {len(failed)} account(s) not checked**."
    publish_table(
        artifact_key(spec.name, "verify", wave),
        _rows(checks, names, failed),
        f"**Verify run {run_id}** of plan {plan_id}: {summary['people']} people in "
        f"{summary['accounts']} account(s); " + verdict,
    )
    if not bad and not failed:
        store.runs.finish_run(run_id, "succeeded", summary=summary)
        return summary
    parts = [f"verify run {run_id}:"]
    if failures:
        parts.append(
            f"{len(failures)} account(s) could not be checked (their people's access is not "
            "verified); restore the account's access for the tool (its member role), then "
            "verify again:\n  " + failures_text(failures)
        )
    if bad:
        parts.append(
            f"{len(bad)} of {len(checks)} person-account check(s) found a problem; fix the "
            "cause (re-run the apply of this plan if an assignment or role is missing), then "
            "run verify again:\n  "
            + "\n  ".join(f"{c.identity} in {c.account_id}: {c.problems[0]}" for c in bad)
        )
    message = "\n".join(parts)
    store.runs.finish_run(run_id, "failed", summary=summary, error=message)
    raise AccessNotVerified(message)
