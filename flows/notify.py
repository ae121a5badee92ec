"""Runbook step after verify: write the notices that tell each migrated person what changed.

Per person a Markdown message and an ``.eml`` file, and one ``notices.csv`` for mail merge
(``domain.notices``): the access portal URL (central-roles: the central account's sign-in, and
per account and role a switch-role link and an ``~/.aws/config`` profile), the accounts and
permission sets they now have, and
the dates their old IAM users will be disabled (``[notify] notice_days`` from today) and deleted
(``[decommission] bake_days`` after that). Per workload owner, the hand-off
(``domain.workload_handoff``): ``workloads/<owner>.md`` with each workload's role ARN, what to
change in its runtime, where its key is written down, and when the user is disabled, plus
``workloads/workloads.csv``; a Markdown artifact shows them. Recorded as a ``notify`` run.

Nothing is sent unless asked: with ``send`` (``iamc notify --send``) each notice's ``.eml`` is
mailed through ``[notify.smtp]`` (``engine.notice_mail``), every recipient journaled before and
after, so a re-run never mails anyone the same notice twice. Without it, the run says who
would be mailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from console.operator import (
    artifact_key,
    flow_run_id,
    in_flow_run,
    operator_step,
    publish_markdown,
    publish_table,
    resolve_plan_id,
    run_logger,
)
from console.run_names import step_run_name
from domain.errors import AccessNotVerified, MailFailed
from domain.notice_mail import REPORT_UNKNOWN, SENT, read_outgoing
from domain.notices import (
    NoticeContext,
    central_of,
    central_sign_in_url,
    notices_from_plan,
    portal_url,
    write_notices,
)
from domain.plan import Plan
from domain.runs import NOTIFY_RUN
from domain.workload_cutover import cutover_inactive_days
from domain.workload_handoff import (
    HandoffContext,
    handoffs_from_plan,
    render_owner,
    write_handoffs,
)
from domain.workload_spec import workloads_by_user
from engine.account_steps import unprovisioned_accounts
from engine.migration import Migration
from engine.notice_mail import ALREADY_SENT, WOULD_SEND, MailIds, MailReport, mail_notices
from engine.progress import account_names
from engine.reports import get_plan_info, latest_mapping


@flow(name="notify", flow_run_name=step_run_name("notify"), log_prints=False, persist_result=False)
@operator_step("notify")
def notify_flow(
    spec_path: str,
    plan_id: int | None = None,
    out_dir: str | None = None,
    send: bool = False,
    unknown: Literal["report", "resend", "mark-sent"] = REPORT_UNKNOWN,
) -> dict[str, Any]:
    """Write the notices for the people a provisioned plan migrated; mail them with ``send``.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: The provisioned plan; empty: the migration's latest plan.
        out_dir: Where to write them; empty: the spec's [notify] out_dir / plan id.
        send: Mail each notice through the spec's [notify.smtp] (credentials from the
            environment variables it names); off: nothing is sent, the run says who would be.
        unknown: A notice whose mailing has no recorded outcome (a run died mid-send): report
            it and fail (the default), resend it, or mark-sent once the mail log shows it.

    Returns:
        The run's summary: people, files written, the disable and delete dates, and (with
        [notify.smtp]) what was mailed or would be.
    """
    plan_id = resolve_plan_id(spec_path, plan_id)
    with Migration.open(spec_path) as mig:
        written = _write_notices(mig, plan_id, out_dir)
        mailed = _mail(mig, written, send, unknown)
        _finish(mig, written, mailed)
    return written.summary


@dataclass
class _Written:
    """What one notify run wrote, before its run is finished."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    ctx: NoticeContext
    target: Path
    migration_id: int
    waiting: list[Any]
    held: dict[str, str]

    @property
    def run_id(self) -> int:
        return self.summary["run_id"]


def _sign_in(ctx: NoticeContext) -> str:
    if ctx.central is None:
        return f"Portal: {ctx.portal_url}"
    where = f" ({ctx.portal_url})" if ctx.portal_url else ""
    return f"Sign-in: switch roles from the central account {ctx.central.account}{where}"


def _write_notices(mig: Migration, plan_id: int, out_dir: str | None) -> _Written:
    """Write the plan's notices under a ``notify`` run, left running for the mail to finish."""
    spec, store, spec_path = mig.spec, mig.store, mig.spec_path
    logger = run_logger()
    mapping, _, meta = latest_mapping(mig)
    store_id = (meta["summary"] or {}).get("identity_store_id") or "d-unknown"
    today = datetime.now(UTC).date()
    disable_on = today + timedelta(days=spec.notify.notice_days)
    target = Path(out_dir) if out_dir else Path(spec_path).parent / spec.notify.out_dir
    target = target / str(plan_id) if not out_dir else target
    plan = Plan.from_content(get_plan_info(store, spec.name, plan_id).content)
    # The plan says where its access landed: people of a central-roles plan switch roles.
    central = central_of(plan.settings)
    ctx = NoticeContext(
        migration=spec.name,
        portal_url=(
            central_sign_in_url(central, spec.notify.portal_url)
            if central is not None
            else portal_url(spec.notify.portal_url, store_id)
        ),
        disable_on=disable_on,
        delete_on=disable_on + timedelta(days=spec.decommission.bake_days),
        sender=spec.notify.mail_from,  # the .eml files' From: is the one they are mailed from
        central=central,
        region=spec.region,
    )
    migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
    run_id = store.runs.start_run(
        migration_id,
        NOTIFY_RUN,
        {"spec": spec_path, "plan_id": plan_id, "prefect_flow_run_id": flow_run_id()},
    )
    try:
        names = account_names(mig)
        # An account whose access did not land (its provisioning failed or is unfinished):
        # nobody with access there is told it is ready; they are told once it is.
        held = unprovisioned_accounts(store, plan, plan_id)
        notices = notices_from_plan(plan, mapping.identity_users, names)
        ready = [n for n in notices if not set(n.accounts) & set(held)]
        rows = write_notices(ready, ctx, target, today)
        handed = _write_handoffs(mig, plan, migration_id, target, disable_on)
        _account_tasks(plan, names, held)
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
        "workloads": len(handed),
        "workload_owners": len({r["owner"] for r in handed}),
    }
    if handed:
        summary["workloads_csv"] = str(target / "workloads" / "workloads.csv")
    waiting = [n for n in notices if n not in ready]
    return _Written(summary, rows, ctx, target, migration_id, waiting, held)


def _write_handoffs(
    mig: Migration, plan: Plan, migration_id: int, target: Path, disable_on: Any
) -> list[dict[str, Any]]:
    """Write each workload owner's hand-off and publish them as one Markdown artifact."""
    spec, store = mig.spec, mig.store
    records = {
        (inventory.account.account_id, user.name): user
        for inventory in store.snapshots.load_snapshot(plan.inventory_snapshot_id)
        for user in inventory.users
    }
    # The spec's [[workloads]] entries may name an owner (the user's owner tag comes first).
    declared = {key: w.owner for key, w in workloads_by_user(spec.workloads).items() if w.owner}
    findings, _ = store.scans.current_key_findings(migration_id)
    handoffs = handoffs_from_plan(plan, records, declared, findings)
    ctx = HandoffContext(
        migration=spec.name,
        disable_on=disable_on,
        inactive_days=cutover_inactive_days(plan.settings, spec.decommission.inactive_days),
        region=spec.region,
        spec_path=mig.spec_path,
    )
    rows = write_handoffs(handoffs, ctx, target)
    for row in rows:
        run_logger().info(
            "hand-off to %s: %s/%s (%s) -> %s",
            row["owner"],
            row["account_id"],
            row["user"],
            row["runtime"],
            row["role_arn"],
        )
    if rows:
        owners = sorted({h.owner for h in handoffs})
        publish_markdown(
            artifact_key(spec.name, "notify-workloads", plan.wave_name),
            "\n\n".join(
                render_owner(o, [h for h in handoffs if h.owner == o], ctx) for o in owners
            ),
            f"Workload hand-offs of plan: {len(rows)} workload(s), {len(owners)} owner(s), "
            f"written to `{target / 'workloads'}` (mail merge: `workloads.csv`); nothing was sent.",
        )
    return rows


def _held_back(mig: Migration, written: _Written) -> str:
    """Add the held-back people to the table's rows; return the run's failure message."""
    summary, held, waiting = written.summary, written.held, written.waiting
    summary["accounts_failed"] = held
    summary["held_back"] = len(waiting)
    for notice in waiting:
        accounts = sorted(set(notice.accounts) & set(held))
        written.rows.append(
            {
                "name": notice.display_name,
                "email": notice.email or "",
                "accounts": ", ".join(sorted(notice.accounts)),
                "disable_on": "",
                "delete_on": "",
                "eml_file": "FAILED: held back: "
                + "; ".join(f"account {a}: {held[a]}" for a in accounts),
            }
        )
    return (
        f"notify run {written.run_id}: {summary['people']} notice(s) written, {len(waiting)} "
        f"held back: the access of {len(held)} account(s) did not land, so their people are not "
        "told it is ready. Fix the cause, finish the provisioning (press Retry on its apply "
        f"flow run; '{mig.hint('runs')}' shows the run to resume), then notify again:\n  "
        + "\n  ".join(f"account {a}: {why}" for a, why in held.items())
    )


def _mail(mig: Migration, written: _Written, send: bool, unknown: str) -> MailReport | None:
    """Mail the written notices (``send``) or say who would be mailed; None without
    [notify.smtp] and ``send`` (the notices are for a mail merge)."""
    if not send and mig.spec.notify.smtp is None:
        return None
    logger = run_logger()
    try:
        outgoing = [
            read_outgoing(Path(row["eml_file"]), row["user_name"], row["name"])
            for row in written.rows
        ]
        ids = MailIds(written.migration_id, written.summary["plan_id"], written.run_id)
        report = mail_notices(mig.store, ids, outgoing, mig.spec.notify, send=send, unknown=unknown)
    except Exception as err:
        # A crash (the process killed) leaves the run running, as it would; an error ends it.
        mig.store.runs.finish_run(written.run_id, "failed", error=str(err))
        raise
    by_notice: dict[str, list[str]] = {}
    for d in report.deliveries:
        logger.info(
            "mail to %s <%s>: %s%s",
            d.notice,
            d.recipient,
            d.status,
            f": {d.detail}" * bool(d.detail),
        )
        by_notice.setdefault(d.notice, []).append(
            d.status
            if d.status in ("sent", "already sent", "would send")
            else f"{d.status.upper()}: {d.detail}"
        )
    for row in written.rows:
        row["mail"] = "; ".join(by_notice.get(row["user_name"], ["no e-mail address"]))
    written.summary["mail"] = report.summary()
    return report


def _mail_sentence(report: MailReport | None) -> str:
    """What the run did about mail, for the table's description."""
    if report is None:
        return "nothing was sent (no [notify.smtp] in the spec)"
    if not report.send:
        return (
            f"nothing was sent: {len(report.of(WOULD_SEND))} would be mailed through "
            f"{report.where} with send (iamc notify --send)"
        )
    return (
        f"mailed through {report.where}: {len(report.of(SENT))} sent, "
        f"{len(report.of(ALREADY_SENT))} already sent, "
        f"{len(report.deliveries) - len(report.of(SENT, ALREADY_SENT))} not"
    )


def _finish(mig: Migration, written: _Written, report: MailReport | None) -> None:
    """Publish the table, finish the run, and raise when a notice is held back or not mailed.

    Raises:
        AccessNotVerified: Some notices were held back (their accounts' access did not land).
        MailFailed: A notice was refused by the server, or its mailing's outcome is unknown.
    """
    summary, ctx = written.summary, written.ctx
    problems = [_held_back(mig, written)] if written.held else []
    send_again = mig.hint(f"notify {summary['plan_id']} --send")
    if report is not None and (mailing := report.problem(send_again)):
        problems.append(mailing)
    message = "\n".join(problems) or (
        f"**Notices of plan {summary['plan_id']}** (notify run {written.run_id}): "
        f"{summary['people']} people, written to `{written.target}` (mail merge: "
        f"`notices.csv`); {_mail_sentence(report)}. {_sign_in(ctx)}. Old IAM users disabled "
        f"on {ctx.disable_on}, deleted on {ctx.delete_on}."
    )
    publish_table(
        artifact_key(mig.spec.name, "notify", summary["wave"]), _table_rows(written.rows), message
    )
    if not problems:
        mig.store.runs.finish_run(written.run_id, "succeeded", summary=summary)
        return
    mig.store.runs.finish_run(written.run_id, "failed", summary=summary, error=message)
    raise (AccessNotVerified if written.held else MailFailed)(message)


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("name", "email", "accounts", "disable_on", "delete_on", "eml_file")
    return [{**{k: r[k] for k in keys}, "mail": r.get("mail", "")} for r in rows]


def _account_tasks(plan: Plan, names: dict[str, str], held: dict[str, str]) -> None:
    """One task per account (red where its access did not land), for the UI's task list."""
    if not in_flow_run():
        return
    accounts = sorted({u.account_id for u in plan.users if u.outcome == "migrate"})
    for account_id in accounts:
        label = f"{account_id} {names.get(account_id, '')}".strip()
        notify_account.submit(label, held.get(account_id)).wait()


@task(name="notify-account", task_run_name="notify {label}", cache_policy=NO_CACHE)
def notify_account(label: str, held: str | None) -> Any:
    """Failed, with the reason, when the account's access did not land (its notices wait)."""
    from prefect.states import Failed

    if held:
        run_logger().error("%s: notices held back: %s", label, held)
        return Failed(message=f"{label}: notices held back: {held}")
    run_logger().info("%s: access landed; notices written", label)
    return None
