"""Accounts spread over a work pool's workers: batches of accounts as child flow runs.

On a work pool (``iamc deploy --work-pool``) a step's per-account work does not run on the
threads of the flow run's own process: it goes out as child flow runs of the ``account-batch``
deployment, each a batch of accounts, which any worker of the pool picks up (a process each:
no interpreter lock shared with the other batches). Each batch writes every account's result
to the state database as soon as the account is done (``store.account_results``); the parent
gathers them and goes on as it does with threads: its tables, the run's summary and the UI are
the same. A batch whose run crashed (its worker died, and the zombie automation of
``iamc deploy`` marked it Crashed) is dispatched once more, with only the accounts that had not
reported: their journal makes the second attempt continue, never repeat. An account that never
reports is failed with the reason and what to do; a Retry of the parent dispatches only the
accounts whose work is not finished.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from domain.distribution import work_pool
from domain.spec import MigrationSpec
from state import Store

log = logging.getLogger(__name__)

BATCH_FLOW = "account-batch"
# A batch whose worker died goes out once more; then its accounts fail (Retry sends them again).
ATTEMPTS = 2
# Batch runs the parent waits on at once (each wait is a thread polling the API).
WAITING_AT_ONCE = 64
# How often the parent reads a batch run's state.
POLL_SECONDS = 2.0


def distributed() -> bool:
    """Whether this flow run spreads its accounts over its work pool's workers."""
    return work_pool() is not None


def longest_dispatch(spec: MigrationSpec) -> timedelta:
    """How long after it starts :func:`dispatch` may still start a batch, at most.

    Each of its ``ATTEMPTS`` rounds waits at most ``[prefect] account_timeout_seconds`` for its
    batch runs; a batch its parent takes back runs in the parent and delays the next round,
    for which one more round's time allows (as slow a batch as the timeout itself).
    """
    return timedelta(seconds=(ATTEMPTS + 1) * spec.prefect.account_timeout_seconds)


def batch_deployment(migration: str) -> str:
    """``account-batch/account-batch (migration)``: the child deployment's full name."""
    return f"{BATCH_FLOW}/{batch_deployment_name(migration)}"


def batch_deployment_name(migration: str) -> str:
    """The batch deployment's name: not a runbook step, so not numbered like them."""
    return f"{BATCH_FLOW} ({migration})"


def split(accounts: list[str], per_run: int) -> list[list[str]]:
    """``accounts`` in batches of at most ``per_run``, sizes as even as possible."""
    if not accounts:
        return []
    count = math.ceil(len(accounts) / per_run)
    size = math.ceil(len(accounts) / count)
    return [accounts[i : i + size] for i in range(0, len(accounts), size)]


# A key scan's batches carry code paths beside accounts: ``path:INDEX`` (its ``[scan] paths``).
PATH_UNIT = "path:"


def unit_name(unit: str) -> str:
    """What an operator reads for a unit of a batch: ``account 1111...`` or a scan's path."""
    if unit.startswith(PATH_UNIT):
        return f"[scan] paths entry {int(unit.removeprefix(PATH_UNIT)) + 1}"
    return f"account {unit}"


def batch_label(what: str, batch: list[str]) -> str:
    """A batch run's name in the UI: ``provision 111111111111``, ``verify 3 accounts a..c``."""
    if len(batch) == 1:
        return f"{what} {batch[0]}"
    return f"{what} {len(batch)} accounts {batch[0]}..{batch[-1]}"


@dataclass
class BatchOutcome:
    """What became of one batch run: its final state, and the accounts it never reported."""

    accounts: list[str]
    flow_run: str
    state: str
    message: str


def dispatch(
    spec: MigrationSpec,
    store: Store,
    *,
    work: str,
    step: str,
    params: dict[str, Any],
    accounts: list[str],
    label: Callable[[list[str]], str],
    here: Callable[[list[str]], Any],
    on_batch_done: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run ``step`` for ``accounts`` as batch runs on the pool; wait for them all.

    Args:
        spec: The migration (the batch size and how long to wait: ``[prefect]``).
        store: The state DB the batches report to.
        work: The key their results are recorded under (``apply:RUN:STAGE``...).
        step: What each batch does (``flows.account_batch.STEPS``).
        params: The step's parameters, the same for every batch (plain JSON values).
        accounts: The accounts to work on.
        label: A batch's name in the UI, from its accounts.
        here: Runs a batch in this process (and records its results), for a batch no worker
            takes in ``[prefect] batch_start_seconds``: a pool whose every slot holds a run
            waiting for its own batches would otherwise wait for ever.
        on_batch_done: Called in this thread as each batch run ends, with its accounts'
            results: the progress a batch's own process reports reaches no one here (the
            CLI's bar, the run's progress artifact).

    Returns:
        Each account's result, and why each account without one has none.
    """
    store.account_results.forget(work, accounts)
    size = spec.prefect.accounts_per_run
    missing: dict[str, str] = {}
    todo = accounts

    def ended(batch: list[str]) -> None:
        if on_batch_done is not None:
            on_batch_done(store.account_results.results(work, batch))

    for attempt in range(1, ATTEMPTS + 1):
        batches = split(todo, size)
        outcomes = _run_all(spec, work, step, params, batches, label, attempt, here, ended)
        results = store.account_results.results(work, todo)
        todo = []
        for outcome in outcomes:
            unreported = [a for a in outcome.accounts if a not in results]
            if not unreported:
                continue
            why = (
                f"its batch run {outcome.flow_run!r} ended {outcome.state}"
                + (f" ({outcome.message})" if outcome.message else "")
                + " before it reported"
            )
            for account in unreported:
                missing[account] = why
            # Only a crashed batch goes out again: its process is gone. One still scheduled
            # or running when the parent gave up may yet run, and must not run twice.
            if outcome.state == "CRASHED":
                log.warning("%s: %s; %d account(s) again", work, why, len(unreported))
                todo.extend(unreported)
        if not todo or attempt == ATTEMPTS:
            break
    results = store.account_results.results(work, accounts)
    return results, {a: why for a, why in missing.items() if a not in results}


def _run_all(
    spec: MigrationSpec,
    work: str,
    step: str,
    params: dict[str, Any],
    batches: list[list[str]],
    label: Callable[[list[str]], str],
    attempt: int,
    here: Callable[[list[str]], Any],
    ended: Callable[[list[str]], None],
) -> list[BatchOutcome]:
    """Start every batch run and wait for each (threads sharing the parent's flow context);
    ``ended(accounts)`` is called in this thread as each batch run ends."""
    if not batches:
        return []

    def one(index: int, accounts: list[str]) -> BatchOutcome:
        name = label(accounts) + (f" (attempt {attempt})" if attempt > 1 else "")
        return _run_batch(spec, work, step, params, accounts, name, f"{index}.{attempt}", here)

    with ThreadPoolExecutor(
        max_workers=min(WAITING_AT_ONCE, len(batches)), thread_name_prefix="batch"
    ) as pool:
        futures = {
            pool.submit(contextvars.copy_context().run, one, index, accounts): accounts
            for index, accounts in enumerate(batches)
        }
        for future in as_completed(futures):
            try:
                ended(futures[future])
            except Exception:  # progress is a courtesy: it never stops the work
                log.debug("progress of a batch's accounts not reported", exc_info=True)
        return [future.result() for future in futures]


def _run_batch(
    spec: MigrationSpec,
    work: str,
    step: str,
    params: dict[str, Any],
    accounts: list[str],
    name: str,
    key: str,
    here: Callable[[list[str]], Any],
) -> BatchOutcome:
    """One batch run: created on the pool, waited for; run here if no worker takes it."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    parent = f"{flow_run.id}.{flow_run.run_count}" if flow_run.id else "cli"
    child = run_deployment(
        batch_deployment(spec.name),
        parameters={
            "spec_path": params["spec_path"],
            "step": step,
            "work": work,
            "accounts": accounts,
            "params": params,
        },
        flow_run_name=name,
        timeout=0,
        idempotency_key=f"{parent}:{work}:{key}",
        as_subflow=True,
    )
    deadline = time.monotonic() + spec.prefect.account_timeout_seconds
    waiting_since = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(child.id)
            kind = run.state.type.value if run.state else "UNKNOWN"
            if run.state is not None and run.state.is_final():
                return BatchOutcome(accounts, run.name, kind, run.state.message or "")
            waited = time.monotonic() - waiting_since
            if kind != "SCHEDULED":
                waiting_since = time.monotonic()
            elif waited > spec.prefect.batch_start_seconds and _take_back(client, run):
                _run_here(here, accounts, run.name, int(waited))
                return BatchOutcome(accounts, run.name, "COMPLETED", "run by its parent")
            if time.monotonic() > deadline:
                return BatchOutcome(accounts, run.name, kind, "still not finished: gave up")
            time.sleep(POLL_SECONDS)


def _take_back(client: Any, run: Any) -> bool:
    """Cancel a batch run no worker has taken; True if the server agreed (none ever will)."""
    from prefect.states import Cancelled

    result = client.set_flow_run_state(
        run.id, Cancelled(message="no worker took it: its parent runs it instead")
    )
    return result.status.value == "ACCEPT"


def _run_here(
    here: Callable[[list[str]], Any], accounts: list[str], name: str, waited: int
) -> None:
    log.warning(
        "batch %s waited %d s for a worker: its parent runs it (every slot of the pool was "
        "busy; give the workers a --limit of 2 or more, or start more workers)",
        name,
        waited,
    )
    here(accounts)
