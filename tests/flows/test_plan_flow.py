"""The plan flow and approvals: stored plans, refusals, and the Prefect approval pause."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from domain.deletion import deletes_in
from domain.errors import PlanError
from domain.records import (
    AccessKey,
    Account,
    AccountInventory,
    AttachedPolicy,
    Finding,
    IdentityUser,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from engine.approvals import record_decision
from engine.migration import Migration
from engine.reports import load_plan
from flows.plan import plan_and_approve, plan_flow
from state import Store

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def seed_store(url: str, managed_policies: int = 1, unreachable: str | None = None) -> None:
    """An inventory and a mapping written straight into the store: no AWS needed.

    ``unreachable``: an account id saved as not inventoried (its endpoint did not answer).
    """
    arns = [READ_ONLY] + [f"arn:aws:iam::aws:policy/Extra{n}" for n in range(managed_policies - 1)]
    users = [
        User(
            name=name,
            user_id=f"AIDA{name.upper()}",
            arn=f"arn:aws:iam::111111111111:user/{name}",
            created=datetime(2025, 1, 1, tzinfo=UTC),
            password_enabled=True,
            access_keys=[AccessKey(f"AKIA{name.upper():0<16}", "Active")],
            attached_policies=[AttachedPolicy(arn, arn.rsplit("/", 1)[-1]) for arn in arns],
            user_class=UserClass.HUMAN,
            class_reason="console password",
        )
        for name in ("ana", "bo")
    ]
    inventory = AccountInventory(
        account=Account("111111111111", "alpha"),
        users=users,
        managed_policies=[
            ManagedPolicy(arn, arn.rsplit("/", 1)[-1], aws_managed=True, document=DOC)
            for arn in arns
        ],
    )
    with Store.open(url) as store:
        migration = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration, "inventory")
        snapshot = store.snapshots.new_snapshot(migration, run)
        store.snapshots.save_account_inventory(snapshot, inventory)
        if unreachable:
            error = f"account {unreachable} iam:GetAccountAuthorizationDetails: unreachable: ..."
            store.snapshots.save_account_inventory(
                snapshot, AccountInventory(account=Account(unreachable, "beta"), error=error)
            )
            store.snapshots.add_findings(
                run,
                [
                    Finding(
                        "error",
                        "unreachable",
                        error,
                        unreachable,
                        details={"reason": "unreachable"},
                    )
                ],
            )
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "failed" if unreachable else "succeeded")
        mapping_run = store.runs.start_run(migration, "mapping")
        identities = [IdentityUser(f"id-{u.name}", f"{u.name}@example.com") for u in users]
        mappings = [
            UserMapping(
                "111111111111", u.name, MatchStatus.MATCHED, "username", i.user_id, i.user_name
            )
            for u, i in zip(users, identities, strict=True)
        ]
        store.identity.save_mapping(mapping_run, snapshot, identities, [], mappings, [])
        store.runs.finish_run(mapping_run, "succeeded")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    seed_store(f"sqlite:///{tmp_path / 'state.db'}")
    return path


def test_plan_is_stored_written_and_reused_for_the_same_inputs(spec: Path):
    first = plan_flow(str(spec))
    assert first["blocking"] == 0 and first["permission_sets"] == 1 and first["assignments"] == 2
    markdown = Path(first["files"]["markdown"]).read_text()
    assert markdown.startswith("# Migration plan `wave-1`") and first["hash"] in markdown
    assert Path(first["files"]["json"]).is_file() and Path(first["files"]["assignments"]).is_file()
    second = plan_flow(str(spec))
    assert second["hash"] == first["hash"] and second["plan_id"] == first["plan_id"]
    assert second["reused"]


def test_approval_is_recorded_once_and_bound_to_the_hash(spec: Path):
    result = plan_flow(str(spec))
    plan_id, digest = result["plan_id"], result["hash"]
    with pytest.raises(PlanError, match="not the 000000000000 that was reviewed"):
        Migration.call(
            record_decision,
            spec,
            plan_id,
            approver="cab",
            ticket="CHG-1",
            expected_hash="000000000000",
        )
    meta = Migration.call(
        record_decision,
        spec,
        plan_id,
        approver="cab",
        ticket="CHG-1",
        stage="provision",
        expected_hash=digest[:12],
    )
    assert [(a["stage"], a["decision"], a["approver"]) for a in meta["approvals"]] == [
        ("provision", "approved", "cab")
    ]
    with pytest.raises(PlanError, match="already approved by cab"):
        Migration.call(record_decision,
            spec, plan_id, approver="someone", ticket="CHG-2", stage="provision",
            expected_hash=digest,
        )  # fmt: skip
    with pytest.raises(PlanError, match="already approved"):
        Migration.call(
            record_decision,
            spec,
            plan_id,
            approver="someone",
            ticket="CHG-2",
            stage="all",
            expected_hash=digest,
        )
    # Another stage is a separate decision.
    meta = Migration.call(
        record_decision,
        spec,
        plan_id,
        approver="cab",
        ticket="CHG-3",
        stage="disable",
        expected_hash=digest,
    )
    assert len(meta["approvals"]) == 2
    with pytest.raises(PlanError, match="no plan 999"):
        Migration.call(
            record_decision, spec, 999, approver="cab", ticket="CHG-1", expected_hash=digest
        )


@pytest.mark.parametrize("reviewed", ["missing", "empty", "1 char", "11 chars", "not hex"])
def test_an_approval_without_a_12_character_hash_is_refused(spec: Path, reviewed: str):
    result = plan_flow(str(spec))
    plan_id, digest = result["plan_id"], result["hash"]
    quoted = {
        "missing": None,
        "empty": "",
        "1 char": digest[:1],  # `--hash e`: a prefix of the stored hash, but proves nothing
        "11 chars": digest[:11],
        "not hex": "z" * 12,
    }[reviewed]
    with pytest.raises(PlanError) as caught:
        Migration.call(
            record_decision,
            spec,
            plan_id,
            approver="x",
            ticket="y",
            stage="delete",
            expected_hash=quoted,
        )
    assert digest[:12] in str(caught.value) and "refusing" in str(caught.value)
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        assert store.plans.get_plan(plan_id).approvals == []
    # Twelve characters, in either case, bind the approval (delete quotes its users, too).
    deletes = deletes_in(Migration.call(load_plan, spec, plan_id)[0])
    meta = Migration.call(record_decision,
        spec, plan_id, approver="x", ticket="y", stage="delete",
        expected_hash=digest[:12].upper(), deletes=deletes,
    )  # fmt: skip
    assert [a["stage"] for a in meta["approvals"]] == ["delete"]


def test_a_plan_whose_content_changed_is_not_approved(spec: Path, tmp_path: Path):
    result = plan_flow(str(spec))
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    with engine.begin() as connection:
        content = connection.execute(text("SELECT content FROM plans")).scalar_one()
        connection.execute(
            text("UPDATE plans SET content = :c"),
            {"c": content.replace('"bake_days": 14', '"bake_days": 0')},
        )
    engine.dispose()
    with pytest.raises(PlanError, match="changed since it was computed"):
        Migration.call(
            record_decision,
            spec,
            result["plan_id"],
            approver="cab",
            ticket="CHG-1",
            expected_hash=result["hash"],
        )


def test_a_plan_with_blocking_errors_cannot_be_approved(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    seed_store(f"sqlite:///{tmp_path / 'state.db'}", managed_policies=12)
    result = plan_flow(str(path))
    assert result["blocking"] > 0
    markdown = Path(result["files"]["markdown"]).read_text()
    assert "## Blocking errors" in markdown and "12 managed policies > 10" in markdown
    with pytest.raises(PlanError, match="blocking error"):
        Migration.call(
            record_decision,
            path,
            result["plan_id"],
            approver="cab",
            ticket="CHG-1",
            expected_hash=result["hash"],
        )


def _paused_run_id(flow_name: str, deadline: float) -> str:
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
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError("the approval flow never paused")


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approval_pause_is_resumed_through_the_api_like_the_ui(spec: Path, decision: str):
    from prefect.flow_runs import resume_flow_run

    planned = plan_flow(str(spec))
    plan_id = planned["plan_id"]
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["meta"] = plan_and_approve(str(spec), plan_id, timeout_seconds=120)
        except BaseException as err:  # surfaced by the assertions below
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    flow_run_id = _paused_run_id("plan-and-approve", time.monotonic() + 90)
    resume_flow_run(
        flow_run_id,
        run_input={
            "approver": "change-board",
            "ticket": "CHG-42",
            "decision": decision,
            "stage": "provision",
            # Typed by the reviewer: the form no longer prefills the hash (issue 21).
            "plan_hash": planned["hash"][:12],
            "comment": "reviewed plan.md",
        },
    )
    thread.join(timeout=90)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    approvals = outcome["meta"]["approvals"]
    expected = "approved" if decision == "approve" else "rejected"
    assert [(a["decision"], a["approver"], a["ticket"], a["stage"]) for a in approvals] == [
        (expected, "change-board", "CHG-42", "provision")
    ]
    if decision == "reject":
        # A rejected stage can't be approved afterwards: a new plan is needed.
        with pytest.raises(PlanError, match="already rejected"):
            Migration.call(record_decision,
                spec, plan_id, approver="cab", ticket="CHG-43", stage="provision",
                expected_hash=outcome["meta"]["hash"],
            )  # fmt: skip


def test_an_account_the_inventory_could_not_read_blocks_the_plan(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    seed_store(f"sqlite:///{tmp_path / 'state.db'}", unreachable="222222222222")
    result = plan_flow(str(path))
    assert result["blocking"] == 1
    markdown = Path(result["files"]["markdown"]).read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Risks")]
    assert "222222222222" in summary and "beta" in summary and "unreachable" in summary
    blocking = markdown[markdown.index("## Blocking errors") : markdown.index("## Risks")]
    assert "account-not-inventoried" in blocking and "222222222222 (beta)" in blocking
    with pytest.raises(PlanError, match="blocking error"):
        Migration.call(
            record_decision,
            path,
            result["plan_id"],
            approver="cab",
            ticket="CHG-1",
            expected_hash=result["hash"],
        )


def test_an_unread_account_the_spec_now_excludes_does_not_block(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        '[scope]\nexclude_accounts = ["222222222222"]\n'
    )
    seed_store(f"sqlite:///{tmp_path / 'state.db'}", unreachable="222222222222")
    result = plan_flow(str(path))
    assert result["blocking"] == 0
    markdown = Path(result["files"]["markdown"]).read_text()
    assert "excluded by the spec" in markdown and "222222222222" in markdown


def test_the_approval_form_refuses_a_hash_other_than_the_stored_plans(spec: Path):
    from prefect.flow_runs import resume_flow_run

    result = plan_flow(str(spec))
    plan_id = result["plan_id"]
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["meta"] = plan_and_approve(str(spec), plan_id, timeout_seconds=120)
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    flow_run_id = _paused_run_id("plan-and-approve", time.monotonic() + 90)
    other = "0" * 12 if not result["hash"].startswith("0" * 12) else "f" * 12
    resume_flow_run(
        flow_run_id,
        run_input={
            "approver": "change-board",
            "ticket": "CHG-42",
            "decision": "approve",
            "stage": "provision",
            "plan_hash": other,
        },
    )
    thread.join(timeout=90)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), PlanError), outcome
    assert f"has hash {result['hash'][:12]}, not the {other}" in str(outcome["error"])
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        assert store.plans.get_plan(plan_id).approvals == []


def test_blocked_users_access_is_left_out_of_the_plan(tmp_path: Path):
    import csv
    import json

    path = tmp_path / "spec.toml"
    path.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    seed_store(f"sqlite:///{tmp_path / 'state.db'}", managed_policies=12)
    result = plan_flow(str(path))
    assert result["blocking"] > 0
    # ana and bo share the one permission set that breaks the quota: nothing to provision.
    assert result["permission_sets"] == 0 and result["assignments"] == 0
    assert "provision" not in result["actions"]
    with open(result["files"]["assignments"]) as handle:
        assert list(csv.DictReader(handle)) == []
    plan = json.loads(Path(result["files"]["json"]).read_text())
    assert {u["outcome"] for u in plan["users"]} == {"skip-blocked"}
    assert not [a for a in plan["actions"] if a["stage"] == "provision"]
    markdown = Path(result["files"]["markdown"]).read_text()
    assert "| Permission sets to create | 0 |" in markdown
    assert "| Account assignments to create | 0 |" in markdown
    assert "Left out of this plan: 2 account assignment(s) and 1 permission set(s)" in markdown


def test_recomputing_from_a_new_inventory_and_mapping_keeps_the_plan_and_its_approval(
    spec: Path, tmp_path: Path
):
    from engine.apply import check_runnable

    first = plan_flow(str(spec))
    Migration.call(record_decision,
        spec, first["plan_id"], approver="cab", ticket="CHG-1", stage="provision",
        expected_hash=first["hash"],
    )  # fmt: skip
    # `iamc inventory` and `iamc map` again, nothing changed: new snapshot, new mapping run.
    seed_store(f"sqlite:///{tmp_path / 'state.db'}")
    again = plan_flow(str(spec))
    assert again["hash"] == first["hash"]
    assert again["plan_id"] == first["plan_id"] and again["reused"]
    assert [a["ticket"] for a in again["approvals"]] == ["CHG-1"]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert len(store.runs.list_runs()) == 6  # 2 x (inventory, mapping, plan)
        info = store.plans.get_plan(first["plan_id"])
        check_runnable(info, "provision", str(spec))  # the approval still applies


def test_plan_show_of_an_applied_plan_says_what_was_applied(spec: Path, tmp_path: Path):
    from io import StringIO

    from rich.console import Console

    from iamc.views.plan import show_plan

    result = plan_flow(str(spec))
    plan_id = result["plan_id"]
    Migration.call(record_decision,
        spec, plan_id, approver="cab", ticket="CHG-7", stage="provision",
        expected_hash=result["hash"],
    )  # fmt: skip
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration = store.migrations.find_migration("wave-1")
        run = store.runs.start_run(migration, "apply", {"plan_id": plan_id, "stage": "provision"})
        store.runs.finish_run(run, "succeeded")

    out = StringIO()
    show_plan(Console(file=out, width=200), spec, plan_id, "markdown")
    text = out.getvalue()
    assert "nothing has been changed" not in text
    assert "approved by cab (ticket CHG-7)" in text
    assert f"applied by run {run} (succeeded" in text


def test_iamc_plan_prints_sentences_not_python_dicts(spec: Path):
    from io import StringIO

    from rich.console import Console

    from iamc.views.plan import plan_with_summary

    out = StringIO()
    plan_with_summary(Console(file=out, width=200), spec, None)
    text = out.getvalue()
    assert "{" not in text and "'" not in text, text
    assert "IAM users: 2 (2 migrate)" in text
    assert "to create: 1 permission set(s), 2 account assignment(s)" in text
    import re

    assert re.search(
        r"actions by stage: \d+ provision, \d+ disable, \d+ delete; \d+ of them irreversible",
        text,
    ), text


def _iamc(*args: str, cwd: Path):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "iamc.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plan_verify_tells_the_stored_plan_from_an_edited_file(spec: Path, tmp_path: Path):
    import json

    result = plan_flow(str(spec))
    Migration.call(record_decision,
        spec, result["plan_id"], approver="cab", ticket="CHG-7", stage="provision",
        expected_hash=result["hash"],
    )  # fmt: skip
    plan_json = Path(result["files"]["json"])

    same = _iamc("plan", "verify", str(plan_json), "-c", str(spec), cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "identical" in same.stdout and result["hash"] in same.stdout
    assert "stage provision: approved by cab (ticket CHG-7)" in same.stdout
    assert "stage delete: not approved" in same.stdout

    # Someone edits the file on disk: a longer bake period, one action's target.
    data = json.loads(plan_json.read_text())
    data["settings"]["bake_days"] = 0
    edited_action = data["actions"][0]
    edited_action["target"] = "someone-else"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data, indent=2))
    changed = _iamc("plan", "verify", str(edited), "-c", str(spec), cwd=tmp_path)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "is NOT plan" in changed.stderr and "content hash of the file" in changed.stderr
    assert "section 'settings'" in changed.stderr
    assert f"section 'actions': 1 changed ({edited_action['id']})" in changed.stderr
    assert "Traceback" not in changed.stderr

    # The hash line alone edited (to match another plan): also refused, and said so.
    data = json.loads(plan_json.read_text())
    data["hash"] = "0" * 64
    edited.write_text(json.dumps(data))
    rehashed = _iamc("plan", "verify", str(edited), "-c", str(spec), cwd=tmp_path)
    assert rehashed.returncode == 1 and "the file says hash 000000000000" in rehashed.stderr
