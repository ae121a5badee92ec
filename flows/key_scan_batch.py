"""The key scan on a work pool: its code paths and accounts sent out in batches, and one batch.

As the inventory's accounts are (``flows.inventory``): a key scan running on a work pool sends
its units of work, each ``[scan] paths`` entry and each in-scope account's configuration, to
the pool's workers as batch runs of ``flows.account_batch`` (``engine.batches``). A batch scans
its units through the same tasks as the flow's own threads (``flows.key_scan_units``) and
records each unit's outcome in the state DB; the parent gathers them and attributes the whole
scan at once, as on one machine. A unit whose batch never reported is failed with the reason:
the scan is incomplete, never complete with a hole.

A code path goes out as its index in the spec's ``[scan] paths`` (``path:0``, ...): the worker
resolves it from the spec, against the spec's directory, on its own machine. So the paths must
be at the same place on every worker, as the spec itself must be, and hold the same content (a
checkout of the same commit); a path missing on a worker is reported skipped, with where that
worker looked.
"""

from __future__ import annotations

from typing import Any

from domain.errors import StateError
from domain.spec import scan_paths_of
from engine.batches import PATH_UNIT, dispatch, longest_dispatch
from engine.migration import Migration
from flows.key_scan_units import ScanRuntime, scan_account_config, scan_code
from scanner.key_detection import KeyDetector
from state import Store
from tasks.aws import AwsSessions
from tasks.key_scan import ScanOutcome, unscanned_account, unscanned_path

BATCH_STEP = "key-scan"

# THE SALT. The detector's random salt keys the HMAC of every secret found (KeyHit.secret_hash);
# domain.key_attribution.attribute joins a secret found alone in one unit with the key id it sits
# next to in another by equal HMACs, so every batch of one scan must use the scan's salt (with
# a salt of its own, the join misses without a word: a known key's secret reported as nobody's).
# It must not travel through Prefect: a flow run's parameters (like its results, logs and
# artifacts) are kept by the Prefect server and shown to whoever may read runs, for as long as
# the run is kept; and the salt with a stored pair_hmac lets anyone test a leaked or guessed
# secret against a finding, which a per-scan salt exists to prevent once the scan is over.
# Nor as a Prefect Secret block: kept by the same server until deleted. Nor derived from
# something every worker knows (run id, DB URL): whoever knows that knows the salt.
# So the state DB carries it, the one channel every worker already shares and the place whole
# key ids already live (state.key_scans): the parent writes it right before its batches go out
# and deletes it, in a finally, as soon as dispatch returns (every batch reported or given up).
# The table is UNLOGGED on PostgreSQL (no WAL, so no archive or replica keeps it; revision 0017);
# a row whose parent was killed outright expires, and the next scan sweeps it. A batch that
# finds no salt scans nothing: its units are reported not scanned, never joined wrongly.


def work_key(run_id: int) -> str:
    """Where a scan run's batches record their units' outcomes."""
    return f"key-scan:{run_id}"


def path_unit(index: int) -> str:
    """A code path's unit id: its index in the spec's ``[scan] paths``."""
    return f"{PATH_UNIT}{index}"


def spread_scan(
    runtime: ScanRuntime,
    store: Store,
    run_id: int,
    spec_path: str,
    accounts: dict[str, str],
    profile: str | None,
) -> list[ScanOutcome]:
    """On a work pool: the code paths and ``accounts`` scanned by batch runs on its workers.

    Args:
        runtime: The parent's scan (its detector holds the salt the batches must share).
        store: The state DB the batches read the salt from and report to.
        run_id: The ``key-scan`` run.
        spec_path: The spec, where the workers find it.
        accounts: {account id: its label} of the accounts to scan.
        profile: The AWS profile the scan was started with, if any.

    Returns:
        Each path's outcome in ``[scan] paths`` order, then each account's; a unit whose batch
        never reported is failed with why.
    """
    paths = {path_unit(i): entry.label for i, entry in enumerate(runtime.paths)}
    params = {
        "spec_path": spec_path,
        "run_id": run_id,
        "profile": profile,
        "paths": paths,
        "labels": accounts,
    }

    def name(batch: list[str]) -> str:
        names = [f"code {paths[u]}" if u in paths else u for u in batch]
        return f"key scan {names[0]}" if len(names) == 1 else f"key scan {len(names)} units"

    # Why the state DB, and for no longer than this: see THE SALT above.
    store.scans.hold_salt(run_id, runtime.detector.salt, longest_dispatch(runtime.spec))
    try:
        results, missing = dispatch(
            runtime.spec,
            store,
            work=work_key(run_id),
            step=BATCH_STEP,
            params=params,
            accounts=[*paths, *accounts],
            label=name,
            here=lambda batch: key_scan_batch(spec_path, params, batch, None),
        )
    finally:
        store.scans.drop_salt(run_id)

    def why(unit: str) -> str:
        return f"not scanned: {missing.get(unit, 'its batch run reported nothing')}"

    history = runtime.spec.scan.history
    outcomes = [
        ScanOutcome.from_dict(results[u]["outcome"])
        if u in results
        else unscanned_path(label, why(u), history=history)
        for u, label in paths.items()
    ]
    outcomes += [
        ScanOutcome.from_dict(results[a]["outcome"])
        if a in results
        else unscanned_account(a, runtime.regions, why(a))
        for a in accounts
    ]
    return outcomes


def key_scan_batch(
    spec_path: str, params: dict[str, Any], units: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """One batch run's key scan (on a worker): its units scanned with the parent's salt.

    Raises:
        StateError: The parent's run hands out no salt any more (it ended or died): nothing
            is scanned (a salt of its own would make HMACs that never join the others').
    """
    run_id = int(params["run_id"])
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        runtime = ScanRuntime(
            spec,
            AwsSessions.from_spec(spec, profile=params.get("profile")),
            KeyDetector(_salt(store, run_id)),
            scan_paths_of(spec, spec_path),
        )
        work = work_key(run_id)
        futures = {unit: _submit(runtime, params, unit) for unit in units}
        results: dict[str, dict[str, Any]] = {}
        raised = []
        for unit, future in futures.items():
            if isinstance(future, ScanOutcome):  # refused before it was scanned
                outcome: ScanOutcome | None = future
            else:
                future.wait()
                outcome = _outcome_of(runtime, unit)
            if outcome is None:
                raised.append(future)  # the task raised before it had an outcome
                continue
            # "error": how flows.account_batch tells a batch with a unit that failed (red).
            results[unit] = {"outcome": outcome.to_dict(), "error": outcome.failed}
            store.account_results.save(work, unit, results[unit], flow_run_id)
        for future in raised:
            future.result()  # raise it: those units go unreported, the others are recorded
        return results


def _salt(store: Store, run_id: int) -> bytes:
    salt = store.scans.scan_salt(run_id)
    if salt is None:
        raise StateError(
            f"key scan run {run_id} hands out no salt any more (it has ended, or its process "
            "died): this batch scans nothing, the run reports its units not scanned"
        )
    return salt


def _submit(runtime: ScanRuntime, params: dict[str, Any], unit: str) -> Any:
    """The unit's task run; an outcome instead for a path the spec no longer lists there."""
    if not unit.startswith(PATH_UNIT):
        return scan_account_config.submit(runtime, unit, params["labels"].get(unit, unit))
    index, label = int(unit.removeprefix(PATH_UNIT)), params["paths"][unit]
    if index >= len(runtime.paths) or runtime.paths[index].label != label:
        # The spec the worker reads is not the one the scan started with: another path.
        return unscanned_path(
            label,
            f"not scanned: [scan] paths[{index}] of {params['spec_path']} is no longer "
            f"{label!r} where this worker reads it: the spec changed during the scan",
            history=runtime.spec.scan.history,
        )
    return scan_code.submit(runtime, label, index)


def _outcome_of(runtime: ScanRuntime, unit: str) -> ScanOutcome | None:
    if unit.startswith(PATH_UNIT):
        return runtime.code_outcomes.get(int(unit.removeprefix(PATH_UNIT)))
    return runtime.outcomes.get(unit)
