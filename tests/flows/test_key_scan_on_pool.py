"""The key scan on a work pool whose workers are all busy: its batches run in the parent.

As in test_apply_on_pool: the scan runs with the work pool named (as a worker runs it); the
pool has no worker, so after ``[prefect] batch_start_seconds`` each batch run (one unit each:
a code path or an account) is cancelled and its parent runs it through the batch's own code
(``flows.key_scan_batch.key_scan_batch``), which reads the scan's salt from the state DB and
reports each unit there, as on a worker.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import engine.batches as batches
import scanner.key_detection as key_detection
from domain.distribution import WORK_POOL_ENV
from engine.batches import BATCH_FLOW, BatchOutcome
from flows.inventory import run_inventory
from flows.key_scan import run_key_scan
from flows.key_scan_batch import key_scan_batch, work_key
from iamc.deploy import _ensure_pool
from iamc.serve import _batch_deployment, _on_pool
from state import Store
from tasks.aws import AwsSessions
from tasks.key_scan import ScanOutcome
from tests.flows.conftest import lambda_holding_key

POOL = "iamc-test-pool"


@pytest.fixture
def org(aws, tmp_path: Path, store_url: str) -> dict[str, Any]:
    """alpha and gamma in scope; alpha's Lambda holds the deployer's key and secret, the code
    only the secret (one secret in two units), and a path that does not exist."""
    sessions = AwsSessions(region="us-east-1")
    organizations = sessions.management().client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    alpha, gamma = (
        organizations.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        for name in ("alpha", "gamma")
    )
    iam = sessions.for_account(alpha).client("iam")
    iam.create_user(UserName="deployer")
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    lambda_holding_key(iam, sessions.for_account(alpha).client("lambda"), key)
    code = tmp_path / "code"
    code.mkdir()
    # The secret alone: whose it is, only the Lambda unit's HMAC of the same secret can tell.
    (code / ".env").write_text(f"aws_secret_access_key={key['SecretAccessKey']}\n")
    (code / "app.py").write_text(f'KEY = "{key["AccessKeyId"]}"\nDOCS = "AKIAIOSFODNN7EXAMPLE"\n')
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wave-1"\nstate = "{store_url}"\n'
        '[scan]\npaths = ["code", "missing-repo"]\n'
        "[prefect]\naccounts_per_run = 1\nbatch_start_seconds = 10\n"
    )
    return {"alpha": alpha, "gamma": gamma, "key": key, "spec": spec, "url": store_url}


def _on_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the flows run as on a worker of a pool that has no worker to spare."""
    _ensure_pool(POOL)
    _batch_deployment("wave-1", ["iam-centralize"], _on_pool(POOL, {})).apply()
    monkeypatch.setenv(WORK_POOL_ENV, POOL)


def _scan_of(url: str, run_id: int) -> tuple[Counter[Any], dict[str, str], list[Any]]:
    """(findings with their HMACs blanked: a scan's salt is its own, units, findings)."""
    with Store.open(url) as store:
        findings = store.scans.key_scan_findings(run_id)
        units = {u.unit: u.status for u in store.scans.key_scan_units(run_id)}
    blanked = Counter(replace(f, pair_hmac="*" if f.pair_hmac else None) for f in findings)
    return blanked, units, findings


def _prefect_records(work: str) -> tuple[list[Any], str]:
    """The key-scan flow runs and this scan's batch runs, and all Prefect keeps of them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[BATCH_FLOW, "key-scan"]))
        )
        ids = [run.id for run in runs]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
    batches = [r for r in runs if r.parameters.get("work") == work]
    kept = [
        *(json.dumps(r.parameters, default=str) for r in runs),
        *(str(r.state.message) for r in runs if r.state),
        *(log.message for log in logs),
        *(json.dumps(a.data, default=str) + str(a.description) for a in artifacts),
    ]
    return batches, "\n".join(kept)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # a pool's state
def test_a_scan_spread_over_the_pool_finds_what_one_process_finds(
    org, monkeypatch, store_url: str
) -> None:
    run_inventory(org["spec"])
    threaded = run_key_scan(org["spec"])
    salt = secrets.token_bytes(32)
    handed = iter([salt])
    real_salt = key_detection.new_salt
    # The spread scan's own salt is known; any other detector gets a random one, so a batch
    # that made its own (not the parent's, from the state DB) would miss the join below.
    monkeypatch.setattr(key_detection, "new_salt", lambda: next(handed, None) or real_salt())
    _on_the_pool(monkeypatch)

    spread = run_key_scan(org["spec"])

    assert "incomplete" not in spread and spread["accounts_failed"] == []
    assert spread["accounts"] == threaded["accounts"] == 2
    assert spread["findings"] == threaded["findings"] and spread["paths_failed"] == {}
    expected, expected_units, _ = _scan_of(store_url, threaded["run_id"])
    found, units, findings = _scan_of(store_url, spread["run_id"])
    assert found == expected and units == expected_units
    assert units["code:missing-repo"] == "skipped"
    # One secret in two units, one key: the lone secret in the code takes the Lambda's key id,
    # through HMACs under the parent's salt that two batch runs made.
    key_id, secret = org["key"]["AccessKeyId"], org["key"]["SecretAccessKey"]
    (env,) = [f for f in findings if f.location.startswith(".env")]
    (lam,) = [f for f in findings if f.source == "lambda"]
    assert env.key_id == lam.key_id == key_id and env.owner_user == "deployer"
    assert env.pair_hmac == lam.pair_hmac == key_detection.secret_digest(salt, secret.encode())

    # Each unit went out as a batch run, no worker took it, its parent ran the batch's code,
    # and the outcome came back through the state DB.
    work = work_key(spread["run_id"])
    batches, kept = _prefect_records(work)
    every_unit = {"path:0", "path:1", org["alpha"], org["gamma"]}
    assert sorted(u for b in batches for u in b.parameters["accounts"]) == sorted(every_unit)
    assert {b.state.type.value for b in batches} == {"CANCELLED"}
    with Store.open(store_url) as store:
        assert set(store.account_results.results(work)) == every_unit
    # The salt: in no flow run's parameters, state, logs or artifacts, nor the run's summary;
    # and no longer in the state DB once the scan ended.
    for form in (salt.hex(), base64.b64encode(salt).decode(), repr(salt)[2:-1]):
        assert form not in kept and form not in json.dumps(spread)
    assert secret not in kept
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM key_scan_salts")).scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_an_account_whose_batch_never_reports_leaves_the_scan_incomplete(
    org, monkeypatch, store_url: str
) -> None:
    gamma = org["gamma"]
    run_inventory(org["spec"])
    monkeypatch.setenv(WORK_POOL_ENV, POOL)
    sent: list[list[str]] = []

    def workers_of_gamma_die(spec, work, step, params, units, name, key, here) -> BatchOutcome:
        # What dispatch sees of a batch run whose worker died (the zombie automation marked
        # it Crashed): the others are run by the batch's code, as a worker would.
        sent.append(units)
        if gamma in units:
            return BatchOutcome(units, name, "CRASHED", "its worker died")
        here(units)
        return BatchOutcome(units, name, "COMPLETED", "")

    monkeypatch.setattr(batches, "_run_batch", workers_of_gamma_die)

    summary = run_key_scan(org["spec"])

    assert sent.count([gamma]) == 2  # sent once more after its first crash, then given up
    assert summary["accounts_failed"] == [gamma]
    why = summary["account_failures"][gamma]
    assert why == (
        f"not scanned: its batch run 'key scan {gamma} (attempt 2)' ended CRASHED "
        "(its worker died) before it reported"
    )
    assert f"account {gamma}: {why}" in summary["incomplete"]
    with Store.open(store_url) as store:
        run = store.runs.get_run(summary["run_id"])
        units = {u.unit: u for u in store.scans.key_scan_units(summary["run_id"])}
        problems = store.scans.key_scan_problems(summary["run_id"])
        reported = store.account_results.results(work_key(summary["run_id"]))
    assert set(reported) == {"path:0", "path:1", org["alpha"]}
    assert run.status == "succeeded" and "INCOMPLETE" in (run.error or "")
    assert units[f"aws:{gamma}:lambda:us-east-1"].status == "failed"
    assert units[f"aws:{gamma}:lambda:us-east-1"].detail == why
    assert units[f"aws:{org['alpha']}:lambda:us-east-1"].status == "scanned"
    assert units["code:code"].status == "scanned"
    assert [(p.source, p.account_id) for p in problems if p.kind == "failed"] == [
        ("account", gamma)
    ]


def _batch_spec(tmp_path: Path) -> tuple[Path, int]:
    """A spec scanning ``code``, and a running key-scan run of it."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wave-1"\nstate = "sqlite:///{tmp_path / "state.db"}"\n[scan]\npaths = ["code"]\n'
    )
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.ensure_migration("wave-1", {"name": "wave-1"})
        return spec, store.runs.start_run(migration_id, "key-scan")


def test_a_batch_without_its_scans_salt_scans_nothing(tmp_path: Path) -> None:
    from domain.errors import StateError

    spec, run_id = _batch_spec(tmp_path)
    params = {"spec_path": str(spec), "run_id": run_id, "paths": {"path:0": "code"}, "labels": {}}
    # The parent ended (or died) and its salt is gone: a salt of the batch's own would make
    # HMACs that never join the other batches'.
    with pytest.raises(StateError, match=f"key scan run {run_id} hands out no salt any more"):
        key_scan_batch(str(spec), params, ["path:0"], None)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.account_results.results(work_key(run_id)) == {}


def test_a_batch_does_not_scan_another_path_than_the_one_sent(tmp_path: Path) -> None:
    spec, run_id = _batch_spec(tmp_path)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.scans.hold_salt(run_id, secrets.token_bytes(32), timedelta(hours=1))
    # The scan started when paths[0] was "old-code"; the spec the worker reads says "code".
    params = {"spec_path": str(spec), "run_id": run_id, "paths": {"path:0": "old-code"}}

    results = key_scan_batch(str(spec), {**params, "labels": {}}, ["path:0"], None)

    outcome = ScanOutcome.from_dict(results["path:0"]["outcome"])
    assert outcome.what == "code old-code" and "the spec changed during the scan" in outcome.failed
    assert [(u.unit, u.status) for u in outcome.units] == [
        ("code:old-code", "failed"),
        ("code-history:old-code", "failed"),
    ]
    assert results["path:0"]["error"] == outcome.failed  # its batch run ends Failed (red)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.account_results.results(work_key(run_id)) == results
