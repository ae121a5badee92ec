"""A plan stage on a work pool whose workers are all busy: its batches run in the parent.

The apply flow runs with the work pool named (as a worker runs it); the pool has no worker, so
no batch run is ever taken. After ``[prefect] batch_start_seconds`` each batch run is cancelled
(the server agrees: no worker can take it after) and the parent runs its accounts itself:
the run ends as it does on one machine, each account's report gathered through the state DB.
A batch's accounts go through the batch's own code (``engine.apply_batch.run_batch``), as on a
worker: it re-proves each user live, so AWS changed after the approval is refused there too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.plans import store_provision_plan, store_retire_plan
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
from tests.flows.conftest import CUSTOMER_POLICY, _inventories

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


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_batch_refuses_a_user_protected_after_the_approval_and_disables_the_others(
    clean, retire_kit, tmp_path: Path, monkeypatch, store_url: str
):
    from prefect.client.orchestration import get_client

    a1, a2 = clean.accounts
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    retire_kit.seed_user(clean, a1, jane, keys=1)
    retire_kit.seed_user(clean, a2, bob, keys=1)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wave-1"\nstate = "{store_url}"\n[decommission]\nbake_days = 14\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
        "[prefect]\naccounts_per_run = 1\nbatch_start_seconds = 10\n"
    )
    later = datetime.now(UTC) + timedelta(days=365)  # every such user unused: retired
    plan_id = store_retire_plan(
        spec,
        store_url,
        "wave-1",
        _inventories(clean, lambda _, name: name.startswith(prefix), now=later),
        approver="cab",
    )
    # Between the approval and the apply, someone protects jane in AWS.
    clean.member_iam(a1).tag_user(UserName=jane, Tags=[{"Key": "iamc:protected", "Value": "TRUE"}])
    _ensure_pool(POOL)
    _batch_deployment("wave-1", ["iam-centralize"], _on_pool(POOL, {})).apply()
    monkeypatch.setenv(WORK_POOL_ENV, POOL)

    state = apply_flow(str(spec), plan_id, "disable", return_state=True)

    assert state.is_failed(), state
    assert f"refused {a1}/{jane}: protected: tagged iamc:protected=true now" in state.message
    keys = {
        (account, user): [
            k["Status"]
            for k in clean.member_iam(account).list_access_keys(UserName=user)["AccessKeyMetadata"]
        ]
        for account, user in ((a1, jane), (a2, bob))
    }
    assert keys == {(a1, jane): ["Active"], (a2, bob): ["Inactive"]}
    with Store.open(store_url) as store:
        (run,) = [r for r in store.runs.list_runs() if r.kind == "apply"]
        reports = store.account_results.results(work_key(run.id, "disable"))
    assert set(reports) == {a1, a2}  # both accounts' batches reported, through the state DB
    status = Migration.call(run_status, spec, run.id)
    assert status["stage"][a1]["refused"] == 1 and status["stage"][a2]["done"] >= 1
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).state.is_failed()
