"""Runbook step after verify: write the notices that tell each migrated person what changed.

Per person a Markdown message and an ``.eml`` file, and one ``notices.csv`` for mail merge
(``domain.notices``): the access portal URL, the accounts and permission sets they now have, and
the dates their old IAM users will be disabled (``[notify] notice_days`` from today) and deleted
(``[decommission] bake_days`` after that). Nothing is sent. Recorded as a ``notify`` run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow

from console.operator import (
    artifact_key,
    flow_run_id,
    operator_step,
    publish_table,
    resolve_plan_id,
    run_logger,
)
from console.run_names import step_run_name
from domain.notices import NoticeContext, notices_from_plan, portal_url, write_notices
from domain.plan import Plan
from domain.runs import NOTIFY_RUN
from engine.migration import Migration
from engine.progress import account_names
from engine.reports import get_plan_info, latest_mapping


@flow(name="notify", flow_run_name=step_run_name("notify"), log_prints=False, persist_result=False)
@operator_step("notify")
def notify_flow(
    spec_path: str, plan_id: int | None = None, out_dir: str | None = None
) -> dict[str, Any]:
    """Write the notices for the people a provisioned plan migrated; send nothing.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: The provisioned plan; empty: the migration's latest plan.
        out_dir: Where to write them; empty: the spec's [notify] out_dir / plan id.

    Returns:
        The run's summary: people, files written, the disable and delete dates.
    """
    plan_id = resolve_plan_id(spec_path, plan_id)
    with Migration.open(spec_path) as mig:
        summary, rows, ctx, target = _write_notices(mig, plan_id, out_dir)
    run_id = summary["run_id"]
    publish_table(
        artifact_key(mig.spec.name, "notify", summary["wave"]),
        [
            {k: r[k] for k in ("name", "email", "accounts", "disable_on", "delete_on", "eml_file")}
            for r in rows
        ],
        f"**Notices of plan {plan_id}** (notify run {run_id}): {len(rows)} people, written to "
        f"`{target}` (mail merge: `notices.csv`); nothing was sent. Portal: {ctx.portal_url}. "
        f"Old IAM users disabled on {ctx.disable_on}, deleted on {ctx.delete_on}.",
    )
    return summary


def _write_notices(
    mig: Migration, plan_id: int, out_dir: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]], NoticeContext, Path]:
    """Write the plan's notices under a ``notify`` run: (summary, rows, context, directory)."""
    spec, store, spec_path = mig.spec, mig.store, mig.spec_path
    logger = run_logger()
    mapping, _, meta = latest_mapping(mig)
    store_id = (meta["summary"] or {}).get("identity_store_id") or "d-unknown"
    today = datetime.now(UTC).date()
    disable_on = today + timedelta(days=spec.notify.notice_days)
    ctx = NoticeContext(
        migration=spec.name,
        portal_url=portal_url(spec.notify.portal_url, store_id),
        disable_on=disable_on,
        delete_on=disable_on + timedelta(days=spec.decommission.bake_days),
        sender=spec.notify.sender,
    )
    target = Path(out_dir) if out_dir else Path(spec_path).parent / spec.notify.out_dir
    target = target / str(plan_id) if not out_dir else target
    plan = Plan.from_content(get_plan_info(store, spec.name, plan_id).content)
    migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
    run_id = store.runs.start_run(
        migration_id,
        NOTIFY_RUN,
        {"spec": spec_path, "plan_id": plan_id, "prefect_flow_run_id": flow_run_id()},
    )
    try:
        notices = notices_from_plan(plan, mapping.identity_users, account_names(mig))
        rows = write_notices(notices, ctx, target, today)
    except BaseException as err:
        store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
        raise
    for row in rows:
        logger.info(
            "notice for %s <%s>: %s",
            row["user_name"],
            row["email"] or "no e-mail",
            row["accounts"],
        )
    summary = {
        "run_id": run_id,
        "plan_id": plan_id,
        "wave": plan.wave_name,
        "people": len(rows),
        "without_email": sum(1 for r in rows if not r["email"]),
        "disable_on": ctx.disable_on.isoformat(),
        "delete_on": ctx.delete_on.isoformat(),
        "out_dir": str(target),
        "csv": str(target / "notices.csv"),
    }
    store.runs.finish_run(run_id, "succeeded", summary=summary)
    return summary, rows, ctx, target
