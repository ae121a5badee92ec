"""The store: full round trips through a reopened DB, runs, findings and concurrent saves."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event

from domain.errors import StateError
from domain.records import (
    AccessKey,
    Account,
    AccountInventory,
    AttachedPolicy,
    Finding,
    Group,
    InlinePolicy,
    ManagedPolicy,
    MfaDevice,
    ServiceSpecificCredential,
    SigningCertificate,
    SshPublicKey,
    User,
    UserClass,
)
from state import Store

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
# A non-UTC zone on input must come back as the same instant in UTC.
PLUS_TWO = timezone(timedelta(hours=2))
DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def full_inventory(account_id: str = "111111111111") -> AccountInventory:
    """An account with one of everything, lists in the order load_snapshot returns them.

    (Users and groups by name, managed policies by ARN, everything else as saved.)
    """
    arn = f"arn:aws:iam::{account_id}"
    alice = User(
        name="alice",
        user_id="AIDAALICE0000000001",
        arn=f"{arn}:user/people/alice",
        path="/people/",
        created=T0,
        password_enabled=True,
        password_last_used=datetime(2024, 5, 1, 14, 0, tzinfo=PLUS_TWO),
        password_last_changed=T0 + timedelta(days=1),
        mfa_active=True,
        access_keys=[
            AccessKey(
                key_id="AKIAALICE00000000001",
                status="Active",
                created=T0,
                last_used_date=T0 + timedelta(days=3),
                last_used_service="s3",
                last_used_region="eu-west-1",
            ),
            AccessKey(key_id="AKIAALICE00000000002", status="Inactive"),
        ],
        mfa_devices=[
            MfaDevice(serial=f"{arn}:mfa/alice", enabled=T0, virtual=True),
            MfaDevice(serial="GAHT12345678", enabled=None, virtual=False),
        ],
        ssh_public_keys=[SshPublicKey(key_id="APKAALICE", status="Active", uploaded=T0)],
        signing_certificates=[
            SigningCertificate(certificate_id="CERTALICE", status="Inactive", uploaded=T0)
        ],
        service_specific_credentials=[
            ServiceSpecificCredential(
                credential_id="ACCAALICE",
                service_name="codecommit.amazonaws.com",
                service_user_name="alice-at-111111111111",
                status="Active",
                created=T0,
            )
        ],
        attached_policies=[
            AttachedPolicy(arn="arn:aws:iam::aws:policy/ReadOnlyAccess", name="ReadOnlyAccess"),
            AttachedPolicy(arn=f"{arn}:policy/Custom", name="Custom"),
        ],
        inline_policies=[InlinePolicy(name="b-inline", document=DOC), InlinePolicy("a", DOC)],
        groups=["devs", "admins"],
        permissions_boundary_arn=f"{arn}:policy/Boundary",
        tags={"team": "platform", "iamc:protected": ""},
        user_class=UserClass.HUMAN,
        class_reason="console password used 3 days ago",
        last_activity=T0 + timedelta(days=3),
    )
    bot = User(
        name="ci-bot",
        user_id="AIDABOT000000000001",
        arn=f"{arn}:user/ci-bot",
        access_keys=[AccessKey(key_id="AKIABOT0000000000001", status="Active", created=T0)],
        user_class=UserClass.WORKLOAD,
        class_reason="access keys only",
    )
    bare = User(name="zed", user_id="AIDAZED000000000001", arn=f"{arn}:user/zed")
    return AccountInventory(
        account=Account(
            account_id=account_id,
            name="Production",
            email="prod@example.com",
            status="ACTIVE",
            parent_id="ou-abcd-12345678",
        ),
        users=[alice, bot, bare],
        groups=[
            Group(
                name="admins",
                group_id="AGPAADMINS",
                arn=f"{arn}:group/admins",
                attached_policies=[
                    AttachedPolicy("arn:aws:iam::aws:policy/AdministratorAccess", "Admin")
                ],
            ),
            Group(
                name="devs",
                group_id="AGPADEVS",
                arn=f"{arn}:group/eng/devs",
                path="/eng/",
                inline_policies=[InlinePolicy(name="devs-inline", document=DOC)],
            ),
        ],
        managed_policies=[
            ManagedPolicy(arn=f"{arn}:policy/Boundary", name="Boundary", document=DOC),
            ManagedPolicy(
                arn=f"{arn}:policy/Custom",
                name="Custom",
                path="/custom/",
                default_version_id="v2",
                document=None,
            ),
            ManagedPolicy(
                arn="arn:aws:iam::aws:policy/ReadOnlyAccess",
                name="ReadOnlyAccess",
                aws_managed=True,
                default_version_id="v118",
                document=DOC,
            ),
        ],
        gaps=["ListServiceSpecificCredentials"],
    )


def failed_inventory(account_id: str) -> AccountInventory:
    return AccountInventory(
        account=Account(account_id=account_id, status="SUSPENDED"),
        gaps=["GetAccountAuthorizationDetails"],
        error="AccessDenied: cannot assume OrganizationAccountAccessRole",
    )


def _all_datetimes(value: object) -> list[datetime]:
    if isinstance(value, datetime):
        return [value]
    if isinstance(value, list):
        return [d for item in value for d in _all_datetimes(item)]
    if isinstance(value, dict):
        return [d for item in value.values() for d in _all_datetimes(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [
            d for name in value.__dataclass_fields__ for d in _all_datetimes(getattr(value, name))
        ]
    return []


@pytest.fixture
def store(store_url: str) -> Store:
    with Store.open(store_url) as opened:
        yield opened


def test_inventory_round_trips_through_a_reopened_store(store_url: str) -> None:
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration(
            "wave-1", {"name": "wave-1", "region": "us-east-1"}
        )
        run_id = store.runs.start_run(migration_id, "inventory", {"accounts": 2})
        snapshot_id = store.snapshots.new_snapshot(migration_id, run_id)
        # Saved out of order: loading sorts by account id.
        store.snapshots.save_account_inventory(snapshot_id, failed_inventory("999999999999"))
        store.snapshots.save_account_inventory(snapshot_id, full_inventory())
        store.snapshots.complete_snapshot(snapshot_id)
        store.snapshots.add_findings(
            run_id,
            [
                Finding(
                    "warning",
                    "inventory-gap",
                    "no ListServiceSpecificCredentials",
                    account_id="111111111111",
                    details={"calls": ["List"]},
                ),
                Finding("blocking", "cannot-assume-role", "denied", account_id="999999999999"),
            ],
        )
        store.runs.finish_run(run_id, "succeeded", summary={"users": 3})

    with Store.open(store_url) as store:
        loaded = store.snapshots.load_snapshot(snapshot_id)
        assert loaded == [full_inventory(), failed_inventory("999999999999")]
        stamps = _all_datetimes(loaded)
        assert len(stamps) >= 10
        assert all(
            stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0) for stamp in stamps
        )
        alice = loaded[0].users[0]
        assert alice.password_last_used == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        assert alice.user_class is UserClass.HUMAN
        assert loaded[0].users[2].user_class is None

        latest = store.snapshots.latest_snapshot(migration_id)
        assert latest is not None
        assert (latest.id, latest.run_id, latest.account_count) == (snapshot_id, run_id, 2)
        assert latest.completed is not None and latest.completed >= latest.created

        run = store.runs.get_run(run_id)
        assert (run.migration, run.kind, run.status) == ("wave-1", "inventory", "succeeded")
        assert run.params == {"accounts": 2} and run.summary == {"users": 3} and run.error is None
        assert run.finished is not None and run.finished.tzinfo is not None

        found = store.snapshots.findings(run_id=run_id)
        assert [f.kind for f in found] == ["inventory-gap", "cannot-assume-role"]
        assert found[0] == Finding(
            "warning", "inventory-gap", "no ListServiceSpecificCredentials",
            account_id="111111111111", details={"calls": ["List"]},
        )  # fmt: skip
        assert found[1].details == {} and found[1].subject is None


def test_resaving_an_account_replaces_it(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    store.snapshots.save_account_inventory(snapshot_id, full_inventory())
    smaller = full_inventory()
    smaller.users = smaller.users[1:]
    smaller.groups = []
    store.snapshots.save_account_inventory(snapshot_id, smaller)
    assert store.snapshots.load_snapshot(snapshot_id) == [smaller]


def test_only_completed_snapshots_are_latest(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    assert store.snapshots.latest_snapshot(migration_id) is None
    first = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    store.snapshots.save_account_inventory(first, full_inventory())
    store.snapshots.complete_snapshot(first)
    second_run = store.runs.start_run(migration_id, "inventory")
    second = store.snapshots.new_snapshot(migration_id, second_run)
    assert store.snapshots.new_snapshot(migration_id, second_run) == second  # idempotent per run
    store.snapshots.save_account_inventory(second, full_inventory("222222222222"))
    latest = store.snapshots.latest_snapshot(migration_id)
    assert latest is not None and latest.id == first and latest.account_count == 1
    store.snapshots.complete_snapshot(second)
    latest = store.snapshots.latest_snapshot(migration_id)
    assert latest is not None and latest.id == second
    other = store.migrations.ensure_migration("wave-2", {})
    assert store.snapshots.latest_snapshot(other) is None


def test_migrations_and_runs(store: Store) -> None:
    first = store.migrations.ensure_migration("wave-1", {"bake_days": 14})
    assert store.migrations.ensure_migration("wave-1", {"bake_days": 7}) == first
    second = store.migrations.ensure_migration("wave-2", {})
    run_a = store.runs.start_run(first, "inventory")
    run_b = store.runs.start_run(second, "plan", {"dry_run": True})
    store.runs.finish_run(run_a, "failed", error="boom")

    failed = store.runs.get_run(run_a)
    assert (failed.status, failed.error, failed.summary, failed.params) == (
        "failed",
        "boom",
        None,
        {},
    )
    running = store.runs.get_run(run_b)
    assert running.status == "running" and running.finished is None
    assert [run.id for run in store.runs.list_runs()] == [run_a, run_b]
    assert [run.id for run in store.runs.list_runs(second)] == [run_b]

    with pytest.raises(ValueError, match="succeeded"):
        store.runs.finish_run(run_b, "done")
    with pytest.raises(StateError, match="no run 424242"):
        store.runs.get_run(424242)
    with pytest.raises(StateError, match="no snapshot 424242"):
        store.snapshots.load_snapshot(424242)
    with pytest.raises(StateError):
        store.runs.start_run(424242, "inventory")  # no such migration: foreign keys are enforced


def test_findings_filters(store: Store) -> None:
    wave1 = store.migrations.ensure_migration("wave-1", {})
    wave2 = store.migrations.ensure_migration("wave-2", {})
    run1, run2 = store.runs.start_run(wave1, "inventory"), store.runs.start_run(wave2, "inventory")
    store.snapshots.add_findings(run1, [Finding("info", "a", "one"), Finding("error", "b", "two")])
    store.snapshots.add_findings(run2, [Finding("info", "a", "three", subject="bob")])
    store.snapshots.add_findings(run2, [])
    assert [f.message for f in store.snapshots.findings()] == ["one", "two", "three"]
    assert [f.message for f in store.snapshots.findings(run_id=run2)] == ["three"]
    assert [f.message for f in store.snapshots.findings(migration_id=wave1)] == ["one", "two"]
    assert [f.message for f in store.snapshots.findings(kind="a")] == ["one", "three"]
    assert [f.message for f in store.snapshots.findings(migration_id=wave2, kind="b")] == []


def test_concurrent_saves_from_eight_threads(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    account_ids = [f"{n:012d}" for n in range(100000000001, 100000000017)]
    start = threading.Barrier(8)

    def save(account_id: str) -> None:
        if account_id in account_ids[:8]:
            start.wait()  # the first eight really do start together
        store.snapshots.save_account_inventory(snapshot_id, full_inventory(account_id))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(save, account_ids))
    store.snapshots.complete_snapshot(snapshot_id)
    loaded = store.snapshots.load_snapshot(snapshot_id)
    assert [inventory.account.account_id for inventory in loaded] == account_ids
    assert loaded == [full_inventory(account_id) for account_id in account_ids]


def test_thousands_of_users_in_a_handful_of_queries(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    inventory = full_inventory()
    template = inventory.users[0]
    inventory.users = [
        User(
            name=f"user-{n:05d}",
            user_id=f"AIDA{n:016d}",
            arn=f"arn:aws:iam::111111111111:user/user-{n:05d}",
            access_keys=list(template.access_keys),
            mfa_devices=list(template.mfa_devices),
            attached_policies=list(template.attached_policies),
            inline_policies=list(template.inline_policies),
            groups=list(template.groups),
            tags=dict(template.tags),
            user_class=UserClass.UNUSED,
        )
        for n in range(3000)
    ]
    statements: list[str] = []
    event.listen(store._engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    began = time.perf_counter()
    store.snapshots.save_account_inventory(snapshot_id, inventory)
    saved = time.perf_counter()
    save_statements = len(statements)
    statements.clear()
    loaded = store.snapshots.load_snapshot(snapshot_id)
    loaded_at = time.perf_counter()
    assert loaded == [inventory]
    # One statement per table (executemany may batch into a few), never one per user.
    assert save_statements < 100
    assert len(statements) < 20
    assert saved - began < 30 and loaded_at - saved < 30


def test_sqlite_creates_the_directory_and_sets_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert path.is_file()
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_in_memory_sqlite_works_across_threads() -> None:
    with Store.open("sqlite://") as store:
        migration_id = store.migrations.ensure_migration("wave-1", {})
        snapshot_id = store.snapshots.new_snapshot(
            migration_id, store.runs.start_run(migration_id, "inventory")
        )
        with ThreadPoolExecutor(max_workers=4) as pool:
            accounts = [f"{n:012d}" for n in range(1, 9)]
            list(
                pool.map(
                    lambda a: store.snapshots.save_account_inventory(
                        snapshot_id, full_inventory(a)
                    ),
                    accounts,
                )
            )
        assert len(store.snapshots.load_snapshot(snapshot_id)) == 8


def test_open_failure_names_the_url_with_the_password_masked() -> None:
    url = "postgresql+psycopg://iamc:hunter2@127.0.0.1:1/state"
    with pytest.raises(StateError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "postgresql+psycopg://iamc:***@127.0.0.1:1/state" in message


def test_open_rejects_a_malformed_url() -> None:
    with pytest.raises(StateError, match="cannot open state DB"):
        Store.open("nosuchdialect://x")


def test_snapshot_loaded_without_policies_is_the_snapshot_less_its_policies(
    store: Store,
) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    store.snapshots.save_account_inventory(snapshot_id, full_inventory())
    statements: list[str] = []
    event.listen(store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    (loaded,) = store.snapshots.load_snapshot(snapshot_id, policies=False)

    expected = full_inventory()
    assert expected.managed_policies and any(u.inline_policies for u in expected.users)
    expected.managed_policies = []
    for group in expected.groups:
        group.attached_policies, group.inline_policies = [], []
    for user in expected.users:
        # A user's inline policies keep their names (whom iamc quarantined), not documents.
        user.attached_policies = []
        user.inline_policies = [InlinePolicy(p.name, {}) for p in user.inline_policies]
    assert loaded == expected
    # The documents are not even read.
    assert not [s for s in statements if "document" in s.split("FROM")[0].lower()]


def test_a_snapshot_loaded_for_some_accounts_is_those_accounts_whole(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    accounts = [f"{n:012d}" for n in range(1, 5)]
    for account_id in accounts:
        store.snapshots.save_account_inventory(snapshot_id, full_inventory(account_id))

    loaded = store.snapshots.load_snapshot(snapshot_id, accounts=[accounts[3], accounts[1]])

    assert loaded == [full_inventory(accounts[1]), full_inventory(accounts[3])]
    assert store.snapshots.load_snapshot(snapshot_id, accounts=[]) == []
    assert len(store.snapshots.load_snapshot(snapshot_id)) == 4


def test_resaving_one_account_concurrently_keeps_one_copy(store: Store) -> None:
    migration_id = store.migrations.ensure_migration("wave-1", {})
    snapshot_id = store.snapshots.new_snapshot(
        migration_id, store.runs.start_run(migration_id, "inventory")
    )
    start = threading.Barrier(6)

    def save(_: int) -> None:
        start.wait()
        store.snapshots.save_account_inventory(snapshot_id, full_inventory())

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(save, range(6)))
    assert store.snapshots.load_snapshot(snapshot_id) == [full_inventory()]


def test_stores_opened_at_once_upgrade_once(store_url: str, tmp_path: Path) -> None:
    # Separate processes, so the DB's own lock (advisory lock / BEGIN IMMEDIATE) is what
    # keeps them from running the DDL twice, not the in-process lock.
    go = tmp_path / "go"
    script = (
        "import sys, time, pathlib\n"
        "from state import Store\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "pathlib.Path(sys.argv[3]).touch()\n"
        "while not go.exists(): time.sleep(0.01)\n"
        "with Store.open(sys.argv[1]) as store:\n"
        "    print(store.migrations.ensure_migration('wave-1', {}))\n"
    )
    ready = [tmp_path / f"ready-{n}" for n in range(4)]
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url, str(go), str(flag)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    # Every interpreter has imported the store and waits on the file: then they all go at once
    # (a fixed sleep was too long on an idle machine and too short on a loaded one).
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready):
        assert time.monotonic() < deadline, "the openers did not start within 120 s"
        assert all(opener.poll() is None for opener in openers), "an opener ended early"
        time.sleep(0.02)
    go.touch()
    results = [opener.communicate(timeout=120) for opener in openers]
    assert [opener.returncode for opener in openers] == [0] * 4, [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1


def test_a_plans_header_and_provenance_read_without_its_content(store_url: str):
    """The plan flow reads back what it needs of a stored plan, not its whole content."""
    content = {"format": 2, "inventory_snapshot_id": 7, "mapping_run_id": None, "actions": [1]}
    with Store.open(store_url) as store:
        migration = store.migrations.ensure_migration("m", {})
        run = store.runs.start_run(migration, "plan")
        plan_id, reused = store.plans.save_plan(migration, run, "h" * 64, content, 0)
        assert not reused
        header = store.plans.get_plan(plan_id, with_content=False)
        assert header is not None and header.hash == "h" * 64 and header.content == {}
        assert store.plans.get_plan(plan_id).content == content
        provenance = store.plans.plan_provenance(
            plan_id, ("inventory_snapshot_id", "mapping_run_id")
        )
        assert provenance == {"inventory_snapshot_id": 7, "mapping_run_id": None}


def test_warm_up_models_configures_every_mapper_in_the_background() -> None:
    # A new interpreter: this one's mappers were configured by earlier tests.
    script = (
        "from state import models, warm_up_models\n"
        "mappers = list(models.Base.registry.mappers)\n"
        "before = any(m.configured for m in mappers)\n"
        "warm_up_models().join(timeout=60)\n"
        "print(before, all(m.configured for m in mappers), len(mappers))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out[:2] == ["False", "True"] and int(out[2]) > 5, out
