"""After provisioning, any time: has what the migration created or adopted drifted, and the
plan that puts it back.

One task reads the permission sets (``drift permission sets``), then one task per account
(``drift 893263693528``): each set provisioned there at its latest definition, each
assignment present. An account that can't be read ends Failed with AWS's reason and the
others go on; the plan and the artifact then say which accounts were not read. Reads only;
recorded as a ``drift`` run. The plan is stored like any plan and approved and applied like
one (stage ``provision``).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import artifact_key, flow_run_id, operator_step, run_logger
from console.run_names import step_run_name
from domain.drift import DriftRead, drift_markdown
from domain.runs import DRIFT_RUN
from domain.waves import Owned
from engine.account_steps import AccountFailure, account_task_result, failures_text
from engine.account_work import settle
from engine.apply import stage_context
from engine.drift import SetsRead, read_account, read_sets, store_drift_plan, what_we_own
from engine.migration import Migration
from flows.plan import write_plan_files
from tasks.handler import ExecutionContext

MANAGEMENT = "management"


class _Runtime:
    """What the tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, ctx: ExecutionContext, ours: Owned):
        self.ctx = ctx
        self.ours = ours
        self.arns: dict[str, str] = {}


@task(
    name="drift-sets",
    task_run_name="drift permission sets",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def drift_sets(rt: _Runtime) -> Any:
    """Every set of ours against its recorded definition (management account)."""
    found = account_task_result(MANAGEMENT, "permission sets", lambda: read_sets(rt.ctx, rt.ours))
    if isinstance(found, SetsRead):
        run_logger().info(
            "%d permission set(s) read, %d drifted", len(rt.ours.sets), len(found.findings)
        )
    return found


@task(
    name="drift-account",
    task_run_name="drift {account_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def drift_account(rt: _Runtime, account_id: str) -> Any:
    """Ends Failed with AWS's reason when the account could not be read (its role, its calls)."""
    found = account_task_result(
        account_id, account_id, lambda: read_account(rt.ctx, rt.ours, account_id, rt.arns)
    )
    if isinstance(found, list):
        run_logger().info("%s: %d drift(s)", account_id, len(found))
    return found


@flow(
    name="drift",
    flow_run_name=step_run_name("drift"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=8),
)
@operator_step("drift")
def drift_flow(spec_path: str, out_dir: str | None = None) -> Any:
    """Compare what the migration created or adopted with AWS; store the plan that puts it back.

    Args:
        spec_path: The migration spec (TOML).
        out_dir: Where to write plan.md, plan.json and assignments.csv (default
            ``plans/<plan id>`` beside the spec).

    Returns:
        The run's summary: drift found, the plan id (None: nothing to put back), accounts
        not read (and why).
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        spec.identity_center_only("iamc drift", "drift check")
        migration_id, ours = what_we_own(mig)
        run_id = store.runs.start_run(
            migration_id, DRIFT_RUN, {"spec": spec_path, "prefect_flow_run_id": flow_run_id()}
        )
        try:
            read = _read(_Runtime(stage_context(spec, mig.spec_path, None), ours))
            stored = store_drift_plan(mig, run_id, migration_id, ours, read)
            files: dict[str, str] = {}
            if stored is not None:
                target = Path(out_dir) if out_dir else mig.directory / "plans" / str(stored.plan_id)
                files = write_plan_files(
                    stored.plan,
                    stored.meta,
                    target,
                    content=stored.content,
                    markdown=stored.markdown,
                )
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        summary = _summary(run_id, read, stored, files)
        message = _incomplete(run_id, read, mig.hint("drift"))
        create_markdown_artifact(
            key=artifact_key(spec.name, "drift"),
            markdown=stored.markdown if stored else drift_markdown(read),
            description=f"Drift run {run_id} of {spec.name}",
        )
        store.runs.finish_run(run_id, "succeeded", summary=summary, error=message)
    if message:
        from prefect.states import Completed

        run_logger().warning("%s", message)
        return Completed(message=message, data=summary)
    return summary


def _read(rt: _Runtime) -> DriftRead:
    """The sets, then every account of ours, each contained."""
    # To the microsecond: apply compares it with the journal's steps of other plans
    # (engine.apply.check_drift_current), and a wave applied the same second is not newer.
    read = DriftRead(read_at=datetime.now(UTC).isoformat())
    accounts = rt.ours.accounts()
    sets = settle(drift_sets.submit(rt))
    if isinstance(sets, AccountFailure):
        read.sets_read = False
        why = f"the permission sets could not be read: {sets.reason}"
        read.not_read = {a: why for a in accounts}
        return read
    read.findings += sets.findings
    read.live, rt.arns = sets.changed, sets.arns
    futures = {a: drift_account.submit(rt, a) for a in accounts}
    for account_id, future in futures.items():
        outcome = settle(future)
        if isinstance(outcome, AccountFailure):
            read.not_read[account_id] = outcome.reason
        else:
            read.accounts_read.append(account_id)
            read.findings += outcome
    return read


def _summary(run_id: int, read: DriftRead, stored: Any, files: dict[str, str]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "drift": len(read.findings),
        "kinds": dict(sorted(Counter(str(f.kind) for f in read.findings).items())),
        "findings": [f.text() for f in read.findings],
        "complete": read.complete,
        "accounts_read": len(read.accounts_read),
        "accounts_not_read": dict(read.not_read),
        "plan_id": stored.plan_id if stored else None,
        "hash": stored.hash if stored else None,
        "actions": len(stored.plan.actions) if stored else 0,
        "files": files,
    }


def _incomplete(run_id: int, read: DriftRead, again: str) -> str | None:
    if read.complete:
        return None
    failures = [AccountFailure(a, a, why) for a, why in sorted(read.not_read.items())]
    return (
        f"drift run {run_id} is INCOMPLETE: {len(failures)} account(s) not read, their drift "
        "is unknown and not in any plan:\n  "
        + failures_text(failures)
        + f"\nFix the cause, then press Retry on this flow run, or run '{again}' again."
    )


def run_drift(spec_path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the drift flow (what ``iamc drift`` does); its summary, partial or not."""
    result = drift_flow(str(spec_path), None if out_dir is None else str(out_dir))
    # A partial read ends as a Completed state carrying the summary.
    return result if isinstance(result, dict) else result.data
