"""Two waves over one sandbox organization: wave 2 builds on wave 1, and never undoes it.

The organization is seeded once per module (4 accounts, seed 21) and inventoried and mapped
once, as a whole; each test starts from a copy of that state and an empty Identity Center.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from domain.errors import WaveError
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.migration import Migration
from engine.reports import load_plan, waves_report
from engine.rollback import rollback_plan
from flows.inventory import run_inventory
from flows.mapping import run_mapping
from flows.plan import plan_flow
from sandbox.seed import seed_organization
from sandbox.server import Sandbox
from tasks.handler import PollPolicy

QUICK = PollPolicy(initial=0.005, maximum=0.05, timeout=30)


@dataclass
class Org:
    sandbox: Sandbox
    accounts: list[str]  # active member accounts, sorted
    state: Path  # the state DB after inventory and mapping of the whole organization
    instance_arn: str

    def sso(self) -> Any:
        return boto3.client("sso-admin", endpoint_url=self.sandbox.url, region_name="us-east-1")

    def calls(self, operation: str) -> int:
        from sandbox.control import SandboxControl

        counts = SandboxControl(self.sandbox.url).calls()["calls"]
        return counts.get(f"sso-admin:{operation}", 0)

    def identity_center(self) -> dict[str, Any]:
        """Every permission set (name -> description, session duration) and assignment."""
        sso = self.sso()
        sets, names = {}, {}
        for page in sso.get_paginator("list_permission_sets").paginate(
            InstanceArn=self.instance_arn
        ):
            for arn in page["PermissionSets"]:
                described = sso.describe_permission_set(
                    InstanceArn=self.instance_arn, PermissionSetArn=arn
                )["PermissionSet"]
                names[arn] = described["Name"]
                sets[described["Name"]] = (
                    described.get("Description"),
                    described.get("SessionDuration"),
                )
        assigned = sorted(
            (account, names[arn], a["PrincipalType"], a["PrincipalId"])
            for account in self.accounts
            for arn in names
            for a in sso.list_account_assignments(
                InstanceArn=self.instance_arn, AccountId=account, PermissionSetArn=arn
            )["AccountAssignments"]
        )
        return {"permission_sets": sets, "assignments": assigned}


def _spec_text(org: Org, state: Path, session: str = "PT8H") -> str:
    one, two = org.accounts[:2], org.accounts[2:]
    return (
        'name = "waves"\n'
        f'state = "sqlite:///{state}"\n'
        'protected_users = ["breakglass-*"]\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
        f'[permission_sets]\nsession_duration = "{session}"\n'
        f'[[waves]]\nname = "wave-1"\ninclude_accounts = {one!r}\n'
        f'[[waves]]\nname = "wave-2"\ninclude_accounts = {two!r}\n'
    ).replace("'", '"')


@pytest.fixture(scope="module")
def org(tmp_path_factory) -> Iterator[Org]:
    base = tmp_path_factory.mktemp("org")
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=21)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in sandbox.env().items():
                patch.setenv(key, value)
            manifest = seed_organization(
                boto3.Session(),
                accounts=4,
                users_per_account=8,
                seed=21,
                endpoint_url=sandbox.url,
            )
            accounts = sorted(a.account_id for a in manifest.accounts if a.status == "ACTIVE")
            org = Org(sandbox, accounts, base / "state.db", manifest.instance_arn)
            spec = base / "spec.toml"
            spec.write_text(_spec_text(org, org.state))
            run_inventory(spec)
            run_mapping(spec)
        yield org


@pytest.fixture
def waves(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec over a copy of the module's state, with an empty Identity Center."""
    from moto.ssoadmin.models import ssoadmin_backends

    for key, value in org.sandbox.env().items():
        monkeypatch.setenv(key, value)
    backend = ssoadmin_backends["123456789012"]["us-east-1"]
    backend.permission_sets.clear()
    backend.account_assignments.clear()
    org.sandbox.middleware.reset_async()
    from sandbox.control import SandboxControl

    SandboxControl(org.sandbox.url).reset_calls()
    state = tmp_path / "state.db"
    shutil.copy(org.state, state)
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(org, state))
    return spec


def _approve_and_apply(spec: Path, wave: str) -> tuple[dict[str, Any], dict[str, Any]]:
    planned = plan_flow(str(spec), str(spec.parent / wave), wave)
    assert planned["blocking"] == 0
    Migration.call(
        record_decision,
        spec,
        planned["plan_id"],
        approver="cab",
        ticket=f"CHG-{wave}",
        stage="provision",
        expected_hash=planned["hash"][:12],
    )
    return planned, apply_plan(spec, planned["plan_id"], poll=QUICK)


def _fingerprints(spec: Path, plan_id: int) -> dict[str, str]:
    plan, _ = Migration.call(load_plan, spec, plan_id)
    return {ps["name"]: ps["fingerprint"] for ps in plan.permission_sets}


def test_wave_two_adopts_wave_ones_sets_and_creates_only_new_access(org: Org, waves: Path):
    one, applied_one = _approve_and_apply(waves, "wave-1")
    sets_one = _fingerprints(waves, one["plan_id"])
    assert applied_one["failed"] == 0 and sets_one
    plan_one, _ = Migration.call(load_plan, waves, one["plan_id"])
    assert plan_one.wave == {"name": "wave-1", "accounts": org.accounts[:2]}
    assert {a.account_id for a in plan_one.actions if a.account_id} <= set(org.accounts[:2])

    two, applied_two = _approve_and_apply(waves, "wave-2")
    sets_two = _fingerprints(waves, two["plan_id"])
    shared = {name for name in sets_two if sets_one.get(name) == sets_two[name]}
    assert shared, "the seeded waves share some access"
    # The same access has the same name in both waves, whoever holds it.
    assert {sets_one[n] for n in sets_one} & {sets_two[n] for n in sets_two} == {
        sets_one[n] for n in shared
    }
    assert applied_two["failed"] == 0
    assert applied_two["adopted"] >= len(shared)
    distinct = set(sets_one.values()) | set(sets_two.values())
    assert len(distinct) < len(sets_one) + len(sets_two)
    assert org.calls("CreatePermissionSet") == len(distinct)
    assert len(org.identity_center()["permission_sets"]) == len(distinct)


def test_rolling_back_wave_two_leaves_wave_one_intact(org: Org, waves: Path):
    _approve_and_apply(waves, "wave-1")
    after_one = org.identity_center()
    _, applied_two = _approve_and_apply(waves, "wave-2")
    assert org.identity_center() != after_one

    dry = rollback_plan(waves, applied_two["run_id"], dry_run=True)
    assert not any("create-permission-set" in line for line in dry["undo"]) or all(
        name not in line for line in dry["undo"] for name in after_one["permission_sets"]
    )
    rollback_plan(waves, applied_two["run_id"], poll=QUICK)
    # Wave 1's sets (adopted by wave 2) and assignments are all there, as before wave 2.
    assert org.identity_center() == after_one


def test_rolling_back_wave_one_keeps_the_sets_wave_two_uses(org: Org, waves: Path):
    _, applied_one = _approve_and_apply(waves, "wave-1")
    after_one = org.identity_center()
    two, _ = _approve_and_apply(waves, "wave-2")
    after_two = org.identity_center()

    result = rollback_plan(waves, applied_one["run_id"], poll=QUICK)
    kept = [line for line in result["left_alone"] if "still used by wave-2" in line]
    assert kept and all("create-permission-set" in line for line in kept)
    now = org.identity_center()
    # Wave 1's assignments are gone; every set wave 2 uses, and wave 2's access, stay.
    wave_two_sets = set(_fingerprints(waves, two["plan_id"]))
    assert wave_two_sets <= set(now["permission_sets"])
    assert [a for a in now["assignments"] if a[0] in org.accounts[:2]] == []
    assert [a for a in now["assignments"] if a[0] in org.accounts[2:]] == [
        a for a in after_two["assignments"] if a[0] in org.accounts[2:]
    ]
    unused_by_two = set(after_one["permission_sets"]) - wave_two_sets
    assert not unused_by_two & set(now["permission_sets"])


def test_a_shared_set_with_a_changed_definition_is_a_planned_update(org: Org, waves: Path):
    one, _ = _approve_and_apply(waves, "wave-1")
    sets_one = _fingerprints(waves, one["plan_id"])
    before = org.identity_center()
    # The organization decides on 4-hour sessions from wave 2 on.
    waves.write_text(waves.read_text().replace('"PT8H"', '"PT4H"'))
    two = plan_flow(str(waves), str(waves.parent / "wave-2"), "wave-2")
    plan, _ = Migration.call(load_plan, waves, two["plan_id"])
    updates = {a.target: a for a in plan.actions if a.kind == "update-permission-set"}
    shared = {n for n, fp in _fingerprints(waves, two["plan_id"]).items() if sets_one.get(n) == fp}
    assert shared and set(updates) == shared
    assert not any(a.kind == "create-permission-set" and a.target in shared for a in plan.actions)
    for name, update in updates.items():
        assert update.params["changes"] == ["session duration PT8H -> PT4H"]
        assert update.params["created_by"] == f"wave-1 (plan {one['plan_id']})"
        wave_one_accounts = {a[0] for a in before["assignments"] if a[1] == name}
        assert set(update.params["reprovision_accounts"]) == wave_one_accounts
        # Every account that has the set is provisioned again, after the update.
        reprovisioned = {
            a.account_id
            for a in plan.actions
            if a.kind == "provision-permission-set"
            and a.target == name
            and a.depends_on == [update.id]
        }
        assert wave_one_accounts <= reprovisioned
        markdown = (waves.parent / "wave-2" / "plan.md").read_text()
        assert "## Updates to the organization's permission sets" in markdown
        assert all(account in markdown for account in wave_one_accounts)

    # Applied: the shared sets have 4-hour sessions; rolled back: 8 hours again, re-provisioned.
    Migration.call(record_decision,
        waves, two["plan_id"], approver="cab", ticket="CHG-2", stage="provision",
        expected_hash=two["hash"][:12],
    )  # fmt: skip
    applied = apply_plan(waves, two["plan_id"], poll=QUICK)
    assert applied["failed"] == 0
    sessions = org.identity_center()["permission_sets"]
    assert {sessions[n][1] for n in updates} == {"PT4H"}
    rollback_plan(waves, applied["run_id"], poll=QUICK)
    assert org.identity_center() == before


def test_a_replan_with_unchanged_inputs_keeps_every_name_and_description(org: Org, waves: Path):
    one, _ = _approve_and_apply(waves, "wave-1")
    first, _ = Migration.call(load_plan, waves, one["plan_id"])
    again = plan_flow(str(waves), str(waves.parent / "again"), "wave-1")
    assert again["plan_id"] == one["plan_id"] and again["reused"]
    # Also after wave 2 was applied (the organization's sets are now used by two waves).
    _approve_and_apply(waves, "wave-2")
    third = plan_flow(str(waves), str(waves.parent / "third"), "wave-1")
    assert third["plan_id"] == one["plan_id"]
    plan, _ = Migration.call(load_plan, waves, third["plan_id"])
    assert [(p["name"], p["description"]) for p in plan.permission_sets] == [
        (p["name"], p["description"]) for p in first.permission_sets
    ]
    for ps in plan.permission_sets:
        assert "user" not in ps["description"] and "wave" not in ps["description"]


def test_waves_report_and_wave_errors(org: Org, waves: Path):
    rows, _ = Migration.call(waves_report, waves)
    assert [r["wave"] for r in rows] == ["wave-1", "wave-2"]
    assert all(r["pending"].startswith("no plan") for r in rows)
    _approve_and_apply(waves, "wave-1")
    rows, _ = Migration.call(waves_report, waves)
    one, two = rows
    assert one["accounts"] == 2 and one["migrated"] == one["to_migrate"] > 0
    assert one["pending"].startswith("provisioned")
    assert one["cis_fail"] + one["cis_pass"] + one["cis_unknown"] == 2
    assert two["plan"] is None

    with pytest.raises(WaveError, match="planned in waves: name one with --wave"):
        plan_flow(str(waves))
    with pytest.raises(WaveError, match="no such wave"):
        plan_flow(str(waves), None, "wave-9")
    text = waves.read_text().replace(f'"{org.accounts[0]}"', '"999999999999"')
    waves.write_text(text)
    with pytest.raises(WaveError, match="account 999999999999 is not an inventoried account"):
        plan_flow(str(waves), None, "wave-1")


def test_an_update_cut_off_after_its_intent_resumes_without_a_second_change(org: Org, waves: Path):
    from engine.executor import AFTER_INTENT, InjectedCrash
    from flows.apply import resume
    from state import Store

    _approve_and_apply(waves, "wave-1")
    waves.write_text(waves.read_text().replace('"PT8H"', '"PT4H"'))
    two = plan_flow(str(waves), str(waves.parent / "wave-2"), "wave-2")
    plan, _ = Migration.call(load_plan, waves, two["plan_id"])
    update = next(a for a in plan.actions if a.kind == "update-permission-set")
    Migration.call(record_decision,
        waves, two["plan_id"], approver="cab", ticket="CHG-2", stage="provision",
        expected_hash=two["hash"][:12],
    )  # fmt: skip
    updates_before = org.calls("UpdatePermissionSet")
    with pytest.raises(InjectedCrash):
        apply_plan(waves, two["plan_id"], fault=(update.id, AFTER_INTENT), poll=QUICK)
    with Store.open(f"sqlite:///{waves.parent / 'state.db'}") as store:
        run_id = max(r.id for r in store.runs.list_runs() if r.kind == "apply")
    resume(waves, run_id)
    sessions = org.identity_center()["permission_sets"]
    assert sessions[update.target][1] == "PT4H"
    # One UpdatePermissionSet per updated set over both runs, the cut-off one included: none
    # twice. (The sets are changed concurrently: another set's update may be done before the
    # cut.)
    updated = sum(1 for a in plan.actions if a.kind == "update-permission-set")
    assert org.calls("UpdatePermissionSet") - updates_before == updated


def test_a_wave_plan_reads_the_inventory_once_and_its_waves_table_covers_every_wave(
    org: Org, waves: Path, monkeypatch: pytest.MonkeyPatch
):
    from domain.spec import load_spec
    from state.snapshots import SnapshotRepository
    from state.store import Store

    loads: list[int] = []
    load = SnapshotRepository.load_snapshot

    def counted(self: Any, snapshot_id: int) -> Any:
        loads.append(snapshot_id)
        return load(self, snapshot_id)

    monkeypatch.setattr(SnapshotRepository, "load_snapshot", counted)
    planned = plan_flow(str(waves), str(waves.parent / "one"), "wave-1")
    assert len(loads) == 1  # the waves table took the plan's snapshot, not a second read
    plan, _ = Migration.call(load_plan, waves, planned["plan_id"])
    with Store.open(load_spec(waves).state) as store:
        whole = load(store.snapshots, plan.inventory_snapshot_id)
    # Given the whole snapshot (the plan itself holds only wave 1's accounts), the same table.
    assert Migration.call(
        waves_report, waves, known_snapshot=(plan.inventory_snapshot_id, whole)
    ) == (Migration.call(waves_report, waves))
    # A snapshot that is no longer the latest is not used.
    rows, _ = Migration.call(
        waves_report, waves, known_snapshot=(plan.inventory_snapshot_id - 1, [])
    )
    assert [r["accounts"] for r in rows] == [2, 2]
