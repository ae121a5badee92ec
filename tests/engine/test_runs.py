"""Run lifecycle: interrupted and superseded runs are told apart from running and finished ones."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from domain.runs import RunInfo, StageLockInfo, this_process
from engine.runs import LOCK_STALE_AFTER, next_step, view_runs

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def hint(command: str) -> str:
    """What ``Migration.hint`` makes for a spec at ``spec.toml``."""
    return f"iamc {command} -c spec.toml"


def dead_process() -> str:
    """``host:pid`` of a process that has exited on this host."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return f"{this_process().rsplit(':', 1)[0]}:{child.stdout.strip()}"


def run(run_id: int, kind: str, status: str, process: str | None = None, **params) -> RunInfo:
    return RunInfo(
        id=run_id, migration="m", kind=kind, status=status, started=NOW, finished=None,
        params=params, summary=None, error=None, migration_id=1, process=process,
    )  # fmt: skip


def lease(run_id: int, age: timedelta, holder: str | None = None) -> StageLockInfo:
    holder = holder or f"{this_process()}:abcd1234"
    return StageLockInfo(1, "provision", holder, run_id, NOW - age, NOW - age)


def test_a_running_apply_with_a_live_lease_is_running_and_without_one_interrupted():
    runs = [run(1, "apply", "running", plan_id=1, stage="provision")]
    fresh = view_runs(runs, [lease(1, timedelta(seconds=5))], now=NOW)
    assert fresh[1].status == "running"
    lapsed = view_runs(runs, [lease(1, LOCK_STALE_AFTER + timedelta(seconds=1))], now=NOW)
    assert lapsed[1].status == "interrupted"
    assert view_runs(runs, [], now=NOW)[1].status == "interrupted"


def test_a_fresh_lease_whose_holder_died_on_this_host_is_interrupted_at_once():
    runs = [run(1, "apply", "running", plan_id=1, stage="provision")]
    dead = f"{dead_process()}:abcd1234"
    assert view_runs(runs, [lease(1, timedelta(seconds=1), dead)], now=NOW)[1].status == (
        "interrupted"
    )


def test_an_inventory_whose_process_is_gone_is_interrupted():
    assert view_runs([run(1, "inventory", "running", this_process())], [])[1].status == "running"
    assert view_runs([run(1, "inventory", "running", dead_process())], [])[1].status == (
        "interrupted"
    )
    # Another host: nothing to tell, so it stays as recorded.
    assert view_runs([run(1, "inventory", "running", "elsewhere:1")], [])[1].status == "running"


def test_only_the_latest_run_of_a_plan_stage_may_act():
    runs = [
        run(1, "apply", "succeeded", plan_id=1, stage="provision"),
        run(2, "rollback", "failed", plan_id=1, stage="provision"),
        run(3, "rollback", "succeeded", plan_id=1, stage="provision"),
        run(4, "apply", "failed", plan_id=1, stage="disable"),
        run(5, "apply", "running", plan_id=2, stage="provision"),
    ]
    views = view_runs(runs, [lease(5, timedelta(seconds=1))], now=NOW)
    assert (views[1].status, views[1].superseded_by) == ("succeeded", 3)
    assert (views[2].status, views[2].superseded_by) == ("superseded", 3)
    assert (views[3].status, views[3].superseded_by) == ("succeeded", None)
    assert (views[4].status, views[4].superseded_by) == ("failed", None)
    assert (views[5].status, views[5].superseded_by) == ("running", None)


def test_a_failed_or_interrupted_restore_run_says_how_to_resume_it():
    failed = view_runs([run(3, "restore", "failed", this_process(), user="1/jane")], [])[3]
    assert next_step(failed, hint) == "iamc resume 3 -c spec.toml"
    gone = view_runs([run(4, "restore", "running", dead_process(), user="1/jane")], [])[4]
    assert gone.status == "interrupted"
    assert next_step(gone, hint) == "iamc resume 4 -c spec.toml"
    done = view_runs([run(5, "restore", "succeeded", this_process(), user="1/jane")], [])[5]
    assert next_step(done, hint) is None
