"""The key scan's units of work: one code path, or one member account's configuration.

Each returns what it found, what it covered (units) and what it could not read (problems),
never raising for a bad path, an unimplemented source or an unreachable account: the flow
records those and the scan of the rest goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import AwsAccessError
from domain.key_attribution import ScanProblem, aws_unit, code_history_unit, code_unit
from domain.key_findings import ScanResult
from scanner.code_scan import ScanOptions, is_git_repository, scan_paths
from scanner.key_detection import KeyDetector
from state.key_scans import UNIT_SCANNED, ScanUnit
from tasks.aws import AwsSessions, failure_reason
from tasks.aws_config_scan import SOURCES, scan_account

log = logging.getLogger(__name__)


@dataclass
class ScanOutcome:
    """What one unit of work produced."""

    what: str  # "code PATH" or "account ID", for progress lines and task names
    result: ScanResult = field(default_factory=ScanResult)
    units: list[ScanUnit] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # AWS source -> API calls
    seconds: float = 0.0
    failed: str | None = None  # why the account (or a path's git history) could not be scanned

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, for a batch run on a work pool to report through the state DB."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanOutcome:
        """The outcome :meth:`to_dict` wrote (through JSON)."""
        return cls(
            what=data["what"],
            result=ScanResult.from_dict(data["result"]),
            units=[ScanUnit(**unit) for unit in data["units"]],
            problems=[ScanProblem(**problem) for problem in data["problems"]],
            calls=dict(data["calls"]),
            seconds=float(data["seconds"]),
            failed=data["failed"],
        )


def scan_code_path(
    label: str,
    path: Path,
    detector: KeyDetector,
    *,
    history: bool = True,
    problem: str | None = None,
) -> ScanOutcome:
    """Scan one ``[scan] paths`` entry: working tree, archives, and git history.

    Args:
        label: The path as the spec writes it; records name their root by it.
        path: The resolved path.
        detector: The scan's detector (one salt for the whole scan).
        history: Also the git history, if the path is a repository.
        problem: Why the path can't be scanned (it does not exist): recorded, not scanned.

    Returns:
        Hits, look-alikes and skipped items with ``root`` = ``label``; units for the files
        and (a repository) the history; ``failed`` when git refused or failed on the history.
    """
    outcome = ScanOutcome(f"code {label}")
    unit = code_unit(label)
    if problem is not None or not path.exists():
        reason = problem or f"{label}: path does not exist"
        outcome.units.append(ScanUnit(unit, "skipped", reason))
        outcome.problems.append(ScanProblem("skipped", "code", label, reason, label))
        return outcome
    started = time.monotonic()
    raw = scan_paths([path], detector=detector, options=ScanOptions(history=history))
    result = ScanResult(stats=raw.stats)
    result.hits = [replace(h, root=label) for h in raw.hits]
    result.ignored = [replace(i, root=label) for i in raw.ignored]
    result.skipped = [replace(s, root=label) for s in raw.skipped]
    outcome.result = result
    outcome.seconds = time.monotonic() - started
    outcome.units.append(ScanUnit(unit, UNIT_SCANNED, f"{raw.stats.files} files"))
    failures = [s for s in result.skipped if s.failed]
    if history and path.is_dir() and is_git_repository(path):
        # The history is its own unit: when git refuses it, the files still count, and the
        # history findings of the last scan that read it keep counting (as for an account).
        status, detail = UNIT_SCANNED, f"{raw.stats.blobs} blobs"
        if failures:
            status, detail = "failed", "; ".join(s.reason for s in failures)
        outcome.units.append(ScanUnit(code_history_unit(label), status, detail))
    if failures:
        outcome.failed = "; ".join(f"{s.location}: {s.reason}" for s in failures)
        log.info("key scan of %s incomplete: %s", label, outcome.failed)
    for skipped in result.skipped:
        outcome.problems.append(
            ScanProblem(
                "failed" if skipped.failed else "skipped",
                skipped.source or "code",
                skipped.location,
                skipped.reason,
                label,
            )
        )
    return outcome


def scan_member_account(
    sessions: AwsSessions,
    account_id: str,
    detector: KeyDetector,
    regions: list[str],
) -> ScanOutcome:
    """Scan one member account's configuration, source by source, through the member role.

    A source the endpoint does not implement or refuses is a gap (that unit is not "scanned",
    so earlier scans' findings there still count); an account whose role can't be assumed or
    whose credentials are refused fails as a whole.

    Args:
        sessions: The session factory (assumes the member role).
        account_id: The member account.
        detector: The scan's detector.
        regions: Regions to read.

    Returns:
        Hits and look-alikes (look-alikes tagged with the account and region), units per
        (source, region), gaps, and the API calls each source made.
    """
    outcome = ScanOutcome(f"account {account_id}")
    started = time.monotonic()
    try:
        sessions.check_access(account_id)
        session = sessions.for_account(account_id)
        for region in regions:
            for source in SOURCES:
                part = scan_account(
                    session, account_id, detector=detector, sources=[source], regions=[region]
                )
                outcome.result.hits.extend(part.hits)
                outcome.result.ignored.extend(
                    replace(i, account_id=account_id, region=region) for i in part.ignored
                )
                outcome.result.gaps.extend(part.gaps)
                outcome.result.stats.add(part.stats)
                outcome.calls[source] = outcome.calls.get(source, 0) + sum(
                    part.stats.calls.values()
                )
                unit = aws_unit(account_id, source, region)
                if part.gaps:
                    reason = "; ".join(f"{g.operation}: {g.reason}" for g in part.gaps)
                    outcome.units.append(ScanUnit(unit, "gap", reason))
                    for gap in part.gaps:
                        outcome.problems.append(
                            ScanProblem(
                                "gap",
                                source,
                                f"{account_id} / {region} / {source}",
                                f"{gap.operation}: {gap.reason}",
                                account_id=account_id,
                            )
                        )
                else:
                    outcome.units.append(ScanUnit(unit, UNIT_SCANNED, ""))
    except (AwsAccessError, ClientError, BotoCoreError) as err:
        # The account could not be read as a whole (role, credentials, network): its units
        # are failed, so earlier scans' findings there keep counting; the run is incomplete.
        # AWS's code and message ("AssumeRole: AccessDenied: User: ... is not authorized"),
        # the account being named by whoever shows the reason.
        reason = failure_reason(err).removeprefix(f"account {account_id}: ")
        log.warning("key scan of account %s failed: %s", account_id, reason)
        _fail_account(outcome, account_id, regions, reason)
    outcome.seconds = time.monotonic() - started
    return outcome


def _fail_account(outcome: ScanOutcome, account_id: str, regions: list[str], reason: str) -> None:
    """The account's units not read yet are failed, and the account is a failed problem."""
    outcome.failed = reason
    done = {u.unit for u in outcome.units}
    for region in regions:
        for source in SOURCES:
            unit = aws_unit(account_id, source, region)
            if unit not in done:
                outcome.units.append(ScanUnit(unit, "failed", reason))
    outcome.problems.append(
        ScanProblem("failed", "account", account_id, reason, account_id=account_id)
    )


def unscanned_account(account_id: str, regions: list[str], reason: str) -> ScanOutcome:
    """An account nobody reported on (its batch run on the pool never did), failed with why.

    Failed like an account that could not be read: its earlier findings keep counting and the
    scan is incomplete, never complete with a hole.
    """
    outcome = ScanOutcome(f"account {account_id}")
    _fail_account(outcome, account_id, regions, reason)
    return outcome


def unscanned_path(label: str, reason: str, *, history: bool) -> ScanOutcome:
    """A code path nobody reported on, failed with why (as :func:`unscanned_account`).

    Its history unit fails too when histories are scanned: whoever reports this can't tell
    whether the path is a repository where the workers see it, and a unit left out of the run
    would drop the history findings of earlier scans as if the path were gone.
    """
    outcome = ScanOutcome(f"code {label}", failed=reason)
    outcome.units.append(ScanUnit(code_unit(label), "failed", reason))
    if history:
        outcome.units.append(ScanUnit(code_history_unit(label), "failed", reason))
    outcome.problems.append(ScanProblem("failed", "code", label, reason, label))
    return outcome
