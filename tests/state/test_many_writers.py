"""Many writers on one PostgreSQL state DB: real OS processes racing the same rows at once.

A work pool's workers (several machines) write one state DB. Each test starts N processes
that open the store, wait at a common start line and do the same write at once; what the
DB holds afterwards must be what one-at-a-time writers would have left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from domain.runs import this_process
from state import Store
from state.engine import code_head

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]

# One interpreter imports what the racers need once, then forks them: each racer is its own
# OS process with its own connections (opened after the fork), released at once by a barrier.
# (A fresh interpreter per racer costs ~1.6 s of CPU in imports: 8 of them, most of a test.)
_HARNESS = """
import json, multiprocessing, sys
url, n = sys.argv[1], int(sys.argv[2])
{imports}

def racer(i, barrier, results):
{setup}
    barrier.wait(timeout=60)
    try:
{race}
        results.put((i, {{"ok": result}}))
    except Exception as err:
        results.put((i, {{"error": f"{{type(err).__name__}}: {{err}}"}}))

ctx = multiprocessing.get_context("fork")
barrier, results = ctx.Barrier(n), ctx.Queue()
racers = [ctx.Process(target=racer, args=(i, barrier, results)) for i in range(n)]
for process in racers:
    process.start()
done = dict(results.get(timeout=120) for _ in racers)
for process in racers:
    process.join(timeout=30)
print(json.dumps([done[i] for i in range(n)]))
"""


def race(
    url: str,
    race_code: str,
    *,
    n: int = 8,
    imports: str = "from state import Store",
    setup: str = "store = Store.open(url)",
) -> list[dict]:
    """Run ``race_code`` in ``n`` processes released at once; their results, racer by racer.

    Each racer runs ``setup`` (default: open the store) before the start line; both see
    ``url`` and ``i`` (the racer's number); ``race_code`` sets ``result`` (JSON).
    """

    def indent(code: str, by: int) -> str:
        return textwrap.indent(textwrap.dedent(code).strip(), " " * by)

    script = _HARNESS.format(imports=imports, setup=indent(setup, 4), race=indent(race_code, 8))
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def pg_url(store_url: str) -> str:
    if not store_url.startswith("postgresql"):
        pytest.skip("races between processes on one machine's SQLite are not the work pool's")
    return store_url


def _plan(store: Store) -> tuple[int, int, int]:
    migration = store.migrations.ensure_migration("wave-1", {})
    run = store.runs.start_run(migration, "apply")
    plan_id, _ = store.plans.save_plan(migration, run, "0" * 64, {"actions": []}, 0)
    return migration, run, plan_id


def _scalar(url: str, sql: str, **params: object) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


# -- schema upgrades ------------------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_four_processes_upgrading_a_fresh_db_upgrade_it_once(pg_url: str) -> None:
    results = race(
        pg_url,
        "before, head = upgrade_schema(url)\nresult = [list(before), head]",
        n=4,
        imports="import alembic.command\nfrom state.store import upgrade_schema",
        setup="pass",
    )
    head = code_head()
    assert all("ok" in r for r in results), results
    # One found it empty and ran the DDL; the others waited on the lock and found it done.
    assert sorted(r["ok"][0] for r in results) == [[], [head], [head], [head]]
    assert _scalar(pg_url, "SELECT count(*) FROM alembic_version") == 1
    assert _scalar(pg_url, "SELECT version_num FROM alembic_version") == head


# -- leases ---------------------------------------------------------------------------------


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(done.stdout)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_eight_processes_taking_over_a_gone_holders_lease_one_wins(pg_url: str) -> None:
    """The holder's process is dead on this host: each racer may take over without waiting
    out the lease (engine.lease._take) — but only one of them; before the takeover was a
    compare-and-set on the dead holder, each took it from the one before (4-7 of 8 won)."""
    import socket

    with Store.open(pg_url) as store:
        _, _, plan = _plan(store)
        dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
        assert (
            store.leases.acquire_stage_lock(
                plan, "provision", dead, stale_after=timedelta(minutes=2)
            )
            is None
        )
    results = race(
        pg_url,
        f"""
        try:
            _take(store, {plan}, "provision", f"racer-{{i}}:1:x", "provision")
            result = "won"
        except ApplyRefused as err:
            result = "refused"
        """,
        imports="from state import Store\nfrom engine.lease import _take\n"
        "from domain.errors import ApplyRefused",
    )
    assert all("ok" in r for r in results), results
    winners = [i for i, r in enumerate(results) if r["ok"] == "won"]
    assert len(winners) == 1, results
    with Store.open(pg_url) as store:
        (lock,) = store.leases.list_stage_locks()
    assert lock.holder == f"racer-{winners[0]}:1:x"


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_eight_processes_taking_a_stale_lease_one_wins(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        _, _, plan = _plan(store)
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        store.leases.acquire_stage_lock(
            plan, "provision", "elsewhere:1:x", stale_after=timedelta(minutes=2), now=long_ago
        )
    results = race(
        pg_url,
        f"""
        from datetime import timedelta
        blocker = store.leases.acquire_stage_lock(
            {plan}, "provision", f"racer-{{i}}", stale_after=timedelta(minutes=2)
        )
        result = None if blocker is None else blocker.holder
        """,
    )
    assert all("ok" in r for r in results), results
    winners = [i for i, r in enumerate(results) if r["ok"] is None]
    assert len(winners) == 1, results
    # Every loser was refused with the winner's lease, not the stale one.
    assert {r["ok"] for r in results} - {None} == {f"racer-{winners[0]}"}


# -- journal --------------------------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_eight_intents_for_one_action_at_once_make_one_row_counting_each(pg_url: str) -> None:
    """Before the intent was one INSERT ... ON CONFLICT statement, the processes that lost
    the insert race failed with a duplicate-key StateError."""
    with Store.open(pg_url) as store:
        _, run, plan = _plan(store)
    results = race(
        pg_url,
        f"""
        entry = store.journal.journal_intent(
            run_id={run}, plan_id={plan}, stage="provision", action_id="provision:a:b",
            kind="create-user", account_id="111111111111", intent={{"by": i}},
        )
        result = entry.attempts
        """,
    )
    assert all("ok" in r for r in results), results
    assert sorted(r["ok"] for r in results) == list(range(1, 9))
    assert _scalar(pg_url, "SELECT count(*) FROM journal") == 1
    assert _scalar(pg_url, "SELECT attempts FROM journal") == 8


# -- user snapshots and use evidence --------------------------------------------------------

_SNAPSHOT = """
from datetime import UTC, datetime
result = store.retired.save_user_snapshot(
    migration_id={migration}, plan_id={plan}, run_id={run}, account_id="111111111111",
    user_name="alice", user_id="AIDAALICE", arn="arn:aws:iam::111111111111:user/alice",
    taken=datetime.now(UTC), content={content},
)
"""


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_eight_snapshots_of_an_unchanged_user_at_once_store_one(pg_url: str) -> None:
    """Before a user's saves queued on its lock, each process compared with the same newest
    version (none) and stored its own copy: 8 identical versions."""
    with Store.open(pg_url) as store:
        migration, run, plan = _plan(store)
    code = _SNAPSHOT.format(
        migration=migration, plan=plan, run=run, content='{"path": "/", "tags": {}}'
    )
    results = race(pg_url, code)
    assert all("ok" in r for r in results), results
    assert len({r["ok"] for r in results}) == 1
    assert _scalar(pg_url, "SELECT count(*) FROM user_snapshots") == 1


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_eight_differing_snapshots_at_once_are_each_a_version(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        migration, run, plan = _plan(store)
    code = _SNAPSHOT.format(
        migration=migration, plan=plan, run=run, content='{"path": "/", "tags": {"n": str(i)}}'
    )
    results = race(pg_url, code)
    assert all("ok" in r for r in results), results
    assert len({r["ok"] for r in results}) == 8
    with Store.open(pg_url) as store:
        stored = store.retired.user_snapshots(migration, user_name="alice")
    assert sorted(s.content["tags"]["n"] for s in stored) == [str(i) for i in range(8)]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_the_same_use_evidence_recorded_at_once_is_one_row(pg_url: str) -> None:
    """Before ON CONFLICT DO NOTHING, the losers of the insert race failed (duplicate key)."""
    with Store.open(pg_url) as store:
        migration, _, _ = _plan(store)
    results = race(
        pg_url,
        f"""
        from datetime import UTC, datetime
        from domain.retire import UseEvidence
        evidence = [
            UseEvidence(
                account_id="111111111111", user_name="alice", event_key=f"event-{{k}}",
                source="cloudtrail", event_time=datetime(2026, 1, 1, tzinfo=UTC),
                event_name="GetObject",
            )
            for k in range(5)
        ]
        result = store.retired.add_use_evidence({migration}, evidence)
        """,
        n=6,
    )
    assert all("ok" in r for r in results), results
    assert sum(r["ok"] for r in results) == 5  # each event counted new once, by someone
    assert _scalar(pg_url, "SELECT count(*) FROM use_evidence") == 5


# -- approvals, migrations, runs ------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_approvals_at_once_one_per_stage_none_lost(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        _, _, plan = _plan(store)
    # Racers 0-3 approve provision, 4-7 disable: one of each is recorded, the rest refused.
    results = race(
        pg_url,
        f"""
        stage = "provision" if i < 4 else "disable"
        earlier = store.plans.record_approval(
            {plan}, stage=stage, decision="approved", approver=f"racer-{{i}}", ticket="T-1",
            comment="", plan_hash="0" * 64, overlapping_stages={{stage}},
        )
        result = None if earlier is None else earlier.approver
        """,
    )
    assert all("ok" in r for r in results), results
    with Store.open(pg_url) as store:
        info = store.plans.get_plan(plan, with_content=False)
    assert info is not None
    recorded = {a.stage: a.approver for a in info.approvals}
    assert len(info.approvals) == 2 and set(recorded) == {"provision", "disable"}
    for i, r in enumerate(results):
        stage = "provision" if i < 4 else "disable"
        # The recorded one got None; each refused one was shown the recorded decision.
        assert r["ok"] == (None if recorded[stage] == f"racer-{i}" else recorded[stage])


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_migration_and_runs_at_once_one_migration_distinct_runs(pg_url: str) -> None:
    Store.open(pg_url).close()
    results = race(
        pg_url,
        """
        migration = store.migrations.ensure_migration("wave-1", {"n": i})
        result = [migration, store.runs.start_run(migration, "inventory")]
        """,
    )
    assert all("ok" in r for r in results), results
    assert len({r["ok"][0] for r in results}) == 1
    assert len({r["ok"][1] for r in results}) == 8
    assert _scalar(pg_url, "SELECT count(*) FROM migrations") == 1


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_run_another_process_continues_is_not_finished_by_its_first(pg_url: str) -> None:
    """A presumed-dead process that wakes up and ends its run leaves the run to the worker
    that resumed it; before finish_run was a compare-and-set on the run's process, it
    overwrote the resumed run's status with its own."""
    with Store.open(pg_url) as store:
        migration = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration, "apply")
    (resumed,) = race(pg_url, f"store.runs.reopen_run({run})\nresult = 'resumed'", n=1)
    assert resumed == {"ok": "resumed"}
    with Store.open(pg_url) as store:
        recorded = store.runs.finish_run(run, "failed", error="lost my lease")
        info = store.runs.get_run(run)
    assert info.status == "running" and info.error is None
    assert info.process != this_process()
    assert recorded is False


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_rejection_of_all_and_an_approval_of_delete_at_once_never_both(pg_url: str) -> None:
    """engine.approvals.record checked "all was rejected" before the locked transaction; an
    approval of delete made meanwhile was recorded beside the rejection. Now the check is
    inside it (rejected_stages): whichever comes first stands, the other is refused."""
    from domain.stages import approval_choices

    with Store.open(pg_url) as store:
        _, _, plan = _plan(store)
    everything = sorted(str(choice) for choice in approval_choices())
    results = race(
        pg_url,
        f"""
        rejecting = i % 2 == 0
        earlier = store.plans.record_approval(
            {plan}, stage="all" if rejecting else "delete",
            decision="rejected" if rejecting else "approved", approver=f"racer-{{i}}",
            ticket="T-1", comment="", plan_hash="0" * 64,
            overlapping_stages=set({everything!r}) if rejecting else {{"delete"}},
            rejected_stages=frozenset() if rejecting else frozenset({{"all"}}),
        )
        result = earlier is None
        """,
    )
    assert all("ok" in r for r in results), results
    assert sum(r["ok"] for r in results) == 1
    with Store.open(pg_url) as store:
        info = store.plans.get_plan(plan, with_content=False)
    assert info is not None and len(info.approvals) == 1
