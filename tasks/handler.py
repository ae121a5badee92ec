"""The handler contract: what every AWS adapter's probe/apply/undo receives and returns."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from domain.plan import PlanAction
from state.journal import JournalEntry

if TYPE_CHECKING:  # types only: importing the contract costs no boto3
    import boto3

    from tasks.identity_store import IdentityCenterInstance

log = logging.getLogger(__name__)

# ExecutionContext.shared key: (account id, user) -> the unique id the stage's live checks
# proved; every teardown step that removes something checks it again (tasks.user_teardown).
VERIFIED_USERS = "verified-users"

# Identity Center allows 10-15 outstanding assignment creations per instance (userguide/limits).
MAX_OUTSTANDING_ASSIGNMENTS = 10


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
        reach: Callable[[str], None] | None = None,
    ):
        self.management = management
        self.member = member
        # Assume a member account's role now, raising with AWS's reason when it can't be.
        self.reach = reach
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
