"""Runbook step 4: find every place an access key is written down, and whose key it is."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import artifact_key, publish_markdown, publish_table, timing_log
from console.run_names import step_run_name
from domain.errors import AwsAccessError, NoInventoryError, UnknownAccountError
from domain.key_attribution import (
    KeyFinding,
    OrgView,
    ScanProblem,
    attribute,
    inventory_index,
)
from domain.progress import emit
from domain.spec import MigrationSpec, ScanPath, scan_paths_of
from engine.migration import Migration
from scanner.key_detection import KeyDetector
from state import Store
from state.key_scans import KEY_SCAN_RUN
from tasks.aws import AwsSessions
from tasks.key_scan import ScanOutcome, scan_code_path, scan_member_account
from tasks.organizations import read_organization, select_accounts

log = logging.getLogger(__name__)


class _Runtime:
    """What every scan task shares. A plain class, so Prefect does not walk or hash it.

    It holds the detector, and so the scan's salt: it must never become a task parameter
    that Prefect could record.
    """

    def __init__(
        self,
        spec: MigrationSpec,
        sessions: AwsSessions,
        detector: KeyDetector,
        paths: list[ScanPath],
    ):
        self.spec = spec
        self.sessions = sessions
        self.detector = detector
        self.paths = paths
        self.regions = list(spec.scan.regions) or [spec.region]
        # Outcomes by account and by path index, kept here so a failed account's (or git
        # history's) task can end Failed (red in the UI, one message, no traceback) while the
        # flow still records what it found.
        self.outcomes: dict[str, ScanOutcome] = {}
        self.code_outcomes: dict[int, ScanOutcome] = {}


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # outside a run (a test calling a task's .fn)
        return log


@task(name="resolve-organization", cache_policy=NO_CACHE, persist_result=False)
def resolve_organization(runtime: _Runtime) -> tuple[OrgView, list[str], ScanProblem | None]:
    """The organization's accounts and the in-scope ones; unreadable is a gap for a code scan."""
    try:
        # Every account, not only the scope's: a key of another account is told apart.
        tree = read_organization(
            runtime.sessions.management(), runtime.spec.scope, every_account=True
        )
        scoped = select_accounts(tree, runtime.spec.scope)
    except (AwsAccessError, UnknownAccountError) as err:
        if runtime.spec.scan.aws:
            raise
        problem = ScanProblem(
            "gap",
            "organizations",
            "organization",
            f"{err}: keys of accounts outside the inventory can't be told apart",
        )
        return OrgView(), [], problem
    in_scope = [a.account_id for a in scoped.in_scope]
    view = OrgView(
        accounts=frozenset(tree.accounts),
        in_scope=frozenset(in_scope),
        management_account_id=tree.management_account_id,
    )
    return view, in_scope, None


@task(
    name="scan-code",
    task_run_name="scan code {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def scan_code(runtime: _Runtime, label: str, index: int) -> ScanOutcome | State:
    """One spec path: working tree (ignored files too), archives, whole git history.

    Ends Failed (red in the UI) when git refused the repository or failed on its history;
    the flow still records the files and the rest of the scan.
    """
    entry = runtime.paths[index]
    logger = _logger()
    if entry.problem:
        logger.warning("%s", entry.problem)
    outcome = scan_code_path(
        label,
        entry.path,
        runtime.detector,
        history=runtime.spec.scan.history,
        problem=entry.problem,
    )
    stats = outcome.result.stats
    logger.info(
        "code %s: %d files (%.1f MB), %d history blobs: %d key hits, %d look-alikes, %d skipped",
        label,
        stats.files,
        stats.bytes / 1e6,
        stats.blobs,
        len(outcome.result.hits),
        len(outcome.result.ignored),
        len(outcome.result.skipped),
    )
    runtime.code_outcomes[index] = outcome
    emit("scan-unit-done", what=outcome.what, hits=len(outcome.result.hits))
    if outcome.failed:
        logger.error("code %s: not completely scanned: %s", label, outcome.failed)
        return Failed(message=f"code {label} not completely scanned: {outcome.failed}")
    return outcome


@task(
    name="scan-account",
    task_run_name="scan account {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def scan_account_config(runtime: _Runtime, account_id: str, label: str = "") -> ScanOutcome | State:
    """One member account through the member role: Lambda, ECS, EC2, SSM, CFN, CodeBuild.

    Ends Failed (red in the UI) with AWS's reason when the account could not be read at all
    (its role can't be assumed, its credentials are refused); the flow still records the
    rest of the scan, and says the scan is incomplete.
    """
    logger = _logger()
    label = label or account_id
    outcome = scan_member_account(runtime.sessions, account_id, runtime.detector, runtime.regions)
    runtime.outcomes[account_id] = outcome
    emit("scan-unit-done", what=outcome.what, hits=len(outcome.result.hits))
    if outcome.failed:
        logger.error("account %s: not scanned: %s", label, outcome.failed)
        return Failed(message=f"account {label} not scanned: {outcome.failed}")
    logger.info(
        "account %s: %d key hits, %d look-alikes, %d gaps, %d calls in %.1f s",
        label,
        len(outcome.result.hits),
        len(outcome.result.ignored),
        len(outcome.result.gaps),
        sum(outcome.calls.values()),
        outcome.seconds,
    )
    return outcome


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
        _logger().warning("%s", incomplete)
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
    runtime = _Runtime(
        spec,
        AwsSessions.from_spec(spec, profile=profile),
        KeyDetector(),
        scan_paths_of(spec, spec_path),
    )
    # The code paths need nothing from AWS: they are scanned while the organization is read.
    code_futures = [
        scan_code.submit(runtime, entry.label, index) for index, entry in enumerate(runtime.paths)
    ]
    org, in_scope, org_problem = resolve_organization(runtime)
    accounts = in_scope if spec.scan.aws else []
    emit("scan-scope", units=len(runtime.paths) + len(accounts))
    names = store.snapshots.account_names(snapshot.id)
    account_futures = [
        scan_account_config.submit(runtime, a, f"{a} {names.get(a, '')}".strip()) for a in accounts
    ]
    # The inventory the findings are joined with is read while the scans run.
    latest = inventory_index(store.snapshots.load_snapshot(snapshot.id))
    earlier = store.scans.earlier_key_owners(migration_id, snapshot.id)
    for future in [*code_futures, *account_futures]:
        future.wait()
    for index, future in enumerate(code_futures):
        if index not in runtime.code_outcomes:
            future.result()  # the task raised before it had an outcome: raise that
    outcomes = [runtime.code_outcomes[index] for index in range(len(runtime.paths))]
    outcomes += [runtime.outcomes[a] for a in accounts]

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
