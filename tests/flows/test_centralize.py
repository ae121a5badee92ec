"""`centralize` on a two-wave sandbox organization, in process: the whole runbook, wave by wave.

The change board's decisions are recorded beforehand (as `make demo` does), so the runs pause
only for the bake period; `bake_days = 1` keeps the disabled users baking until the clock is
moved two days on (as `make demo` moves it), and the bake watch then resumes the paused run.
A second run continues at the first unfinished step: nothing finished is run again. The
approval pauses themselves are driven through the API in tests/e2e/test_centralize_e2e.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from console.bake_pause import bake_pause_prefix
from console.migration_status import end_message, migration_status, status_key, status_markdown
from console.operator import deployment_name
from domain.deletion import deletes_in
from domain.retire import BakeState
from engine.approvals import record_decision
from engine.bake_evidence import bake_report
from engine.migration import Migration
from engine.progress import migration_progress
from engine.reports import load_plan
from engine.runbook import DONE, NEXT, step_names, wave_steps
from engine.wave_progress import waves_progress
from flows.bake import bake_watch_flow
from flows.centralize import centralize_flow
from flows.inventory import run_inventory
from flows.mapping import run_mapping
from flows.plan import plan_flow
from sandbox.seed import seed_organization
from sandbox.server import Sandbox
from state import Store


@dataclass
class Org:
    sandbox: Sandbox
    accounts: list[str]
    spec: Path


def _spec_text(accounts: list[str]) -> str:
    one, two = accounts[:1], accounts[1:]
    return (
        'name = "central"\n'
        'state = "sqlite:///state.db"\n'
        'protected_users = ["breakglass-*"]\n'
        "[aws]\nfirst_status_poll_s = 0.01\n"
        "rate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
        "[decommission]\nbake_days = 1\n"
        "[scan]\naws = false\n"
        f'[[waves]]\nname = "wave-1"\ninclude_accounts = {one!r}\n'
        f'[[waves]]\nname = "wave-2"\ninclude_accounts = {two!r}\n'
    ).replace("'", '"')


@pytest.fixture(scope="module")
def org(tmp_path_factory) -> Iterator[Org]:
    base = tmp_path_factory.mktemp("central")
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=5)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in sandbox.env().items():
                patch.setenv(key, value)
            manifest = seed_organization(
                boto3.Session(), accounts=2, users_per_account=6, seed=5, endpoint_url=sandbox.url
            )
            accounts = sorted(a.account_id for a in manifest.accounts if a.status == "ACTIVE")
            spec = base / "spec.toml"
            spec.write_text(_spec_text(accounts))
            yield Org(sandbox, accounts, spec)


def _runs(spec: Path) -> list[Any]:
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        return store.runs.list_runs()


def _approve_everything(spec: Path, wave: str) -> int:
    """Plan the wave and record the board's decisions: all (provision, disable), and delete."""
    planned = plan_flow(str(spec), wave=wave)
    plan, _ = Migration.call(load_plan, spec, planned["plan_id"])
    for stage in ("all", "delete"):
        Migration.call(
            record_decision,
            spec,
            planned["plan_id"],
            approver="cab",
            ticket=f"CHG-{wave}",
            stage=stage,
            expected_hash=planned["hash"][:12],
            deletes=deletes_in(plan) if stage == "delete" else None,
        )
    return int(planned["plan_id"])


def _paused(key_prefix: str, deadline: float, thread: threading.Thread, outcome: dict) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["centralize"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            ):
                if (run.state.state_details.pause_key or "").startswith(key_prefix):
                    return run
            if not thread.is_alive():
                raise AssertionError(f"centralize ended without pausing for the bake: {outcome}")
            time.sleep(0.3)
    raise AssertionError(f"no centralize run paused with a key {key_prefix}*")


def _start(org: Org, **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in org.sandbox.env().items():
                patch.setenv(key, value)
            try:
                outcome["result"] = centralize_flow(str(org.spec), **params)
            except BaseException as err:  # surfaced by the assertions
                outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _baking(spec: Path, plan_id: int) -> list[str]:
    report = bake_report(spec, collect=False, plan_id=plan_id)
    return [u["user"] for u in report["users"] if u["state"] == BakeState.BAKING]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """``clock(days)``: the bake's and the delete stage's "now" is ``days`` days from now."""
    import engine.apply
    import engine.bake_evidence

    def shift(days: int) -> None:
        monkeypatch.setattr(
            engine.bake_evidence, "_now", lambda: datetime.now(UTC) + timedelta(days=days)
        )
        monkeypatch.setattr(
            engine.apply, "utc_now", lambda: datetime.now(UTC) + timedelta(days=days)
        )

    return shift


def _latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return found[0].data


def test_steps_of_a_wave_follow_the_stage_registry():
    assert step_names() == [
        "inventory",
        "mapping",
        "key-scan",
        "workloads",
        "usage",
        "plan",
        "approve provision",
        "provision",
        "verify",
        "approve replace",
        "replace",
        "notify",
        "approve disable",
        "disable",
        "bake",
        "approve delete",
        "delete",
        "final inventory",
        "verdict",
    ]


def test_a_new_migration_starts_every_wave_at_inventory(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(["111111111111", "222222222222"]))
    with Migration.open(spec) as mig:
        m = migration_progress(mig)
        waves = waves_progress(mig, m)
        steps = [wave_steps(m, w, mig.spec) for w in waves]
        _, status = migration_status(mig)
        message = end_message("central", status, ["wave-1"])
    assert [w.wave for w in waves] == ["wave-1", "wave-2"]
    for wave in steps:
        assert [s.name for s in wave if s.state == NEXT] == ["inventory"]
        # key-scan is done when there is nothing to scan ([scan] aws = false, no paths).
        assert [s.name for s in wave if s.state == DONE] == ["key-scan"]
    assert message.startswith("Done: no wave finished yet. Left: wave-1: from inventory")
    assert "wave-2 (not in this run): from inventory" in message


def test_centralize_runs_a_wave_through_the_bake_to_its_verdict_and_a_rerun_continues(
    org: Org, clock
):
    from prefect.flow_runs import resume_flow_run

    with pytest.MonkeyPatch.context() as patch:
        for key, value in org.sandbox.env().items():
            patch.setenv(key, value)
        run_inventory(org.spec)
        run_mapping(org.spec)
        plans = {wave: _approve_everything(org.spec, wave) for wave in ("wave-1", "wave-2")}

    # Wave 1 alone: it pauses for the bake; a decision and the bake watch carry it on.
    thread, outcome = _start(org, wave="wave-1", bake_timeout_seconds=300)
    paused = _paused(
        bake_pause_prefix("central", plans["wave-1"]), time.monotonic() + 180, thread, outcome
    )
    baking = _baking(org.spec, plans["wave-1"])
    assert baking, "wave 1 disabled users that are still in their bake period"
    status = _latest_artifact(status_key("central"))
    assert "| wave-1 | 1 | " in status and "bake" in status
    clock(2)
    watched = bake_watch_flow(str(org.spec))
    assert watched["resumed"] == [str(paused.id)]
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    message = outcome["result"]["message"]
    assert message.startswith("Done: wave-1: every step, CIS 1.21: ")
    assert "Left: wave-2 (not in this run): from " in message
    first = Counter(r.kind for r in _runs(org.spec))
    assert first["apply"] == 3 and first["inventory"] == 2  # provision, disable, delete; after

    clock(0)
    # Every wave: wave 1 is done and not repeated; wave 2 pauses for its bake, a Resume alone
    # looks again and pauses again (still baking), a decision and a Resume finish it.
    thread, outcome = _start(org, bake_timeout_seconds=300)
    prefix = bake_pause_prefix("central", plans["wave-2"])
    paused = _paused(prefix, time.monotonic() + 180, thread, outcome)
    resume_flow_run(paused.id)
    again = _paused(prefix, time.monotonic() + 60, thread, outcome)
    assert again.id == paused.id and again.state.state_details.pause_key != (
        paused.state.state_details.pause_key
    )
    assert _baking(org.spec, plans["wave-2"])
    clock(2)
    resume_flow_run(paused.id)
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert "Nothing is left." in result["message"]
    assert all(f"wave-1: {step}" in result["already_done"] for step in step_names()[3:-1])
    runs = _runs(org.spec)
    kinds = Counter(r.kind for r in runs)
    assert kinds["plan"] == 2 and kinds["mapping"] == 1 and kinds["inventory"] == 3
    applied = Counter((r.params["plan_id"], r.params["stage"]) for r in runs if r.kind == "apply")
    # Each stage of each wave's plan applied once, all of them successfully.
    assert set(applied.values()) == {1} and len(applied) >= 5, applied
    assert {r.status for r in runs if r.kind == "apply"} == {"succeeded"}
    Path("/tmp/central-status.md").write_text(_latest_artifact(status_key("central")))
    status = _latest_artifact(status_key("central"))
    for account in org.accounts:
        row = next(line for line in status.splitlines() if line.startswith(f"| {account} |"))
        cells = row.split(" | ")[2:6]  # provision, replace, disable, delete
        assert all(c.startswith("done · run") or c == "—" for c in cells), row
        assert cells[2].startswith("done") and cells[3].startswith("done"), row


def test_the_status_shows_a_failed_account_and_the_deployment_that_continues_it(tmp_path: Path):
    from engine.progress import MigrationProgress
    from engine.wave_progress import AccountStage, StageState, WaveProgress

    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(["111111111111", "222222222222"]))
    provision = StageState(
        "provision",
        4,
        {"stage": "all", "decision": "approved", "approver": "cab", "ticket": "CHG-1"},
        run_id=7,
        status="failed",
        accounts={
            "111111111111": AccountStage("done", 2, 2),
            "222222222222": AccountStage("failed", 0, 2, "AccessDenied: no role | here"),
        },
    )
    wave = WaveProgress(
        "wave-1",
        accounts=("111111111111", "222222222222"),
        plan_id=3,
        plan_hash="ab" * 32,
        plan_current=True,
        stages={"provision": provision},
        cis={"222222222222": {"verdict": "FAIL", "why": "2 human user(s)", "name": "prod"}},
    )
    m = MigrationProgress("central", 1, 1, 1, True, 2, True, key_scan_run_id=None)
    with Migration.open(spec) as mig:
        steps = wave_steps(m, wave, mig.spec)
    failed = [s for s in steps if s.state == "failed"]
    assert [(s.name, s.run_id) for s in failed] == [("provision", 7)]
    markdown = status_markdown("central", m, [(wave, steps)], {}, now="2026-01-01T00:00:00+00:00")
    row = next(line for line in markdown.splitlines() if line.startswith("| 222222222222 |"))
    assert "**failed** · run 7: AccessDenied: no role \\| here" in row and "FAIL: 2 human" in row
    summary = next(line for line in markdown.splitlines() if line.startswith("| wave-1 |"))
    assert "provision (failed)" in summary and "press Retry" in summary
    central, apply = deployment_name("centralize", "central"), deployment_name("apply", "central")
    assert f"'{central}' with wave wave-1 continues here" in summary
    assert f"'{apply}' (plan_id 3, stage provision) with resume_run_id 7" in summary
