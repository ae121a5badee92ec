"""Hard-coded keys in the plan: risk with locations, disable/delete held, accept, later scans."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.errors import PlanError
from domain.key_attribution import Classification, KeyFinding
from domain.records import (
    AccessKey,
    Account,
    AccountInventory,
    AttachedPolicy,
    IdentityUser,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from engine.approvals import record_decision
from engine.key_acceptance import accept_hard_coded_keys
from engine.migration import Migration
from flows.plan import plan_flow
from state import Store
from state.key_scans import KEY_SCAN_RUN, ScanUnit

ACCOUNT = "111111111111"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ANA_KEY = "AKIAQANAKEY234567ABC"
BOT_KEY = "AKIAQBOTKEY234567XYZ"


def _user(name: str, key: str, user_class: UserClass) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:aws:iam::{ACCOUNT}:user/{name}",
        created=datetime(2025, 1, 1, tzinfo=UTC),
        password_enabled=user_class == UserClass.HUMAN,
        access_keys=[AccessKey(key, "Active", last_used_date=datetime(2026, 1, 2, tzinfo=UTC))],
        attached_policies=[AttachedPolicy(READ_ONLY, "ReadOnlyAccess")],
        user_class=user_class,
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    users = [_user("ana", ANA_KEY, UserClass.HUMAN), _user("bot", BOT_KEY, UserClass.WORKLOAD)]
    inventory = AccountInventory(
        account=Account(ACCOUNT, "alpha"),
        users=users,
        managed_policies=[
            ManagedPolicy(READ_ONLY, "ReadOnlyAccess", aws_managed=True, document=DOC)
        ],
    )
    with Store.open(url) as store:
        migration = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration, "inventory")
        snapshot = store.snapshots.new_snapshot(migration, run)
        store.snapshots.save_account_inventory(snapshot, inventory)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        mapping_run = store.runs.start_run(migration, "mapping")
        identity = IdentityUser("id-ana", "ana@example.com")
        mapping = UserMapping(
            ACCOUNT, "ana", MatchStatus.MATCHED, "username", identity.user_id, identity.user_name
        )
        store.identity.save_mapping(mapping_run, snapshot, [identity], [], [mapping], [])
        store.runs.finish_run(mapping_run, "succeeded")
    path = tmp_path / "spec.toml"
    path.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    return path


def _scan(spec: Path, findings: list[KeyFinding], units: list[str]) -> None:
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        migration = store.migrations.find_migration("wave-1")
        run = store.runs.start_run(migration, KEY_SCAN_RUN)
        store.scans.save_key_scan(run, findings, [ScanUnit(u, "scanned") for u in units], [])
        store.runs.finish_run(run, "succeeded")


def _hit(key: str, location: str, **extra) -> KeyFinding:
    return KeyFinding(
        Classification.ORG_KEY_ACTIVE,
        source=extra.pop("source", "working-tree"),
        location=location,
        line=int(location.rsplit(":", 1)[-1]) if ":" in location else 1,
        key_id=key,
        root=extra.pop("root", "repo"),
        **extra,
    )


LAMBDA = f"{ACCOUNT} / us-east-1 / Lambda function uploader (env AWS_ACCESS_KEY_ID)"


def test_an_active_hard_coded_key_holds_disable_and_delete_until_accepted(spec: Path):
    _scan(
        spec,
        [
            _hit(ANA_KEY, "app.py:3"),
            _hit(
                ANA_KEY,
                "old.py:1",
                source="git-history",
                commit="c0ffee" * 6 + "abcd",
                history_only=True,
            ),
            _hit(
                BOT_KEY,
                LAMBDA,
                source="lambda",
                root=None,
                found_in_account=ACCOUNT,
                region="us-east-1",
            ),
        ],
        ["code:repo", "code-history:repo", f"aws:{ACCOUNT}:lambda:us-east-1"],
    )
    result = plan_flow(str(spec))
    assert result["blocking"] == 1 and result["blocking_provision"] == 0
    markdown = Path(result["files"]["markdown"]).read_text()
    # The risk names every location, masked key, commit of the history hit.
    assert "repo/app.py:3" in markdown and "repo/old.py:1 @ c0ffeec0ffee" in markdown
    assert "AKIA…7ABC" in markdown and ANA_KEY not in markdown
    assert "iamc scan accept 111111111111/ana" in markdown
    # The workload user keeps its key (no disable planned): a risk with a worklist row.
    assert "Lambda function uploader" in markdown and "Lambda execution role" in markdown
    assert BOT_KEY not in Path(result["files"]["json"]).read_text()

    plan_id, reviewed = result["plan_id"], result["hash"][:12]
    with pytest.raises(PlanError, match=r"blocking error.*for stage disable"):
        Migration.call(
            record_decision,
            spec,
            plan_id,
            approver="cab",
            ticket="CHG-1",
            stage="disable",
            expected_hash=reviewed,
        )
    with pytest.raises(PlanError, match="for stage all"):
        Migration.call(
            record_decision,
            spec,
            plan_id,
            approver="cab",
            ticket="CHG-1",
            stage="all",
            expected_hash=reviewed,
        )
    Migration.call(
        record_decision,
        spec,
        plan_id,
        approver="cab",
        ticket="CHG-1",
        stage="provision",
        expected_hash=reviewed,
    )

    with pytest.raises(PlanError, match="no key of 111111111111/nobody"):
        Migration.call(
            accept_hard_coded_keys, spec, ACCOUNT, "nobody", approver="sec", reason="n/a"
        )
    Migration.call(
        accept_hard_coded_keys,
        spec,
        ACCOUNT,
        "ana",
        approver="sec-lead",
        reason="app.py is a dead branch",
    )
    accepted = plan_flow(str(spec))
    assert accepted["blocking"] == 0
    text = Path(accepted["files"]["markdown"]).read_text()
    assert "accepted by sec-lead" in text and "app.py is a dead branch" in text


def test_a_later_scan_that_no_longer_finds_the_key_releases_the_hold(spec: Path):
    _scan(spec, [_hit(ANA_KEY, "app.py:3")], ["code:repo"])
    assert plan_flow(str(spec))["blocking"] == 1
    _scan(spec, [], ["code:repo"])
    assert plan_flow(str(spec))["blocking"] == 0


def test_a_key_only_in_history_is_a_risk_not_a_hold(spec: Path):
    _scan(
        spec,
        [_hit(ANA_KEY, "old.py:1", source="git-history", commit="ab" * 20, history_only=True)],
        ["code:repo", "code-history:repo"],
    )
    result = plan_flow(str(spec))
    assert result["blocking"] == 0
    assert "hard-coded-key" in Path(result["files"]["markdown"]).read_text()


def test_an_acceptance_covers_its_key_ids_wherever_they_are_found_later(spec: Path):
    _scan(spec, [_hit(ANA_KEY, "app.py:3")], ["code:repo"])
    Migration.call(accept_hard_coded_keys, spec, ACCOUNT, "ana", approver="sec", reason="known")
    assert plan_flow(str(spec))["blocking"] == 0
    # The same key, now also in a Lambda function: still the same key id, still covered.
    _scan(
        spec,
        [
            _hit(ANA_KEY, "app.py:3"),
            _hit(
                ANA_KEY,
                LAMBDA,
                source="lambda",
                root=None,
                found_in_account=ACCOUNT,
                region="us-east-1",
            ),
        ],
        ["code:repo", f"aws:{ACCOUNT}:lambda:us-east-1"],
    )
    assert plan_flow(str(spec))["blocking"] == 0


def test_a_workload_moved_to_a_role_lists_its_written_down_key_for_its_owner(spec: Path):
    """A key in the Lambda function of a workload the plan replaces with a role is the owner's
    worklist: it holds nothing (its disable waits for the cut-over gate), and says so."""
    from domain.workloads import Confidence, Placement, Runtime
    from state.workloads import WORKLOADS_RUN

    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        migration = store.migrations.find_migration("wave-1")
        run = store.runs.start_run(migration, WORKLOADS_RUN)
        placed = Placement(ACCOUNT, "bot", Runtime.LAMBDA, Confidence.HIGH, ["exec-env/AWS_Lambda"])
        store.workloads.save_placements(migration, run, [placed])
        store.runs.finish_run(run, "succeeded")
    lambda_hit = _hit(
        BOT_KEY, LAMBDA, source="lambda", root=None, found_in_account=ACCOUNT, region="us-east-1"
    )
    _scan(spec, [lambda_hit], [f"aws:{ACCOUNT}:lambda:us-east-1"])
    result = plan_flow(str(spec))
    assert result["outcomes"]["replace-with-role"] == 1
    assert result["blocking"] == 0
    markdown = Path(result["files"]["markdown"]).read_text()
    assert "its owner removes it when switching to the role" in markdown
    assert BOT_KEY not in markdown
