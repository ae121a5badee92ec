"""A plan stage on a work pool whose workers are all busy: its batches run in the parent.

The apply flow runs with the work pool named (as a worker runs it); the pool has no worker, so
no batch run is ever taken. After ``[prefect] batch_start_seconds`` each batch run is cancelled
(the server agrees: no worker can take it after) and the parent runs its accounts itself:
the run ends as it does on one machine, each account's report gathered through the state DB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.plans import store_provision_plan
from domain.access import RequiredPolicy
from domain.distribution import WORK_POOL_ENV
from engine.apply_batch import work_key
from engine.batches import BATCH_FLOW
from engine.migration import Migration
from engine.runs import run_status
from flows.apply import apply_flow
from iamc.deploy import _ensure_pool
from iamc.serve import _batch_deployment, _on_pool
from state import Store
from tests.flows.conftest import CUSTOMER_POLICY

POOL = "iamc-test-pool"


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # a pool's state
def test_batches_no_worker_takes_are_run_by_their_parent(
    clean, kit, tmp_path: Path, monkeypatch, store_url: str
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wave-1"\nstate = "{store_url}"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
        "[prefect]\naccounts_per_run = 1\nbatch_start_seconds = 10\n"
    )
    plan_id = store_provision_plan(
        spec,
        store_url,
        "wave-1",
        kit.permission_sets(),
        kit.assignments(clean),
        [
            RequiredPolicy(a, CUSTOMER_POLICY["name"], CUSTOMER_POLICY["path"])
            for a in clean.accounts
        ],
        approve_stage="provision",
        approver="cab",
    )
    _ensure_pool(POOL)
    _batch_deployment("wave-1", ["iam-centralize"], _on_pool(POOL, {})).apply()
    monkeypatch.setenv(WORK_POOL_ENV, POOL)

    summary = apply_flow(str(spec), plan_id, "provision")

    assert summary["succeeded"] == 9 and summary["failed"] == summary["pending"] == 0
    assert len(kit.live_state(clean)["assignments"]) == 4
    assert clean.control.calls()["calls"]["sso-admin:CreateAccountAssignment"] == 4
    status = Migration.call(run_status, spec, summary["run_id"])
    assert {a: r["done"] for a, r in status["accounts"].items()} == {
        "management": 2,
        clean.accounts[0]: 4,
        clean.accounts[1]: 3,
    }
    with Store.open(store_url) as store:
        reports = store.account_results.results(work_key(summary["run_id"], "provision"))
    assert set(reports) == set(clean.accounts)
    with get_client(sync_client=True) as client:
        batches = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[BATCH_FLOW]))
        )
    mine = [
        b for b in batches if b.parameters.get("work") == work_key(summary["run_id"], "provision")
    ]
    assert sorted(b.parameters["accounts"][0] for b in mine) == sorted(clean.accounts)
    assert {b.state.type.value for b in mine} == {"CANCELLED"}
    assert all("its parent runs it" in b.state.message for b in mine)
