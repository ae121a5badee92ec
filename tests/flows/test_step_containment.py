"""The steps that are not plan stages (verify, notify, key scan, restore) contain each account.

An account whose member role can't be assumed (the sandbox refuses AssumeRole of a role that
does not exist, as AWS does) ends as a red task named by the account with AWS's reason and a
FAILED row in the step's table; the other accounts go on; the run is recorded; the flow's
message says what to do in the UI and in a shell. Once the role is back, running the step
again (what a Retry does) finishes, with no creation twice.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console.operator import artifact_key
from engine.apply import apply_plan
from state import Store

MEMBER_ROLE = "OrganizationAccountAccessRole"
REFUSED = "is not authorized to perform: sts:AssumeRole"


@contextlib.contextmanager
def role_removed(world: Any, account_id: str) -> Iterator[None]:
    """The member role of one account deleted (as an operator's mistake would), then put back."""
    from moto.iam.models import iam_backends

    iam = world.member_iam(account_id)
    trust = iam.get_role(RoleName=MEMBER_ROLE)["Role"]["AssumeRolePolicyDocument"]
    iam.delete_role(RoleName=MEMBER_ROLE)
    try:
        yield
    finally:
        # Nobody can assume into the account now: put it back as Organizations made it.
        iam_backends[account_id]["global"].create_role(
            role_name=MEMBER_ROLE,
            assume_role_policy_document=trust if isinstance(trust, str) else json.dumps(trust),
            path="",
            permissions_boundary=None,
            description="",
            tags=[],
            max_session_duration="3600",
        )


def _later() -> datetime:
    """After the bake period: the delete stage may delete what disable disabled."""
    return datetime.now(UTC) + timedelta(days=15)


def _prefix() -> str:
    return f"c{uuid.uuid4().hex[:6]}-"


def _task_runs(flow_run_id: Any) -> dict[str, Any]:
    """{task run name: state} of one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name: run.state for run in runs}


def _table(flow_run_id: Any, key: str) -> list[dict[str, Any]]:
    """The rows of the table artifact ``key`` the flow run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert found, f"no artifact {key} on flow run {flow_run_id}"
    data = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return _whole(rows, found[0].description or "")


def _whole(rows: list[dict[str, Any]], description: str) -> list[dict[str, Any]]:
    """The rows with each cell the UI shows cut (``… [n]``) as the description writes it whole."""
    notes = dict(re.findall(r"^- (\[\d+\]) (.*)$", description, re.M))
    for row in rows:
        for column, value in row.items():
            mark = re.search(r"(\[\d+\])$", value) if isinstance(value, str) else None
            if mark and mark.group(1) in notes:
                row[column] = notes[mark.group(1)].split(f", {column}: ", 1)[-1]
    return rows


def _runs(spec: Path, kind: str) -> list[Any]:
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        migration_id = store.migrations.find_migration("wave-1")
        return [r for r in store.runs.list_runs(migration_id) if r.kind == kind]


def _says_what_to_do(message: str, account_id: str) -> None:
    assert account_id in message and REFUSED in message, message
    assert "press Retry on this flow run" in message, message
    assert "iamc " in message, message


def _migrated(clean: Any, kit: Any, tmp_path: Path) -> tuple[Path, int, str, str]:
    """jane in the first account and bob in the second, migrated (provisioned)."""
    prefix = _prefix()
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1, password=True)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(
        clean,
        tmp_path,
        [(a1, f"{prefix}jane", "alice@example.com"), (a2, f"{prefix}bob", "bob@example.com")],
    )
    apply_plan(spec, plan_id, "provision", poll=kit.QUICK)
    return spec, plan_id, a1, a2


def test_verify_contains_an_account_whose_role_cannot_be_assumed(clean, retire_kit, tmp_path: Path):
    from flows.verify import verify_flow

    spec, plan_id, a1, a2 = _migrated(clean, retire_kit, tmp_path)

    with role_removed(clean, a2):
        state = verify_flow(str(spec), plan_id, return_state=True)

    assert state.is_failed()
    _says_what_to_do(state.message, a2)
    flow_run_id = state.state_details.flow_run_id
    tasks = _task_runs(flow_run_id)
    (failed,) = [name for name, s in tasks.items() if s.is_failed()]
    assert failed.startswith(f"verify {a2}")
    assert REFUSED in tasks[failed].message and "AccessDenied" in tasks[failed].message
    assert any(name.startswith(f"verify {a1}") and s.is_completed() for name, s in tasks.items())
    rows = _table(flow_run_id, "wave-1-verify")
    by_account = {r["account"]: r for r in rows}
    assert by_account[a1]["result"] == "ok"
    assert by_account[a2]["result"] == "FAILED" and REFUSED in by_account[a2]["problems"]
    (run,) = _runs(spec, "verify")
    assert run.status == "failed" and a2 in run.error and REFUSED in run.error
    assert list(run.summary["accounts_failed"]) == [a2]
    assert REFUSED in run.summary["accounts_failed"][a2]

    # The role is back: the same run again (what Retry does) finishes.
    again = verify_flow(str(spec), plan_id, return_state=True)
    assert again.is_completed(), again.message
    assert _runs(spec, "verify")[-1].status == "succeeded"


def test_restore_contains_an_account_whose_role_cannot_be_assumed(
    clean, retire_kit, tmp_path: Path
):
    from flows.restore import restore_flow

    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(clean, a1, jane, keys=1, inline=True)
    kit.seed_user(clean, a2, bob, keys=1, inline=True)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    deleted = apply_plan(spec, plan_id, "delete", clock=_later)
    assert kit.iam_state(clean, prefix) == {}
    clean.control.reset_calls()

    with role_removed(clean, a2):
        state = restore_flow(str(spec), run_id=deleted["run_id"], return_state=True)

    assert state.is_failed()
    _says_what_to_do(state.message, a2)
    (run,) = _runs(spec, "restore")
    assert f"iamc resume {run.id}" in state.message
    flow_run_id = state.state_details.flow_run_id
    tasks = _task_runs(flow_run_id)
    assert tasks[f"restore {a1}"].is_completed()
    assert tasks[f"restore {a2}"].is_failed() and REFUSED in tasks[f"restore {a2}"].message
    rows = {r["user"]: r for r in _table(flow_run_id, "wave-1-restore")}
    assert rows[f"{a1}/{jane}"]["result"] == "restored"
    assert rows[f"{a2}/{bob}"]["result"] == "FAILED"
    assert REFUSED in rows[f"{a2}/{bob}"]["can't come back"]
    assert set(kit.iam_state(clean, prefix)) == {f"{a1}/{jane}"}  # the other account went on
    assert run.status == "failed" and a2 in run.error and REFUSED in run.error

    # The role is back: the same restore again (what Retry does) continues the same run.
    again = restore_flow(str(spec), run_id=deleted["run_id"], return_state=True)
    assert again.is_completed(), again.message
    assert [r.status for r in _runs(spec, "restore")] == ["succeeded"]
    assert set(kit.iam_state(clean, prefix)) == {f"{a1}/{jane}", f"{a2}/{bob}"}
    sent = clean.control.calls()["calls"]
    assert sent.get("iam:CreateUser") == 2 and sent.get("iam:PutUserPolicy") == 2, sent


def test_key_scan_of_an_unreadable_account_is_incomplete_and_says_so(
    clean, retire_kit, tmp_path: Path
):
    from flows.key_scan import key_scan_flow

    a1, a2 = clean.accounts
    spec, _ = retire_kit.write_approved_plan(clean, tmp_path)  # a spec and a snapshot

    with role_removed(clean, a2):
        state = key_scan_flow(str(spec), return_state=True)

    # Read-only: Completed, but never passed off as a clean scan of that account.
    assert state.is_completed()
    assert "INCOMPLETE" in state.message
    _says_what_to_do(state.message, a2)
    assert f"iamc scan -c {spec}" in state.message
    flow_run_id = state.state_details.flow_run_id
    tasks = _task_runs(flow_run_id)
    assert tasks[f"scan account {a1}"].is_completed()
    assert tasks[f"scan account {a2}"].is_failed()
    assert REFUSED in tasks[f"scan account {a2}"].message
    rows = {r["scanned"]: r for r in _table(flow_run_id, "wave-1-key-scan")}
    assert rows[f"account {a1}"]["status"] == "scanned"
    assert rows[f"account {a2}"]["status"] == "FAILED"
    assert REFUSED in rows[f"account {a2}"]["reason"]
    (run,) = _runs(spec, "key-scan")
    assert run.status == "succeeded" and "INCOMPLETE" in run.error and REFUSED in run.error
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        units = {u.unit: u.status for u in store.scans.key_scan_units(run.id)}
        _, never_read = store.scans.current_key_findings(store.migrations.find_migration("wave-1"))
    assert units[f"aws:{a2}:lambda:us-east-1"] == "failed"
    assert f"aws:{a2}:lambda:us-east-1" in never_read  # the plan warns: no scan has read it

    # The role is back: the scan again (what Retry does) is complete.
    again = key_scan_flow(str(spec), return_state=True)
    assert again.is_completed() and not again.message, again.message
    assert _runs(spec, "key-scan")[-1].error is None


def _save_mapping(spec: Path, world: Any) -> None:
    """The identity store's people as a mapping run saw them (notify reads their e-mails)."""
    from domain.records import IdentityUser

    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        migration_id = store.migrations.find_migration("wave-1")
        snapshot = store.snapshots.latest_snapshot(migration_id)
        run_id = store.runs.start_run(migration_id, "mapping", {"spec": str(spec)})
        people = [IdentityUser(uid, name, name, [name]) for name, uid in world.users.items()]
        store.identity.save_mapping(run_id, snapshot.id, people, [], [], [])
        store.runs.finish_run(run_id, "succeeded")


def test_notify_holds_back_the_notices_of_an_account_whose_access_did_not_land(
    clean, retire_kit, tmp_path: Path
):
    from domain.errors import ApplyFailed
    from flows.notify import notify_flow

    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1, password=True)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(
        clean,
        tmp_path,
        [(a1, f"{prefix}jane", "alice@example.com"), (a2, f"{prefix}bob", "bob@example.com")],
    )
    _save_mapping(spec, clean)
    with role_removed(clean, a2):
        with pytest.raises(ApplyFailed):
            apply_plan(spec, plan_id, "provision", poll=kit.QUICK)
        state = notify_flow(str(spec), plan_id, return_state=True)

    assert state.is_failed()
    _says_what_to_do(state.message, a2)
    flow_run_id = state.state_details.flow_run_id
    tasks = _task_runs(flow_run_id)
    assert tasks[f"notify {a1}"].is_completed()
    assert tasks[f"notify {a2}"].is_failed() and REFUSED in tasks[f"notify {a2}"].message
    rows = {r["email"]: r for r in _table(flow_run_id, "wave-1-notify")}
    assert rows["alice@example.com"]["eml_file"].endswith(".eml")
    assert rows["bob@example.com"]["eml_file"].startswith("FAILED")
    assert REFUSED in rows["bob@example.com"]["eml_file"]
    written = {p.name for p in (tmp_path / "notices" / str(plan_id)).glob("*.eml")}
    assert len(written) == 1 and any("alice" in name for name in written)
    (run,) = _runs(spec, "notify")
    assert run.status == "failed" and a2 in run.error and REFUSED in run.error

    # The role is back, provisioning finished: notify again writes everyone's notice.
    apply_plan(spec, plan_id, "provision", poll=kit.QUICK)
    again = notify_flow(str(spec), plan_id, return_state=True)
    assert again.is_completed(), again.message
    assert len(list((tmp_path / "notices" / str(plan_id)).glob("*.eml"))) == 2


def test_inventory_of_an_unreadable_account_is_a_failed_task_and_the_others_are_read(
    clean, retire_kit, tmp_path: Path
):
    from flows.inventory import inventory_flow

    a1, a2 = clean.accounts
    spec, _ = retire_kit.write_approved_plan(clean, tmp_path)

    with role_removed(clean, a2):
        state = inventory_flow(str(spec), return_state=True)

    # Partial data never passes as complete: the run fails, naming the account...
    assert state.is_failed()
    assert a2 in state.message
    # ...and in the UI its account's task is red with AWS's words, the others' green.
    tasks = {
        name: s
        for name, s in _task_runs(state.state_details.flow_run_id).items()
        if name.startswith("inventory ")
    }
    (mine,) = [s for name, s in tasks.items() if name.startswith(f"inventory {a2}")]
    (other,) = [s for name, s in tasks.items() if name.startswith(f"inventory {a1}")]
    assert mine.is_failed() and "not inventoried" in mine.message and REFUSED in mine.message
    assert other.is_completed()
    # ...and its table says why, where it is seen first, with no figures for it (not zeros).
    flow_run_id = state.state_details.flow_run_id
    rows = {r["account"]: r for r in _table(flow_run_id, artifact_key("wave-1", "inventory"))}
    assert list(rows[a2])[:3] == ["account", "name", "why not read"]
    assert REFUSED in rows[a2]["why not read"]
    assert rows[a2]["IAM users"] is None and rows[a2]["active keys"] is None
    assert not rows[a1]["why not read"] and rows[a1]["IAM users"] >= 1
