"""One run of a plan stage as its per-account work sees it: the runtime, reports, the loops."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.errors import ActionError, ApplyRefused, BlockedError, ConflictError
from domain.plan import Outcome, Plan, PlanAction, UserPlan
from domain.records import AccountInventory
from domain.retire import parse_user
from domain.spec import MigrationSpec
from engine.executor import Executor
from state import Store
from state.journal import FAILED
from tasks.handler import ExecutionContext

# Accounts worked on at once: a Prefect flow's task runner, or the threads outside one.
ACCOUNT_CONCURRENCY = 8


def utc_now() -> datetime:
    """The real time: what "now" is for the bake period unless a test moves it."""
    return datetime.now(UTC)


@dataclass
class AccountReport:
    """What one account's task did: statuses by action, and why it stopped, if it did."""

    account_id: str
    # Left out of the repr: Prefect logs a failed task's state, and the repr is in it.
    statuses: dict[str, str] = field(default_factory=dict, repr=False)
    errors: list[str] = field(default_factory=list, repr=False)
    # Users the stage's live preconditions refused: {account_id, user, reason}.
    refused: list[dict[str, str]] = field(default_factory=list, repr=False)
    # Why the account as a whole failed (its role could not be assumed, a call failed).
    failure: str | None = field(default=None, repr=False)
    # Why the account as a whole was left as it was on purpose (IAM changed since the plan).
    refusal: str | None = field(default=None, repr=False)


class StageRun:
    """What the tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(
        self,
        spec: MigrationSpec,
        store: Store,
        plan: Plan,
        plan_id: int,
        context: Callable[[], ExecutionContext],
    ):
        self.spec = spec
        self.store = store
        self.plan = plan
        self.plan_id = plan_id
        # AWS is first reached when a check or the work needs it: a stage's checks that need
        # no AWS (the delete cap) refuse before any call.
        self._context = context
        self._ctx: ExecutionContext | None = None
        self.executor: Executor | None = None
        # The retire stages' extras (stages.retire): the migration, and what "now" is.
        self.migration_id = 0
        self.spec_path = "SPEC"  # what messages name in a command line (``iamc ... -c``)
        self.clock: Callable[[], datetime] = utc_now
        self._planned: dict[str, AccountInventory] | None = None
        self._actions: dict[str, PlanAction] | None = None
        self._users: dict[tuple[str, str], UserPlan] | None = None
        self._lock = threading.Lock()
        # Account -> why it can't be worked on, as the read-only preflight found it.
        self.account_failures: dict[str, str] = {}
        # On a work pool: who holds the stage's lease, and what sends the accounts to the
        # pool's workers (``engine.apply_batch.spread_accounts``) instead of this process.
        self.lease_holder = ""
        self.spread: Callable[..., list[AccountReport]] | None = None

    @property
    def ctx(self) -> ExecutionContext:
        """The run's AWS context (clients, Identity Center instance), made on first use."""
        if self._ctx is None:
            self._ctx = self._context()
        return self._ctx

    def planned_account(self, account_id: str) -> AccountInventory | None:
        """The account as the plan's inventory snapshot saw it (loaded once, on first use)."""
        with self._lock:
            if self._planned is None:
                self._planned = {
                    inventory.account.account_id: inventory
                    for inventory in self.store.snapshots.load_snapshot(
                        self.plan.inventory_snapshot_id
                    )
                }
        return self._planned.get(account_id)

    def action(self, action_id: str) -> PlanAction | None:
        """One of the plan's actions by id (indexed on first use)."""
        with self._lock:
            if self._actions is None:
                self._actions = {a.id: a for a in self.plan.actions}
        return self._actions.get(action_id)

    def user_plan(self, account_id: str, user: str) -> UserPlan | None:
        """What the plan says of one IAM user (indexed on first use)."""
        with self._lock:
            if self._users is None:
                self._users = {(u.account_id, u.user): u for u in self.plan.users}
        return self._users.get((account_id, user))

    def users_acted_for(self, account_id: str) -> list[str]:
        """The IAM users of an account whose access this plan reproduces or retires."""
        return [
            u.user
            for u in self.plan.users
            if u.account_id == account_id and u.outcome in (Outcome.MIGRATE, Outcome.RETIRE)
        ]


def run_one(rt: StageRun, action: PlanAction, report: AccountReport) -> bool:
    """Run one action; False when its account must stop (it failed)."""
    try:
        report.statuses[action.id] = rt.executor.run(action)
    except ConflictError:
        raise
    except BlockedError as err:
        report.statuses[action.id] = "blocked"
        report.errors.append(str(err))
    except ActionError as err:
        report.statuses[action.id] = FAILED
        report.errors.append(str(err))
        return False
    return True


def run_concurrently(
    rt: StageRun,
    account_id: str,
    actions: list[PlanAction],
    report: AccountReport,
    what: str,
    *,
    stop_on_failure: bool = True,
) -> bool:
    """Run actions on up to ``max_outstanding`` threads; False when one failed.

    The first failure stops the actions not yet started, unless told otherwise (those in
    flight finish and are journaled); the shared sso-admin limiter and the context's
    semaphore of outstanding creations bound what all accounts send together.
    """
    stop = threading.Event()
    failed = threading.Event()

    def work(action: PlanAction) -> None:
        if stop.is_set():
            return
        if not run_one(rt, action, report):
            failed.set()
            if stop_on_failure:
                stop.set()

    workers = max(1, min(rt.ctx.max_outstanding, len(actions)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{what}-{account_id}") as pool:
        futures = [pool.submit(work, action) for action in actions]
        for future in futures:
            future.result()
    return not failed.is_set()


def by_account(actions: list[PlanAction]) -> dict[str, list[PlanAction]]:
    grouped: dict[str, list[PlanAction]] = {}
    for action in actions:
        if action.account_id:
            grouped.setdefault(action.account_id, []).append(action)
    return dict(sorted(grouped.items()))


@dataclass
class UserWork:
    """One user's actions of the stage, in plan order."""

    account_id: str
    user: str
    actions: list[PlanAction] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.account_id}/{self.user}"


def users_of(actions: list[PlanAction]) -> list[UserWork]:
    """Group an account's actions by user, keeping the plan's order within each user."""
    grouped: dict[tuple[str, str], UserWork] = {}
    for action in actions:
        key = (action.account_id or "", action.target)
        grouped.setdefault(key, UserWork(*key)).actions.append(action)
    for work in grouped.values():
        # The quarantine goes on first: from that moment every credential grants nothing.
        work.actions.sort(key=lambda a: a.kind != "attach-quarantine-policy")
    return list(grouped.values())


def refused_by_plan(plan: Any) -> list[str]:
    """Users the plan itself refuses (user-scoped blocking findings), with the reason."""
    return [f"{u.account_id}/{u.user}: {u.reason}" for u in plan.refused_users()]


def entries_of_user(entries: list[Any], user: str, run_id: int) -> list[Any]:
    """The journal rows of one IAM user (``ACCOUNT/NAME``) among a stage's rows.

    Raises:
        ApplyRefused: The stage did nothing to that user.
    """
    account_id, name = parse_user(user)
    found = [
        e
        for e in entries
        if e.account_id == account_id and (e.intent.get("action") or {}).get("target") == name
    ]
    if not found:
        raise ApplyRefused(
            f"run {run_id}'s plan stage did nothing to {user}: no such user in it; nothing "
            "was changed"
        )
    return found


@functools.cache
def prefect_task(work: Callable[..., Any], name: str, run_name: str) -> Any:
    """``work`` as a Prefect task (one per account in the UI), made on first use.

    Prefect is imported when a stage runs in a flow, not when the stage registry is read:
    the read-only commands that list stages (status, plan show, approve) don't pay for it.
    """
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, task_run_name=run_name, cache_policy=NO_CACHE, persist_result=False)(
        work
    )
