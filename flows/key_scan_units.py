"""The key scan's Prefect tasks: the organization, one code path, one account's configuration.

Shared by the flow's own threads (``flows.key_scan``) and by its batch runs on a work pool's
workers (``flows.key_scan_batch``), so a unit reads and shows the same wherever it runs.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from console.operator import run_logger
from domain.errors import AwsAccessError, UnknownAccountError
from domain.key_attribution import OrgView, ScanProblem
from domain.progress import emit
from domain.spec import MigrationSpec, ScanPath
from scanner.key_detection import KeyDetector
from tasks.aws import AwsSessions
from tasks.key_scan import ScanOutcome, scan_code_path, scan_member_account
from tasks.organizations import read_organization, select_accounts


class ScanRuntime:
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


@task(name="resolve-organization", cache_policy=NO_CACHE, persist_result=False)
def resolve_organization(runtime: ScanRuntime) -> tuple[OrgView, list[str], ScanProblem | None]:
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
def scan_code(runtime: ScanRuntime, label: str, index: int) -> ScanOutcome | State:
    """One spec path: working tree (ignored files too), archives, whole git history.

    Ends Failed (red in the UI) when git refused the repository or failed on its history;
    the flow still records the files and the rest of the scan.
    """
    entry = runtime.paths[index]
    logger = run_logger()
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
def scan_account_config(
    runtime: ScanRuntime, account_id: str, label: str = ""
) -> ScanOutcome | State:
    """One member account through the member role: Lambda, ECS, EC2, SSM, CFN, CodeBuild.

    Ends Failed (red in the UI) with AWS's reason when the account could not be read at all
    (its role can't be assumed, its credentials are refused); the flow still records the
    rest of the scan, and says the scan is incomplete.
    """
    logger = run_logger()
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
