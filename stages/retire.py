"""What the stages that take access away share: one account per task, one user at a time.

``engine.apply`` checks, leases and records the run, and ``engine.account_work`` runs each
account, contained; the disable and delete stages hand an account's users to
:func:`retire_account`, which walks them through the journaled executor.
Before a user's first change in every run, the stage's live preconditions
(``engine.preconditions``) are re-proved; a user they refuse, or whose step fails, stops alone:
the account's other users go on.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from domain.errors import ActionError
from domain.plan import PlanAction
from domain.progress import emit
from engine import preconditions
from engine.stage_run import AccountReport, StageRun, UserWork, users_of
from state.journal import DONE_STATUSES, FAILED

log = logging.getLogger(__name__)

# Users of one account worked on at once. IAM's rate is per account and the session's limiter
# holds every thread to it; a few threads only hide each call's latency.
USER_CONCURRENCY = 4
# Accounts worked on at once outside a Prefect flow: each has its own IAM rate, so more
# accounts at once costs no account anything.
RETIRE_ACCOUNT_CONCURRENCY = 16


def _refuse(report: AccountReport, work: UserWork, reason: str) -> None:
    for action in work.actions:
        report.statuses.setdefault(action.id, "blocked")
    report.errors.append(f"refused {work.key}: {reason}")
    report.refused.append({"account_id": work.account_id, "user": work.user, "reason": reason})
    emit("user-refused", user=work.key, reason=reason)
    log.warning("refused %s: %s", work.key, reason)


def _run_user(rt: StageRun, work: UserWork, report: AccountReport) -> bool:
    """Run a user's actions in order; the first one that fails or waits stops this user."""
    for action in work.actions:
        try:
            report.statuses[action.id] = rt.executor.run(action)
        except ActionError as err:
            # Blocked (a prerequisite is not done), refused by AWS, or a conflict: this
            # user stops here, with the reason; the others go on.
            report.statuses[action.id] = FAILED
            report.errors.append(f"{work.key}: {err}")
            return False
    return True


# -- one user ------------------------------------------------------------------------------------


def retire_user(rt: StageRun, stage: str, work: UserWork, report: AccountReport) -> bool:
    """Re-prove the stage's live preconditions, then run the user's actions in order.

    The checks run before the user's first change in every run — a first run, a resume and a
    Retry alike (``engine.preconditions``); a user whose actions are all done is not re-read.
    """
    if preconditions.pending(rt, work.actions):
        problems = preconditions.user_refusals(rt, stage, work)
        if problems:
            _refuse(report, work, "; ".join(problems))
            return False
    return _run_user(rt, work, report)


# -- per account ---------------------------------------------------------------------------------


def retire_account(
    rt: StageRun, account_id: str, actions: list[PlanAction], stage: str
) -> AccountReport:
    """Run the disable or delete stage for one account's users."""
    report = AccountReport(account_id)
    preconditions.preconditions_of(stage)  # a stage that declares none can't run
    work = users_of(actions)

    def one_user(user: UserWork) -> bool:
        # A dead process (or one that lost its lease) does no more work, not even the reads
        # before a user's first step.
        rt.executor.check_alive()
        return retire_user(rt, stage, user, report)

    with ThreadPoolExecutor(
        max_workers=USER_CONCURRENCY, thread_name_prefix=f"{stage}-{account_id}"
    ) as pool:
        for future in [pool.submit(one_user, user) for user in work]:
            future.result()
    done = sum(1 for a in actions if report.statuses.get(a.id) in DONE_STATUSES)
    log.info("account %s: %s of %s %s actions done", account_id, done, len(actions), stage)
    return report
