"""Deletion needs its own decision and stays within the blast-radius cap (issue 21).

An approval of "all" never covers the delete stage; delete is approved on its own, quoting
how many IAM users it deletes; a delete run over ``[decommission] max_deletes_per_run`` or
``max_deletes_per_account`` stops before its first deletion, saying by how much.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.errors import ApplyRefused, PlanError
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.migration import Migration
from state import Store

LATER = datetime.now(UTC) + timedelta(days=15)


def later() -> datetime:
    return LATER


def _prefix() -> str:
    return f"d{uuid.uuid4().hex[:6]}-"


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'state.db'}")


def _delete_runs(tmp_path: Path) -> list[int]:
    with _store(tmp_path) as store:
        return [r.id for r in store.runs.list_runs() if r.params.get("stage") == "delete"]


def _approvals(tmp_path: Path, plan_id: int) -> list[tuple[str, str]]:
    with _store(tmp_path) as store:
        return [(a.stage, a.decision) for a in store.plans.get_plan(plan_id).approvals]


def _hash(tmp_path: Path, plan_id: int) -> str:
    with _store(tmp_path) as store:
        return store.plans.get_plan(plan_id).hash


def _seed(world, kit, prefix: str) -> list[str]:
    """Three retirable users: two in the first account, one in the second."""
    a1, a2 = world.accounts
    users = [(a1, f"{prefix}jane"), (a1, f"{prefix}joe"), (a2, f"{prefix}bob")]
    for account_id, name in users:
        kit.seed_user(world, account_id, name, keys=1)
    return [f"{account_id}/{name}" for account_id, name in users]


def test_an_approval_of_all_does_not_let_the_delete_stage_run(clean, retire_kit, tmp_path):
    kit, prefix = retire_kit, _prefix()
    users = _seed(clean, kit, prefix)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, approve=("all",))
    apply_plan(spec, plan_id, "disable")  # "all" still covers provision and disable

    with pytest.raises(ApplyRefused) as err:
        apply_plan(spec, plan_id, "delete", clock=later)
    message = str(err.value)
    assert "its approval of stage all (by cab, ticket REHEARSAL-2)" in message
    assert "approve the delete stage on its own" in message
    assert (
        f"--stage delete --deletes 3 --by NAME --ticket ID --hash {_hash(tmp_path, plan_id)[:12]}"
        in message
    )
    assert sorted(kit.iam_state(clean, prefix)) == sorted(users)  # nobody deleted
    assert _delete_runs(tmp_path) == []  # the refusal records no run


def test_a_delete_approval_must_quote_the_right_number_of_users(clean, retire_kit, tmp_path):
    kit, prefix = retire_kit, _prefix()
    _seed(clean, kit, prefix)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, approve=("all",))
    digest = _hash(tmp_path, plan_id)

    def approve(**what) -> dict:
        return Migration.call(record_decision,
            spec, plan_id, approver="cab", ticket="CHG-9", stage="delete", expected_hash=digest,
            **what,
        )  # fmt: skip

    with pytest.raises(PlanError, match="deletes 3 IAM user\\(s\\), not the 30 quoted"):
        approve(deletes=30)
    with pytest.raises(PlanError, match="--deletes 3"):
        approve()
    with pytest.raises(PlanError, match="goes with stage delete only, not all"):
        Migration.call(record_decision,
            spec, plan_id, approver="cab", ticket="CHG-9", stage="all", expected_hash=digest,
            deletes=3,
        )  # fmt: skip
    assert _approvals(tmp_path, plan_id) == [("all", "approved")]  # nothing recorded

    # The old "all" approval does not stand in the way of delete's own decision.
    meta = approve(deletes=3)
    assert [(a["stage"], a["decision"]) for a in meta["approvals"]] == [
        ("all", "approved"),
        ("delete", "approved"),
    ]
    apply_plan(spec, plan_id, "disable")
    summary = apply_plan(spec, plan_id, "delete", clock=later)
    assert summary["failed"] == summary["pending"] == 0, summary
    assert kit.iam_state(clean, prefix) == {}


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (
            "max_deletes_per_run = 2\n",
            "would delete 3 users, 1 over max_deletes_per_run = 2",
        ),
        (
            "max_deletes_per_account = 1\n",
            "account {a1}: would delete 2 users, 1 over max_deletes_per_account = 1",
        ),
    ],
    ids=["per-run", "per-account"],
)
def test_the_cap_stops_a_delete_run_before_its_first_deletion(
    clean, retire_kit, tmp_path, caps: str, expected: str
):
    kit, prefix = retire_kit, _prefix()
    users = _seed(clean, kit, prefix)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, decommission=caps)
    apply_plan(spec, plan_id, "disable")

    with pytest.raises(ApplyRefused) as err:
        apply_plan(spec, plan_id, "delete", clock=later)
    message = str(err.value)
    assert expected.format(a1=clean.accounts[0]) in message
    assert "no user was deleted" in message and "max_deletes_per_run" in message
    assert sorted(kit.iam_state(clean, prefix)) == sorted(users)
    assert _delete_runs(tmp_path) == []
    with _store(tmp_path) as store:
        assert store.journal.journal_entries(plan_id, "delete") == []


def test_the_cli_refuses_delete_after_all_and_checks_the_quoted_number(
    clean, retire_kit, iamc_runner, tmp_path
):
    kit, prefix = retire_kit, _prefix()
    _seed(clean, kit, prefix)
    _spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, approve=())
    digest = _hash(tmp_path, plan_id)[:12]
    env = iamc_runner.user_env(**clean.sandbox.env())

    def iamc(*args: str) -> subprocess.CompletedProcess:
        return iamc_runner.run(args, tmp_path, env)

    common = ("-c", "spec.toml", "--by", "cab", "--ticket", "CHG-1", "--hash", digest)
    unnamed = iamc("approve", str(plan_id), *common)
    assert unnamed.returncode == 2 and "Missing option '--stage'" in unnamed.stderr
    assert iamc("approve", str(plan_id), *common, "--stage", "all").returncode == 0
    refused = iamc("apply", str(plan_id), "-c", "spec.toml", "--stage", "delete")
    assert refused.returncode == 2
    assert "approve the delete stage on its own" in " ".join(refused.stderr.split())
    wrong = iamc("approve", str(plan_id), *common, "--stage", "delete", "--deletes", "2")
    assert wrong.returncode == 2
    assert "deletes 3 IAM user(s), not the 2 quoted" in " ".join(wrong.stderr.split())
    right = iamc("approve", str(plan_id), *common, "--stage", "delete", "--deletes", "3")
    assert right.returncode == 0, right.stderr
    assert "stage delete (3 IAM users to delete) approved by cab" in right.stdout
    assert _approvals(tmp_path, plan_id) == [("all", "approved"), ("delete", "approved")]
