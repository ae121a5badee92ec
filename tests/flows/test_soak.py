"""A randomized soak of one plan's provision stage: apply, kill, resume, roll back, in any order.

After every step Identity Center must hold exactly what the journal says (what is done exists,
what was rolled back does not; an action cut off mid-call may go either way), and a run that a
later run superseded must be refused without a single call. The seed is printed; set
IAMC_SOAK_SEED to replay a failure.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from domain.errors import ApplyRefused
from domain.plan import Stage
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.reports import load_plan
from engine.rollback import rollback_plan
from engine.runs import view_runs
from state import Store
from state.journal import DONE_STATUSES, ROLLBACK_PREFIX, ROLLED_BACK, STARTED

STEPS = 12
BUDGET_SECONDS = 35


def journal_bounds(store: Store, plan_id: int) -> tuple[set, set]:
    """(what must exist, what may exist) in Identity Center, by the journal alone."""
    entries = {e.action_id: e for e in store.journal.journal_entries(plan_id, Stage.PROVISION)}
    must, may = set(), set()
    for action_id, entry in entries.items():
        if action_id.startswith(ROLLBACK_PREFIX) or entry.kind == "provision-permission-set":
            continue
        action = entry.intent.get("action") or {}
        if entry.kind == "create-permission-set":
            key = ("set", action["target"])
        else:
            p = action["params"]
            key = ("assignment", p["account_id"], p["permission_set_name"],
                   p["principal_type"], p["principal_id"])  # fmt: skip
        undo = entries.get(ROLLBACK_PREFIX + action_id)
        undoing = undo is not None and undo.status == STARTED
        if entry.status in DONE_STATUSES and not undoing:
            must.add(key)
        if entry.status in DONE_STATUSES or entry.status == STARTED or undoing:
            may.add(key)
        if entry.status == ROLLED_BACK:
            must.discard(key)
    return must, may


def live_keys(kit, world) -> set:
    state = kit.live_state(world)
    keys = {("set", name) for name in state["permission_sets"]}
    keys |= {("assignment", *assignment) for assignment in state["assignments"]}
    return keys


def test_random_kills_resumes_and_rollbacks_keep_aws_equal_to_the_journal(
    clean, kit, tmp_path: Path
):
    seed = int(os.environ.get("IAMC_SOAK_SEED") or random.SystemRandom().randrange(10**6))
    print(f"soak seed {seed} (IAMC_SOAK_SEED={seed} replays it)")
    rng = random.Random(seed)
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    forward = [a.id for a in plan.actions if a.stage == Stage.PROVISION]
    url = f"sqlite:///{tmp_path / 'state.db'}"
    started = time.monotonic()
    history = []
    for step in range(STEPS):
        if time.monotonic() - started > BUDGET_SECONDS:
            break
        with Store.open(url) as store:
            runs = [r for r in store.runs.list_runs() if r.kind in ("apply", "rollback")]
            views = view_runs(runs, store.leases.list_stage_locks())
        latest = max(runs, key=lambda r: r.id) if runs else None
        applies = [r for r in runs if r.kind == "apply"]
        choices = ["apply"]
        if latest is not None and views[latest.id].status != "succeeded":
            choices.append("resume")
        if applies:
            choices.append("rollback")
        if any(views[r.id].status == "superseded" for r in runs):
            choices.append("stale")
        op = rng.choice(choices)
        fault = None
        if rng.random() < 0.6:
            victim = rng.choice(forward)
            rolling = op == "rollback" or (op == "resume" and latest.kind == "rollback")
            fault = (ROLLBACK_PREFIX + victim if rolling else victim,
                     rng.choice([AFTER_INTENT, AFTER_CALL]))  # fmt: skip
        history.append((step, op, fault))
        context = f"seed {seed}, steps {history}"
        try:
            if op == "apply":
                apply_plan(spec, plan_id, fault=fault, poll=kit.QUICK)
            elif op == "resume" and latest.kind == "apply":
                apply_plan(spec, plan_id, resume_run_id=latest.id, fault=fault, poll=kit.QUICK)
            elif op == "resume":
                rollback_plan(
                    spec, int(latest.params["of_run"]), resume_run_id=latest.id, fault=fault,
                    poll=kit.QUICK,
                )  # fmt: skip
            elif op == "rollback":
                rollback_plan(spec, rng.choice(applies).id, fault=fault, poll=kit.QUICK)
            else:
                stale = rng.choice([r for r in runs if views[r.id].status == "superseded"])
                clean.control.reset_calls()
                with pytest.raises(ApplyRefused, match="superseded"):
                    if stale.kind == "apply":
                        apply_plan(spec, plan_id, resume_run_id=stale.id, poll=kit.QUICK)
                    else:
                        rollback_plan(spec, int(stale.params["of_run"]),
                                      resume_run_id=stale.id, poll=kit.QUICK)  # fmt: skip
                mutations = {
                    k: v
                    for k, v in clean.control.calls()["calls"].items()
                    if k.split(":")[1].startswith(("Create", "Delete", "Provision", "Put"))
                }
                assert mutations == {}, context
        except InjectedCrash:
            pass
        with Store.open(url) as store:
            must, may = journal_bounds(store, plan_id)
        live = live_keys(kit, clean)
        assert must <= live, f"{context}: journal says done, AWS lacks {must - live}"
        assert live <= may, f"{context}: AWS holds what the journal does not: {live - may}"
