"""The lease a run holds on a plan's stage while it changes AWS: taken, renewed, and lost safely.

Two processes never change the same stage at once: `iamc resume` and a Retry pressed in the UI
(or two operators) could otherwise send the same changes twice. The lease rows live in the state
store (``state.runs``); this is the engine's side of them — which stages lock
together, the heartbeat thread, and the check every mutation makes (``Executor(guard=...)``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from domain.errors import ApplyFailed, ApplyRefused
from domain.runs import this_process
from engine.runs import LOCK_STALE_AFTER, holder_process, process_alive

if TYPE_CHECKING:
    from state.store import Store

log = logging.getLogger(__name__)

# A run renews its leases this often.
LOCK_HEARTBEAT_SECONDS = 15.0
# A run whose lease was not renewed for this long stops before its next change: well before
# anyone may presume it dead (LOCK_STALE_AFTER) and take over.
SAFE_FOR = LOCK_STALE_AFTER / 2

# Stages of one plan that touch the same users exclude each other: a rollback of a disable run,
# a delete and a restore of one plan never run at once (each holds every lease of its group).
LOCK_GROUPS: dict[str, tuple[str, ...]] = {
    "disable": ("disable", "delete"),
    "delete": ("disable", "delete"),
}


def locked_stages(stage: str) -> tuple[str, ...]:
    """Every stage whose lease a run of ``stage`` holds, in the order they are taken."""
    return LOCK_GROUPS.get(stage, (stage,))


class LeaseLost(ApplyFailed):
    """This process no longer holds its stage lease: it must not change anything more."""


class StageLease:
    """The (plan, stage) leases one run holds, and whether it may still act on them.

    The heartbeat renews them every ``LOCK_HEARTBEAT_SECONDS``; a renewal that fails (another
    holder took over, or the database answered an error) is not ignored: once the last renewal
    that succeeded is older than ``SAFE_FOR``, :meth:`ensure` refuses. ``SAFE_FOR`` is well
    inside ``LOCK_STALE_AFTER``, so this process stops before anyone may presume it dead and
    take over: two processes never act on one plan stage.
    """

    def __init__(self, store: Store, plan_id: int, stages: tuple[str, ...], holder: str):
        self.store = store
        self.plan_id = plan_id
        self.stages = stages
        self.holder = holder
        self._renewed = time.monotonic()
        self._lost: str | None = None
        self._lock = threading.Lock()

    def renew(self) -> None:
        """One heartbeat: renew every lease of the group, or record why it can't be."""
        try:
            kept = all(
                self.store.leases.heartbeat_stage_lock(self.plan_id, stage, self.holder)
                for stage in self.stages
            )
        except Exception as err:  # any failure to renew counts against the lease
            log.error(
                "could not renew the lease on plan %s stage %s: %s",
                self.plan_id,
                "+".join(self.stages),
                err,
            )
            return
        with self._lock:
            if not kept:
                self._lost = "another process took it over"
            else:
                self._renewed = time.monotonic()

    def ensure(self) -> None:
        """Raise :class:`LeaseLost` unless this process may still change the plan stage.

        Raises:
            LeaseLost: Taken over, or not renewed for ``SAFE_FOR`` (the database failed).
        """
        with self._lock:
            silent = time.monotonic() - self._renewed
            lost = self._lost
        if lost is None and silent > SAFE_FOR.total_seconds():
            lost = f"its lease was not renewed for {silent:.0f} s (the state database failed)"
        if lost is not None:
            raise LeaseLost(
                f"lost the stage lock to another process or time-out on plan {self.plan_id} "
                f"stage {'+'.join(self.stages)}: {lost}; stopped before the next change. See "
                "'iamc runs' for the run that holds it now; resume this run once that one "
                "has ended"
            )


@contextmanager
def stage_lease(store: Store, plan_id: int, stage: str) -> Iterator[StageLease]:
    """Hold the (plan, stage) lock: two processes never change the same stage at once.

    Without it, `iamc resume` and a Retry pressed in the UI (or two operators) could send the
    same creations twice. The lock is a lease renewed by a heartbeat thread; taking it never
    waits: a held lease is refused at once, saying when it frees if its holder is gone. The
    disable and delete stages of a plan share their leases (``LOCK_GROUPS``).

    Raises:
        ApplyRefused: Another live process holds one of the leases.
    """
    holder = f"{this_process()}:{uuid.uuid4().hex[:8]}"
    stages = locked_stages(stage)
    taken: list[str] = []
    try:
        for each in stages:
            _take(store, plan_id, each, holder, stage)
            taken.append(each)
    except BaseException:
        for each in taken:
            store.leases.release_stage_lock(plan_id, each, holder)
        raise
    lease = StageLease(store, plan_id, stages, holder)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(LOCK_HEARTBEAT_SECONDS):
            lease.renew()

    beating = threading.Thread(target=heartbeat, name="iamc-stage-lock", daemon=True)
    beating.start()
    try:
        yield lease
    finally:
        stop.set()
        beating.join(timeout=5)
        for each in stages:
            store.leases.release_stage_lock(plan_id, each, holder)


def _take(store: Store, plan_id: int, stage: str, holder: str, wanted: str) -> None:
    blocker = store.leases.acquire_stage_lock(plan_id, stage, holder, stale_after=LOCK_STALE_AFTER)
    if blocker is not None and process_alive(holder_process(blocker.holder)) is False:
        # Its holder ran on this host and is gone (killed): no need to wait out the lease.
        log.info("taking over plan %s stage %s from %s (gone)", plan_id, stage, blocker.holder)
        # Only from that holder: of several processes doing this at once, the first takes it
        # and the others find the lease live again (one winner, not each in turn).
        blocker = store.leases.acquire_stage_lock(
            plan_id, stage, holder, stale_after=LOCK_STALE_AFTER, replacing=blocker.holder
        )
    if blocker is not None:
        now = datetime.now(UTC)
        age = (now - blocker.heartbeat).total_seconds()
        frees = blocker.heartbeat + LOCK_STALE_AFTER
        shared = "" if stage == wanted else f" (its {wanted} and {stage} stages: one run at a time)"
        raise ApplyRefused(
            f"plan {plan_id} stage {wanted} is being changed by run {blocker.run_id}{shared} "
            f"({blocker.holder}, last heartbeat {age:.0f} s ago); nothing was changed. Wait for "
            f"it to finish (iamc runs shows it); if that process is gone, its lease frees at "
            f"{frees:%H:%M:%S} UTC, in {max(0.0, (frees - now).total_seconds()):.0f} s"
        )


def borrowed_lease(store: Store, plan_id: int, stage: str, holder: str) -> Callable[[], None]:
    """The check a batch run makes before each change: its parent still holds the lease.

    A batch of accounts on a work pool's worker works under the lease its parent flow run took
    (``holder``). Before every mutation it reads the lease: if another run took it over, or
    the parent fell silent for ``SAFE_FOR`` (its worker died), the batch stops before the
    change, exactly as the parent itself would; a resumed parent sends the accounts again.

    Raises:
        LeaseLost: (from the returned check) the parent no longer holds the lease.
    """
    stages = locked_stages(stage)

    def ensure() -> None:
        held = {
            lock.stage: lock
            for lock in store.leases.list_stage_locks()
            if lock.plan_id == plan_id and lock.stage in stages
        }
        for each in stages:
            lock = held.get(each)
            if lock is None or lock.holder != holder:
                lost = "its parent run no longer holds it (ended, or taken over)"
            elif datetime.now(UTC) - lock.heartbeat > SAFE_FOR:
                age = (datetime.now(UTC) - lock.heartbeat).total_seconds()
                lost = f"its parent run has not renewed it for {age:.0f} s"
            else:
                continue
            raise LeaseLost(
                f"plan {plan_id} stage {'+'.join(stages)}: this batch works under its parent "
                f"run's lease, and {lost}; stopped before the next change. Resume the parent "
                "run (Retry in the UI, or iamc resume): it sends the unfinished accounts again"
            )

    return ensure
