"""A batch of accounts of a step, run by any worker of the pool: the child flow run.

``iamc deploy --work-pool`` registers this flow beside the runbook's; a step's flow run on a
worker sends its accounts here in batches (``engine.batches``) instead of working them on its
own threads. Each batch shows in the UI as a subflow run of its parent, one task per account
inside it, and records each account's result in the state DB for the parent to gather.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from domain.errors import BatchFailed, StateError
from engine.batches import BATCH_FLOW, unit_name
from engine.stage_run import ACCOUNT_CONCURRENCY

# What a batch of each step does: the function (module, name; imported when a batch of that
# step runs, so a worker loads only its step's modules) that takes (spec path, the step's
# parameters, accounts, this flow run's id) and returns each account's result (also recorded
# under the parent's work key).
STEPS: dict[str, tuple[str, str]] = {
    "apply": ("engine.apply_batch", "run_batch"),
    "inventory": ("flows.inventory", "inventory_batch"),
    "key-scan": ("flows.key_scan_batch", "key_scan_batch"),
    "workloads": ("flows.workloads", "workloads_batch"),
    "verify": ("flows.verify", "verify_batch"),
}


def _step(name: str) -> Callable[..., dict[str, dict[str, Any]]]:
    module, function = STEPS[name]
    return getattr(importlib.import_module(module), function)


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
    results = _step(step)(spec_path, params, accounts, str(flow_run.id) if flow_run.id else None)
    failed = {a: r for a, r in results.items() if r.get("errors") or r.get("error")}
    if failed:
        first, report = sorted(failed.items())[0]
        unit = unit_name(first)
        # A reason often names its account already ("account 1234: cannot assume ...").
        reason = str((report.get("errors") or [report.get("error")])[0]).removeprefix(f"{unit}: ")
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        message = f"{unit}: {reason}{more}"
        # The data of a Failed state must be an exception: the engine a worker runs
        # (``python -m prefect.engine``) raises it, and logged a TypeError for a dict instead.
        return Failed(message=message, data=BatchFailed(message))
    return {"work": work, "accounts": len(accounts), "failed": []}
