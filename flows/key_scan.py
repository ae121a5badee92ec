"""Runbook step 4: find every place an access key is written down, and whose key it is."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import (
    artifact_key,
    publish_markdown,
    publish_table,
    run_logger,
    timing_log,
)
from console.run_names import step_run_name
from domain.errors import NoInventoryError
from domain.key_attribution import (
    KeyFinding,
    OrgView,
    ScanProblem,
    attribute,
    inventory_index,
)
from domain.progress import emit
from domain.spec import MigrationSpec, scan_paths_of
from engine.batches import distributed
from engine.migration import Migration
from flows.key_scan_batch import spread_scan
from flows.key_scan_units import (
    ScanRuntime,
    resolve_organization,
    scan_account_config,
    scan_code,
)
from scanner.key_detection import KeyDetector
from state import Store
from state.key_scans import KEY_SCAN_RUN
from tasks.aws import AwsSessions
from tasks.key_scan import ScanOutcome, unscanned_account


@flow(name="key-scan", flow_run_name=step_run_name("key-scan"), log_prints=False)
def key_scan_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Scan the spec's code paths and every in-scope account's configuration for access keys.

    Args:
        spec_path: The migration spec (TOML) with its ``[scan]`` section.
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, snapshot joined, findings by classification, problems,
        failed accounts, AWS calls per source.
    """
    started = time.perf_counter()
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.runs.start_run(migration_id, KEY_SCAN_RUN, {"spec": str(Path(spec_path))})
        try:
            summary, artifacts = _scan(spec, spec_path, store, migration_id, run_id, profile)
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        incomplete = _incomplete(summary, mig.hint("scan"), mig.hint("runs"))
        if incomplete:
            summary["incomplete"] = incomplete
        # Succeeded even when incomplete: what it did read counts (per unit), what it could not
        # read keeps the findings of the last scan that did; `iamc runs` shows why.
        store.runs.finish_run(run_id, "succeeded", summary=summary, error=incomplete)
    # As operator_step logs it for the other steps (this flow does not wear it).
    timing_log.debug(
        "key-scan: own work %.3f s (flow body), artifacts %.3f s",
        time.perf_counter() - started - artifacts,
        artifacts,
    )
    if incomplete:
        run_logger().warning("%s", incomplete)
        # Completed, read-only, but never passed off as a clean scan: the state says so.
        return Completed(message=incomplete, data=summary)
    return summary


def _incomplete(summary: dict[str, Any], scan_again: str, runs: str) -> str | None:
    """The warning of a scan that could not read everything, and what to do; None if complete."""
    accounts = summary["account_failures"]
    paths = summary.get("paths_failed") or {}
    if not accounts and not paths:
        return None
    lines = [
        f"key scan run {summary['run_id']} is INCOMPLETE: "
        + ", ".join(
            part
            for part in (
                f"{len(accounts)} account(s) not scanned" if accounts else "",
                f"{len(paths)} path(s) not completely scanned" if paths else "",
            )
            if part
        )
        + ". Keys written down there are unknown: it is not a clean scan of them (the "
        "findings of the last scan that read them still count; a part no scan ever read is "
        "a warning in the plan)."
    ]
    lines += [f"  account {a}: {why}" for a, why in accounts.items()]
    lines += [f"  code {p}: {why}" for p, why in paths.items()]
    lines += [
        "",
        "Next, in the Prefect UI: fix the cause named above (e.g. the account's member role), "
        "then press Retry on this flow run: it scans again.",
        f"From a shell: '{scan_again}' scans again; '{runs}' lists every run of this migration.",
    ]
    return "\n".join(lines)


def _scan(
    spec: MigrationSpec,
    spec_path: str,
    store: Store,
    migration_id: int,
    run_id: int,
    profile: str | None,
) -> tuple[dict[str, Any], float]:
    """The scan's summary, and the seconds spent publishing its artifacts."""
    snapshot = store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        raise NoInventoryError(
            f"no inventory yet for migration {spec.name!r}: run 'iamc inventory -c {spec_path}' "
            "first, so found keys can be matched to their owners"
        )
    runtime = ScanRuntime(
        spec,
        AwsSessions.from_spec(spec, profile=profile),
        KeyDetector(),
        scan_paths_of(spec, spec_path),
    )
    # On a work pool every unit goes out in batches (flows.key_scan_batch), once the accounts
    # are known; here the code paths need nothing from AWS: they are scanned while the
    # organization is read.
    spread = distributed()
    code_futures = [
        scan_code.submit(runtime, entry.label, index)
        for index, entry in enumerate(runtime.paths)
        if not spread
    ]
    org, in_scope, org_problem = resolve_organization(runtime)
    accounts = in_scope if spec.scan.aws else []
    emit("scan-scope", units=len(runtime.paths) + len(accounts))
    names = store.snapshots.account_names(snapshot.id)
    labels = {a: f"{a} {names.get(a, '')}".strip() for a in accounts}
    if spread:
        where = str(Path(spec_path).resolve())  # a worker's working directory is not ours
        outcomes = spread_scan(runtime, store, run_id, where, labels, profile)
    else:
        account_futures = [scan_account_config.submit(runtime, a, labels[a]) for a in accounts]
    # The inventory the findings are joined with is read while the scans run.
    latest = inventory_index(store.snapshots.load_snapshot(snapshot.id))
    earlier = store.scans.earlier_key_owners(migration_id, snapshot.id)
    if not spread:
        outcomes = _gathered(runtime, code_futures, account_futures, accounts)

    hits = [hit for outcome in outcomes for hit in outcome.result.hits]
    ignored = [item for outcome in outcomes for item in outcome.result.ignored]
    if not org.accounts:
        # The organization could not be read: the snapshot's accounts are what is in scope.
        org = OrgView(in_scope=frozenset(o.account_id for o in latest.values()))
    findings = attribute(hits, ignored, latest, earlier, org)
    problems = [p for outcome in outcomes for p in outcome.problems]
    if org_problem is not None:
        problems.insert(0, org_problem)
    units = [unit for outcome in outcomes for unit in outcome.units]
    store.scans.save_key_scan(run_id, findings, units, problems)
    summary = _summary(run_id, snapshot.id, outcomes, findings, problems)
    publishing = time.perf_counter()
    _publish(spec, summary, outcomes, findings)
    return summary, time.perf_counter() - publishing


def _gathered(
    runtime: ScanRuntime, code_futures: list[Any], account_futures: list[Any], accounts: list[str]
) -> list[ScanOutcome]:
    """The outcomes of the scan's own task runs: each path's in order, then each account's."""
    for future in [*code_futures, *account_futures]:
        future.wait()
    for index, future in enumerate(code_futures):
        if index not in runtime.code_outcomes:
            future.result()  # the task raised before it had an outcome: raise that
    outcomes = [runtime.code_outcomes[index] for index in range(len(runtime.paths))]
    for account, future in zip(accounts, account_futures, strict=True):
        if account not in runtime.outcomes:
            # Its task raised before it had an outcome (an error the account's scan does not
            # turn into a failure of its own): not scanned, with that reason, as an account
            # that could not be read; the others' outcomes stand and the scan is incomplete.
            why = future.state.message or "its task failed"
            runtime.outcomes[account] = unscanned_account(account, runtime.regions, why)
    return outcomes + [runtime.outcomes[a] for a in accounts]


def _summary(
    run_id: int,
    snapshot_id: int,
    outcomes: list[ScanOutcome],
    findings: list[KeyFinding],
    problems: list[ScanProblem],
) -> dict[str, Any]:
    classes = Counter(f.classification for f in findings)
    org_keys = {f.key_id for f in findings if f.is_org_key}
    users = {(f.owner_account_id, f.owner_user) for f in findings if f.is_org_key}
    calls: Counter[str] = Counter()
    for outcome in outcomes:
        calls.update(outcome.calls)
    accounts = [o for o in outcomes if o.what.startswith("account ")]
    paths = [o for o in outcomes if o.what.startswith("code ")]
    return {
        "run_id": run_id,
        "snapshot_id": snapshot_id,
        "paths": len(paths),
        # {path: why it was not completely scanned}: git refused or failed on its history.
        "paths_failed": {o.what.split(" ", 1)[1]: o.failed for o in paths if o.failed},
        "accounts": len(accounts),
        "accounts_failed": sorted(o.what.split(" ", 1)[1] for o in accounts if o.failed),
        # {account: why it could not be read}: AWS's reason (its role, its credentials).
        "account_failures": {o.what.split(" ", 1)[1]: o.failed for o in accounts if o.failed},
        "findings": dict(sorted(classes.items())),
        "org_keys": len(org_keys),
        "users": len(users),
        "skipped": sum(1 for p in problems if p.kind == "skipped"),
        "gaps": sum(1 for p in problems if p.kind == "gap"),
        "problems": [str(p) for p in problems],
        "calls_by_source": dict(sorted(calls.items())),
        "bytes": sum(o.result.stats.bytes + o.result.stats.blob_bytes for o in outcomes),
    }


def _publish(
    spec: MigrationSpec,
    summary: dict[str, Any],
    outcomes: list[ScanOutcome],
    findings: list[KeyFinding],
) -> None:
    """Artifacts for the UI: one row per code path and account, and the org keys (masked)."""
    key = artifact_key(spec.name, "key-scan")
    rows = []
    for outcome in outcomes:
        rows.append(
            {
                "scanned": outcome.what,
                "status": "FAILED" if outcome.failed else "scanned",
                "reason": outcome.failed or "",
                "hits": len(outcome.result.hits),
                "look-alikes": len(outcome.result.ignored),
                "skipped or gaps": len(outcome.problems),
                "AWS calls": sum(outcome.calls.values()),
                "seconds": round(outcome.seconds, 2),
            }
        )
    failed = len(summary["accounts_failed"]) + len(summary.get("paths_failed") or {})
    publish_table(
        key,
        rows,
        f"Key scan run {summary['run_id']} of {spec.name}"
        + (f": **INCOMPLETE, {failed} not (completely) scanned**" if failed else ""),
    )
    lines = [
        f"# Key scan run {summary['run_id']} of `{spec.name}`",
        "",
        f"Joined with inventory snapshot {summary['snapshot_id']}: "
        + ", ".join(f"{k} {v}" for k, v in summary["findings"].items()),
        "",
        "| Classification | Key | Owner | Where |",
        "|---|---|---|---|",
    ]
    for finding in findings:
        if finding.is_org_key:
            owner = f"{finding.owner_account_id} / {finding.owner_user}"
            where = finding.where().replace("|", "\\|")
            lines.append(f"| {finding.classification} | {finding.masked_key} | {owner} | {where} |")
    lines += ["", *[f"- {p}" for p in summary["problems"]]]
    publish_markdown(
        artifact_key(spec.name, "key-scan-findings"),
        "\n".join(lines),
        f"Keys of the organization found by key scan run {summary['run_id']} of {spec.name}",
    )


def run_key_scan(spec_path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """Run the key-scan flow with the spec's concurrency (accounts and paths at once)."""
    # Opened here, handed on to the flow run (engine.migration): one load per command.
    with Migration.open(spec_path) as mig:
        spec = mig.spec
        runner = ThreadPoolTaskRunner(max_workers=spec.scan.concurrency)
        return key_scan_flow.with_options(task_runner=runner)(str(spec_path), profile)
