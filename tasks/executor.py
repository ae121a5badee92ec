"""The one executor every mutating plan action runs through, journaled step by step.

For each action: read the journal (a done action is skipped); read live state; write the
intent — with whether the thing already existed — and commit it *before* calling AWS; call
the handler; record the outcome and what undoes it. A row left ``started`` by a process that
died is reconciled from live state before anything is re-sent: handlers converge from what
exists, so a resume never creates a second copy. Prefect's caching is not relied on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3

from domain.errors import ActionError, BlockedError, ConflictError, IamcError
from domain.plan import PlanAction
from state.journal import (
    ADOPTED,
    DONE_STATUSES,
    FAILED,
    ROLLBACK_PREFIX,
    ROLLED_BACK,
    SUCCEEDED,
    JournalEntry,
)
from tasks.identity_store import IdentityCenterInstance

log = logging.getLogger(__name__)

FAULT_ENV = "IAMC_FAULT"
AFTER_INTENT = "after-intent"
AFTER_CALL = "after-call"
FAULT_POINTS = (AFTER_INTENT, AFTER_CALL)

# Identity Center allows 10-15 outstanding assignment creations per instance (userguide/limits).
MAX_OUTSTANDING_ASSIGNMENTS = 10


class InjectedCrash(BaseException):
    """Raised by the fault hook at a step boundary; only tests inject it."""


# Seconds from an asynchronous sso-admin request to its first status poll: about when AWS
# typically reports it done, so most requests take one Describe. The API reference gives no
# latency (CreateAccountAssignment, DeleteAccountAssignment and ProvisionPermissionSet only
# say "asynchronous"; poll Describe*Status, docs.aws.amazon.com/singlesignon/latest/
# APIReference/API_CreateAccountAssignment.html); Terraform's AWS provider, which waits on the
# same calls at scale, waits 5 s before its first poll of an assignment creation or deletion
# and 5 s between provisioning polls (internal/service/ssoadmin/wait.go:
# accountAssignmentDelay, permissionSetProvisioningRetryDelay).
TYPICAL_COMPLETION_S = {
    "CreateAccountAssignment": 5.0,
    "DeleteAccountAssignment": 5.0,
    "ProvisionPermissionSet": 5.0,
}


@dataclass(frozen=True)
class PollPolicy:
    """How long and how often to poll an asynchronous sso-admin request (tenacity).

    The first poll comes ``first`` seconds after the request (default: the operation's
    typical completion time, ``TYPICAL_COMPLETION_S``, at most ``maximum``); then polls back
    off exponentially from ``initial`` up to ``maximum`` seconds apart, for ``timeout`` at most.
    """

    initial: float = 0.5
    maximum: float = 10.0
    timeout: float = 900.0
    first: float | None = None

    def first_poll(self, operation: str) -> float:
        """Seconds to wait before the first status poll of ``operation``."""
        if self.first is not None:
            return self.first
        return min(TYPICAL_COMPLETION_S.get(operation, self.initial), self.maximum)


@dataclass
class Live:
    """What a handler found in AWS for an action: whether it exists, and how it differs."""

    exists: bool
    difference: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # What the probe read that apply may act on without reading it again (never journaled).
    items: list[str] = field(default_factory=list)


@dataclass
class Done:
    """A handler's result: what it did, and what undoes it (None: nothing to undo)."""

    outcome: dict[str, Any]
    undo: dict[str, Any] | None


class Journal(Protocol):
    """The part of :class:`state.Store` the executor uses."""

    def journal_entry(self, plan_id: int, action_id: str) -> JournalEntry | None: ...

    def journal_intent(self, **kwargs: Any) -> JournalEntry: ...

    def journal_progress(
        self,
        plan_id: int,
        action_id: str,
        outcome: dict[str, Any] | None = None,
        undo: dict[str, Any] | None = None,
    ) -> None: ...

    def journal_finish(self, plan_id: int, action_id: str, status: str, **kwargs: Any) -> None: ...

    def journal_mark(self, plan_id: int, action_id: str, status: str) -> None: ...

    def journal_forget(self, plan_id: int, action_id: str) -> None: ...


class Handler(Protocol):
    """How one kind of action is done, checked and undone; every method is idempotent."""

    PERMISSIONS: tuple[str, ...]

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live: ...

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done: ...

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]: ...


class ExecutionContext:
    """What handlers share: sessions, the Identity Center instance, limits, known ARNs."""

    def __init__(
        self,
        management: boto3.Session,
        member: Callable[[str], boto3.Session],
        instance: IdentityCenterInstance | None,
        poll: PollPolicy | None = None,
        max_outstanding: int = MAX_OUTSTANDING_ASSIGNMENTS,
    ):
        self.management = management
        self.member = member
        self.instance = instance
        self.poll = poll or PollPolicy()
        self.max_outstanding = max_outstanding
        # Shared by every account's task: the cap on outstanding creations is per instance.
        self.outstanding = threading.BoundedSemaphore(max_outstanding)
        self._lock = threading.Lock()
        self._permission_sets: dict[str, str] | None = None
        self._assignments: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._assignment_locks: dict[tuple[str, str], threading.Lock] = {}
        # Account -> ARNs of the sets provisioned there before this run provisioned any.
        self._provisioned_before: dict[str, set[str]] = {}
        self._provisioned_locks: dict[str, threading.Lock] = {}
        self._client_local = threading.local()
        self._sso: Any = None
        self._sso_lock = threading.Lock()
        # The retire stages' extras, set by the flow that runs them: where a snapshot taken
        # before a user's deletion is stored, and what "now" is (tests move it).
        self.snapshot_sink: Callable[[str, str, dict[str, Any]], None] | None = None
        self.shared: dict[str, Any] = {}

    def iam(self, account_id: str) -> Any:
        """An IAM client of a member account, one per thread and account."""
        clients = getattr(self._client_local, "iam", None)
        if clients is None:
            clients = self._client_local.iam = {}
        client = clients.get(account_id)
        if client is None:
            client = clients[account_id] = self.member(account_id).client("iam")
        return client

    def sso(self) -> Any:
        """The sso-admin client of the management session, made once and shared by every
        thread.

        A client is thread-safe once made; making one is not, hence the lock ("Low-level
        clients are thread safe", boto3 guide, Multithreading or multiprocessing with
        clients). One per thread cost a client for each of the thousand short-lived threads a
        provision stage runs; dead threads' clients, held by reference cycles, lived until a
        generation-2 collection, which they made longer (a pass stops every thread).
        """
        # Its own lock: permission_set_arn holds self._lock while its loader calls this.
        with self._sso_lock:
            if self._sso is None:
                self._sso = self.management.client("sso-admin")
            return self._sso

    def permission_set_arn(self, name: str, loader: Callable[[], dict[str, str]]) -> str | None:
        """The ARN of the permission set called ``name``; the listing is read once."""
        with self._lock:
            if self._permission_sets is None:
                self._permission_sets = loader()
            return self._permission_sets.get(name)

    def assignments_of(
        self,
        account_id: str,
        permission_set_arn: str,
        loader: Callable[[], set[tuple[str, str]]],
    ) -> set[tuple[str, str]]:
        """(principal type, id) assigned a permission set in an account, listed once per run.

        Probing each of N assignments of one (account, set) pair would otherwise list the pair
        N times; at 20 sso-admin requests/s those listings cost a fifth of the budget. The
        run's own creations and deletions keep the listing current (remember_assignment).
        """
        key = (account_id, permission_set_arn)
        with self._lock:
            loading = self._assignment_locks.setdefault(key, threading.Lock())
        # One loader per pair: threads probing the same pair at once wait for its listing.
        with loading:
            with self._lock:
                cached = self._assignments.get(key)
            if cached is None:
                with self._lock:
                    before = self._provisioned_before.get(account_id)
                # A set that was not provisioned to the account has no assignments there (an
                # assignment provisions its set, API_CreateAccountAssignment): no listing.
                unprovisioned = before is not None and permission_set_arn not in before
                listed = set() if unprovisioned else loader()
                with self._lock:
                    cached = self._assignments.setdefault(key, listed)
        with self._lock:
            return set(cached)

    def note_provisioned_before(self, account_id: str, loader: Callable[[], list[str]]) -> None:
        """Record, once per account and before this run provisions anything there, which
        permission sets the account has (ListPermissionSetsProvisionedToAccount: one call per
        account instead of one ListAccountAssignments per set that can't have assignments)."""
        with self._lock:
            loading = self._provisioned_locks.setdefault(account_id, threading.Lock())
        # An account's sets are provisioned concurrently: one lists, the others wait for it,
        # and none provisions before the listing is taken.
        with loading:
            with self._lock:
                if account_id in self._provisioned_before:
                    return
            provisioned = set(loader())
            with self._lock:
                self._provisioned_before.setdefault(account_id, provisioned)

    def remember_assignment(
        self, account_id: str, permission_set_arn: str, principal: tuple[str, str], present: bool
    ) -> None:
        with self._lock:
            cached = self._assignments.get((account_id, permission_set_arn))
            if cached is None:
                return
            if present:
                cached.add(principal)
            else:
                cached.discard(principal)

    def remember_permission_set(self, name: str, arn: str | None) -> None:
        with self._lock:
            if self._permission_sets is None:
                return
            if arn is None:
                self._permission_sets.pop(name, None)
            else:
                self._permission_sets[name] = arn


def parse_fault(text: str | None) -> tuple[str, str] | None:
    """``ACTION_ID:after-intent`` -> (action id, point); action ids contain colons."""
    if not text:
        return None
    action_id, _, point = text.rpartition(":")
    if point not in FAULT_POINTS or not action_id:
        raise ValueError(f"{FAULT_ENV}: expected ACTION_ID:{'|'.join(FAULT_POINTS)}, got {text!r}")
    return action_id, point


class Executor:
    """Runs a plan stage's actions, and their rollback, through the journal.

    Args:
        journal: The state store.
        handlers: kind -> handler (see :data:`tasks.provisioning.HANDLERS`).
        ctx: Sessions and shared limits.
        run_id: The run that records its steps.
        plan_id: The plan whose actions these are.
        stage: The plan stage.
        fault: ``(action id, point)`` to simulate the process dying there (tests only);
            default from ``IAMC_FAULT``.
        on_done: Called with each journal row an action ends with (progress display).
        guard: Called before every step and right before every AWS change; raises to stop
            the run (``state.runs.StageLease.ensure``: a run that lost its lease changes
            nothing more).
    """

    def __init__(
        self,
        journal: Journal,
        handlers: dict[str, Handler],
        ctx: ExecutionContext,
        *,
        run_id: int,
        plan_id: int,
        stage: str,
        fault: tuple[str, str] | None = None,
        on_done: Callable[[str, str, str | None], None] | None = None,
        guard: Callable[[], None] | None = None,
    ):
        self.journal = journal
        self.handlers = handlers
        self.ctx = ctx
        self.run_id = run_id
        self.plan_id = plan_id
        self.stage = stage
        self.fault = fault if fault is not None else parse_fault(os.environ.get(FAULT_ENV))
        self.on_done = on_done
        self.guard = guard
        self._crashed = threading.Event()

    # -- step boundaries --------------------------------------------------------------------

    def _boundary(self, action_id: str, point: str) -> None:
        if self.fault == (action_id, point):
            self._crashed.set()
            raise InjectedCrash(f"injected crash at {action_id} {point}")

    def _alive(self) -> None:
        # A simulated death stops every thread at its next step, as a real one would.
        if self._crashed.is_set():
            raise InjectedCrash("the process died")
        if self.guard is not None:
            self.guard()

    def check_alive(self) -> None:
        """Raise InjectedCrash if a simulated death happened (before work that only reads)."""
        self._alive()

    def _handler(self, kind: str) -> Handler:
        handler = self.handlers.get(kind)
        if handler is None:
            raise IamcError(f"no handler for action kind {kind!r}")
        return handler

    def _finish(self, action_id: str, status: str, error: str | None = None, **kw: Any) -> None:
        self.journal.journal_finish(self.plan_id, action_id, status, error=error, **kw)
        if self.on_done is not None:
            self.on_done(action_id, status, error)

    # -- forward ----------------------------------------------------------------------------

    def _revisit(self, action: PlanAction, entry: JournalEntry) -> None:
        """Let a handler look again at an action the journal says is done (a resume).

        Only a handler with a ``revisit(ctx, action, entry)`` method is asked: the snapshot
        before a deletion is read again, since the user may have changed while the run was
        stopped (``tasks.user_teardown.SnapshotUser``). Others are skipped as done.
        """
        revisit = getattr(self.handlers.get(action.kind), "revisit", None)
        if revisit is not None:
            revisit(self.ctx, action, entry)

    def run(self, action: PlanAction) -> str:
        """Do one action unless the journal says it is done; returns its final status.

        Raises:
            ConflictError: It exists but differs from the plan (recorded as failed).
            ActionError: AWS refused or reported FAILED (recorded as failed, with the reason).
            BlockedError: A prerequisite is not done (nothing recorded).
        """
        self._alive()
        entry = self.journal.journal_entry(self.plan_id, action.id)
        in_doubt = False
        if entry is not None and entry.status in DONE_STATUSES:
            undoing = self.journal.journal_entry(self.plan_id, ROLLBACK_PREFIX + action.id)
            if undoing is None:
                log.debug("%s: already %s", action.id, entry.status)
                self._revisit(action, entry)
                if self.on_done is not None:
                    self.on_done(action.id, entry.status, None)
                return entry.status
            # A rollback of it was cut off (its process died during or right after the undo
            # call): the journal can't tell whether it still exists, so AWS is asked again.
            log.info("%s: a rollback of it was interrupted; checking AWS", action.id)
            in_doubt = True
        for dependency in action.depends_on:
            before = self.journal.journal_entry(self.plan_id, dependency)
            if before is None or before.status not in DONE_STATUSES:
                raise BlockedError(action.id, f"waits for {dependency}, which is not done")
        handler = self._handler(action.kind)
        prior = entry
        if entry is not None and (entry.status == ROLLED_BACK or in_doubt):
            # Applied again after a rollback: the old rollback row no longer describes it, and
            # the earlier attempt's request (SUCCEEDED long ago) says nothing about today.
            self.journal.journal_forget(self.plan_id, ROLLBACK_PREFIX + action.id)
            prior = None
        # Ours: an earlier attempt found nothing there, so whatever exists now is our own
        # half-finished work (the process died mid-step) — finish it, never re-create it.
        ours = prior is not None and prior.intent.get("existed_before") is False
        ours = ours or (in_doubt and entry is not None and not entry.intent.get("existed_before"))
        live = handler.probe(self.ctx, action)
        record = {"action": _action_record(action)}
        if live.exists and not ours:
            self.journal.journal_intent(
                run_id=self.run_id,
                plan_id=self.plan_id,
                stage=self.stage,
                action_id=action.id,
                kind=action.kind,
                account_id=action.account_id,
                intent={**record, "existed_before": True, "live": live.detail},
            )
            if live.difference:
                message = (
                    f"{action.target} already exists and differs from the plan: "
                    f"{live.difference}; refusing to change what this migration did not create"
                )
                self._finish(action.id, FAILED, error=message)
                raise ConflictError(action.id, message)
            self._boundary(action.id, AFTER_INTENT)
            self._finish(action.id, ADOPTED, outcome={"adopted": live.detail})
            return ADOPTED
        self.journal.journal_intent(
            run_id=self.run_id,
            plan_id=self.plan_id,
            stage=self.stage,
            action_id=action.id,
            kind=action.kind,
            account_id=action.account_id,
            intent={**record, "existed_before": False, "resumed": ours},
        )
        self._boundary(action.id, AFTER_INTENT)

        def progress(known: dict[str, Any]) -> None:
            # What is known mid-call (a request id, an ARN) survives a crash for reconcile.
            self.journal.journal_progress(
                self.plan_id, action.id, outcome=known, undo=known.get("undo")
            )

        self._alive()
        try:
            done = handler.apply(self.ctx, action, live, progress, prior)
        except ActionError as err:
            self._finish(action.id, FAILED, error=str(err).removeprefix(f"{action.id}: "))
            raise
        self._boundary(action.id, AFTER_CALL)
        self._finish(action.id, SUCCEEDED, outcome=done.outcome, undo=done.undo)
        return SUCCEEDED

    # -- rollback ---------------------------------------------------------------------------

    def undo(self, entry: JournalEntry) -> str:
        """Undo one forward action this migration did; adopted things are never touched.

        Returns:
            ``"skipped"`` (adopted, or nothing was done), or the rollback row's status.
        """
        self._alive()
        if entry.status in (ADOPTED, ROLLED_BACK) or entry.intent.get("existed_before", True):
            return "skipped"
        rollback_id = ROLLBACK_PREFIX + entry.action_id
        done = self.journal.journal_entry(self.plan_id, rollback_id)
        if done is not None and done.status == SUCCEEDED:
            self.journal.journal_mark(self.plan_id, entry.action_id, ROLLED_BACK)
            return SUCCEEDED
        handler = self._handler(entry.kind)
        self.journal.journal_intent(
            run_id=self.run_id,
            plan_id=self.plan_id,
            stage=self.stage,
            action_id=rollback_id,
            kind=entry.kind,
            account_id=entry.account_id,
            intent={"undo_of": entry.action_id, "undo": entry.undo},
        )
        self._boundary(rollback_id, AFTER_INTENT)
        self._alive()
        try:
            outcome = handler.undo(self.ctx, entry)
        except ActionError as err:
            self._finish(rollback_id, FAILED, error=str(err).removeprefix(f"{entry.action_id}: "))
            raise
        self._boundary(rollback_id, AFTER_CALL)
        self._finish(rollback_id, SUCCEEDED, outcome=outcome)
        self.journal.journal_mark(self.plan_id, entry.action_id, ROLLED_BACK)
        return SUCCEEDED


def _action_record(action: PlanAction) -> dict[str, Any]:
    """The action as the journal keeps it: enough to undo it without the plan."""
    return {
        "kind": action.kind,
        "account_id": action.account_id,
        "target": action.target,
        "params": action.params,
    }


def action_from_entry(entry: JournalEntry) -> PlanAction:
    """Rebuild the planned action a journal row recorded (for undo)."""
    from domain.plan import Stage

    recorded = entry.intent.get("action") or {}
    return PlanAction(
        id=entry.action_id,
        stage=Stage(entry.stage),
        kind=entry.kind,
        account_id=entry.account_id,
        target=recorded.get("target", ""),
        target_fingerprint="",
        params=recorded.get("params") or {},
    )
