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
from typing import Any

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
from tasks.handler import ExecutionContext, Handler, Journal, Live

log = logging.getLogger(__name__)

FAULT_ENV = "IAMC_FAULT"
AFTER_INTENT = "after-intent"
AFTER_CALL = "after-call"
FAULT_POINTS = (AFTER_INTENT, AFTER_CALL)


class InjectedCrash(BaseException):
    """Raised by the fault hook at a step boundary; only tests inject it."""


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
        journal: The state store's journal (``store.journal``).
        handlers: kind -> handler (see :data:`tasks.provisioning.HANDLERS`).
        ctx: Sessions and shared limits.
        run_id: The run that records its steps.
        plan_id: The plan whose actions these are.
        stage: The plan stage.
        fault: ``(action id, point)`` to simulate the process dying there (tests only);
            default from ``IAMC_FAULT``.
        on_done: Called with each journal row an action ends with (progress display).
        guard: Called before every step and right before every AWS change; raises to stop
            the run (``engine.lease.StageLease.ensure``: a run that lost its lease changes
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
            return self._adopt(action, live, record)
        self._intend(action, {**record, "existed_before": False, "resumed": ours})
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

    def _intend(self, action: PlanAction, intent: dict[str, Any]) -> None:
        self.journal.journal_intent(
            run_id=self.run_id,
            plan_id=self.plan_id,
            stage=self.stage,
            action_id=action.id,
            kind=action.kind,
            account_id=action.account_id,
            intent=intent,
        )

    def _adopt(self, action: PlanAction, live: Live, record: dict[str, Any]) -> str:
        """Record what exists without us: adopted as it is, or refused if it differs."""
        self._intend(action, {**record, "existed_before": True, "live": live.detail})
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
