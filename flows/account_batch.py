"""A batch of accounts of a step, run by any worker of the pool: the child flow run.

``iamc deploy --work-pool`` registers this flow beside the runbook's; a step's flow run on a
worker sends its accounts here in batches (``engine.batches``) instead of working them on its
own threads. Each batch shows in the UI as a subflow run of its parent, one task per account
inside it, and records each account's result in the state DB for the parent to gather.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from domain.errors import StateError
from engine.batches import BATCH_FLOW
from engine.stage_run import ACCOUNT_CONCURRENCY


def _apply(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    from engine.apply_batch import run_batch

    return run_batch(spec_path, params, accounts, flow_run_id)


def _inventory(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    from flows.inventory import inventory_batch

    return inventory_batch(spec_path, params, accounts, flow_run_id)


def _key_scan(
    spec_path: str, params: dict[str, Any], units: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    from flows.key_scan_batch import key_scan_batch

    return key_scan_batch(spec_path, params, units, flow_run_id)


def _workloads(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    from flows.workloads import workloads_batch

    return workloads_batch(spec_path, params, accounts, flow_run_id)


def _verify(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    from flows.verify import verify_batch

    return verify_batch(spec_path, params, accounts, flow_run_id)


# What a batch of each step does: (spec path, the step's parameters, accounts, this flow run's
# id) -> each account's result (also recorded under the parent's work key).
STEPS: dict[str, Callable[..., dict[str, dict[str, Any]]]] = {
    "apply": _apply,
    "inventory": _inventory,
    "key-scan": _key_scan,
    "workloads": _workloads,
    "verify": _verify,
}


@flow(
    name=BATCH_FLOW,
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=ACCOUNT_CONCURRENCY),
)
def account_batch_flow(
    spec_path: str, step: str, work: str, accounts: list[str], params: dict[str, Any]
) -> Any:
    """Do one step's work in a batch of accounts for the parent flow run that sent it.

    Args:
        spec_path: The migration spec (TOML).
        step: ``apply`` (a plan stage's accounts), ``inventory``, ``workloads``, ``verify``
            or ``key-scan`` (accounts and code paths: ``path:INDEX`` in the spec's
            ``[scan] paths``).
        work: Where the accounts' results are recorded (the parent's key).
        accounts: The batch's accounts (a key scan's units).
        params: The step's parameters, as the parent gave them.

    Returns:
        A summary; a Failed state naming the first account that failed, if any did.
    """
    from prefect.runtime import flow_run

    if step not in STEPS:
        raise StateError(f"unknown batch step {step!r} (expected one of {', '.join(STEPS)})")
    logger = get_run_logger()
    logger.info("%s: %d account(s) for %s", step, len(accounts), work)
    results = STEPS[step](spec_path, params, accounts, str(flow_run.id) if flow_run.id else None)
    failed = {a: r for a, r in results.items() if r.get("errors") or r.get("error")}
    summary = {"work": work, "accounts": len(accounts), "failed": sorted(failed)}
    if failed:
        first, report = sorted(failed.items())[0]
        reason = (report.get("errors") or [report.get("error")])[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return Failed(message=f"account {first}: {reason}{more}", data=summary)
    return summary
