"""The workloads and verify steps on a work pool: their accounts sent out in batch runs.

As in test_apply_on_pool: the step's flow runs with the work pool named (as a worker runs it)
and the pool has no worker, so after ``[prefect] batch_start_seconds`` the parent takes each
batch run back and runs its accounts through the batch's own code, each account's result
coming back through the state DB. The run ends as the same run on one process's threads does
(same summary, same table, same placements); an account whose batch reported nothing is an
account that failed, with the reason, never a hole in a run that looks complete.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from console.operator import artifact_key
from domain.distribution import WORK_POOL_ENV
from engine import batches
from engine.apply import apply_plan
from engine.batches import BATCH_FLOW
from iamc.deploy import _ensure_pool
from iamc.serve import _batch_deployment, _on_pool
from state import Store
from tests.flows.test_step_containment import _table
from tests.flows.test_workloads_flow import _sign_as_lambda

POOL = "iamc-test-pool"
# One account a batch (each taken back by its parent: no worker ever takes it).
PREFECT = "[prefect]\naccounts_per_run = 1\n"
# How long a batch waits for a worker before its parent takes it back: the spec allows no
# less than 10 s (what test_apply_on_pool waits); here the waiting is not what is tested.
BATCH_START_SECONDS = 2
NOT_REPORTED = re.compile(r"its batch run '.+' ended COMPLETED \(run by its parent\) before it")


def _on_the_pool(monkeypatch: pytest.MonkeyPatch, migration: str, flow_module: Any) -> None:
    """From now on the flows run as on a worker of a pool with no worker; the step of
    ``flow_module`` takes its batches back after ``BATCH_START_SECONDS``."""
    _ensure_pool(POOL)
    _batch_deployment(migration, ["iam-centralize"], _on_pool(POOL, {})).apply()
    monkeypatch.setenv(WORK_POOL_ENV, POOL)
    dispatch = flow_module.dispatch

    def sooner(spec: Any, *store: Any, **what: Any) -> Any:
        prefect = spec.prefect.model_copy(update={"batch_start_seconds": BATCH_START_SECONDS})
        return dispatch(spec.model_copy(update={"prefect": prefect}), *store, **what)

    monkeypatch.setattr(flow_module, "dispatch", sooner)
    # The parent reads its batch runs' states more often: the test waits less, nothing else.
    monkeypatch.setattr(batches, "POLL_SECONDS", 0.25)


def _batch_runs(work: str, parent: Any) -> list[list[str]]:
    """The accounts of each batch run sent out under ``work``, checked to be subflow runs of
    ``parent`` taken back by it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[BATCH_FLOW])))
        mine = [r for r in runs if r.parameters.get("work") == work]
        for run in mine:
            assert run.state.type.value == "CANCELLED", run.state
            assert "its parent runs it" in run.state.message
            assert client.read_task_run(run.parent_task_run_id).flow_run_id == parent
    return sorted(r.parameters["accounts"] for r in mine)


def _without(account_id: str, batch: Any) -> Any:
    """A batch function that does its work but never reports ``account_id``."""

    def run(spec_path: str, params: dict, accounts: list[str], flow_run_id: str | None) -> Any:
        return batch(spec_path, params, [a for a in accounts if a != account_id], flow_run_id)

    return run


def _without_run(message: str) -> str:
    return re.sub(r"verify run \d+", "verify run N", message)


def _results(store_url: str, work: str) -> dict[str, dict[str, Any]]:
    with Store.open(store_url) as store:
        return store.account_results.results(work)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # a pool's state
def test_workloads_on_a_pool_place_as_threads_do_and_an_unreported_account_fails(
    clean, kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
):
    import flows.workloads
    from flows.inventory import run_inventory
    from flows.workloads import work_key, workloads_flow

    first, second = clean.accounts
    name = f"wp{uuid.uuid4().hex[:6]}"
    keys = {}
    for account_id in clean.accounts:
        iam = clean.member_iam(account_id)
        iam.create_user(UserName=name)
        keys[account_id] = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    _sign_as_lambda(clean.sandbox.url, first, keys[first], 2)
    migration = f"wp-{name}"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "{migration}"\nstate = "{store_url}"\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n" + PREFECT
    )
    run_inventory(spec)

    def run() -> tuple[Any, dict[str, Any], dict[tuple[str, str], Any]]:
        state = workloads_flow(str(spec), return_state=True)
        assert state.is_completed(), state.message
        with Store.open(store_url) as store:
            latest = store.workloads.latest(store.migrations.find_migration(migration))
        return state, state.result(), latest

    with kit.role_removed(clean, second):
        threaded, threaded_summary, threaded_placements = run()
        _on_the_pool(monkeypatch, migration, flows.workloads)
        spread, summary, placements = run()

    # The same run: its summary, its table, each placement whole (keys, evidence, dates).
    assert "AssumeRole" in summary["accounts_failed"][second]
    assert {**summary, "run_id": 0} == {**threaded_summary, "run_id": 0}
    assert placements == threaded_placements and set(placements) == {(first, name)}
    assert placements[(first, name)].keys[0].events == 2
    key = artifact_key(migration, "workloads")
    rows = _table(spread.state_details.flow_run_id, key)
    assert rows == _table(threaded.state_details.flow_run_id, key)
    assert {r["account"]: r["runtime"] for r in rows} == {first: "lambda", second: "FAILED"}
    # Through batch runs, one per account, their results in the state DB.
    work = work_key(summary["run_id"])
    assert _batch_runs(work, spread.state_details.flow_run_id) == sorted([[first], [second]])
    reported = _results(store_url, work)
    assert reported[first]["error"] is None and "AssumeRole" in reported[second]["error"]

    # A batch that never reports its account: that account is not read, the run incomplete.
    monkeypatch.setattr(
        flows.workloads, "workloads_batch", _without(second, flows.workloads.workloads_batch)
    )
    state, summary, placements = run()
    assert list(summary["accounts_failed"]) == [second]
    assert NOT_REPORTED.search(summary["accounts_failed"][second])
    assert "INCOMPLETE" in state.message and second in state.message
    assert set(placements) == {(first, name)}
    rows = _table(state.state_details.flow_run_id, key)
    [failed] = [r for r in rows if r["account"] == second]
    assert failed["runtime"] == "FAILED" and NOT_REPORTED.search(failed["evidence"])


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_verify_on_a_pool_checks_as_threads_do_and_an_unreported_account_fails(
    clean, retire_kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
):
    import flows.verify
    from flows.verify import verify_flow, work_key

    a1, a2 = clean.accounts
    prefix = f"v{uuid.uuid4().hex[:6]}-"
    retire_kit.seed_user(clean, a1, f"{prefix}jane", keys=1, password=True)
    retire_kit.seed_user(clean, a2, f"{prefix}bob", keys=1, password=True)
    spec, plan_id = retire_kit.write_migrate_plan(
        clean,
        tmp_path,
        [(a1, f"{prefix}jane", "alice@example.com"), (a2, f"{prefix}bob", "bob@example.com")],
        state=store_url,
        more=PREFECT,
    )
    apply_plan(spec, plan_id, "provision", poll=retire_kit.QUICK)

    def run() -> tuple[Any, Any, list[dict[str, Any]]]:
        state = verify_flow(str(spec), plan_id, return_state=True)
        assert state.is_failed()
        with Store.open(store_url) as store:
            verify_run = [r for r in store.runs.list_runs() if r.kind == "verify"][-1]
        return state, verify_run, _table(state.state_details.flow_run_id, "wave-1-verify")

    with retire_kit.role_removed(clean, a2):
        threaded, threaded_run, threaded_rows = run()
        _on_the_pool(monkeypatch, "wave-1", flows.verify)
        spread, verify_run, rows = run()

    # The same run: its table, its summary, its message (a2 not checked, a1 as planned).
    assert rows == threaded_rows
    assert {r["account"]: r["result"] for r in rows} == {a1: "ok", a2: "FAILED"}
    assert {**verify_run.summary, "run_id": 0} == {**threaded_run.summary, "run_id": 0}
    assert _without_run(spread.message) == _without_run(threaded.message)
    assert "AssumeRole" in verify_run.summary["accounts_failed"][a2]
    # Through batch runs, one per account, their results in the state DB.
    work = work_key(verify_run.id)
    assert _batch_runs(work, spread.state_details.flow_run_id) == sorted([[a1], [a2]])
    reported = _results(store_url, work)
    assert [c["identity"] for c in reported[a1]["checks"]] == ["alice@example.com"]
    assert "AssumeRole" in reported[a2]["error"]

    # A batch that never reports its account: that account is not checked, the run fails.
    monkeypatch.setattr(flows.verify, "verify_batch", _without(a1, flows.verify.verify_batch))
    state, verify_run, rows = run()
    assert list(verify_run.summary["accounts_failed"]) == [a1]
    assert NOT_REPORTED.search(state.message) and a1 in state.message
    by_account = {r["account"]: r for r in rows}
    assert by_account[a2]["result"] == "ok" and by_account[a1]["result"] == "FAILED"
    assert NOT_REPORTED.search(by_account[a1]["problems"])
