"""A stage added as a plug-in touches only its own module and one registration line.

The stage below is the whole of a new stage: it plans one "note" per user the plan retires,
its handler changes nothing in AWS and undoes nothing, and it declares its (empty) live
preconditions. The test registers it (its one line), then takes it through the runbook as an
operator would: planned, approved, applied, crashed and resumed, rolled back, and shown in
``iamc status`` and the Prefect UI's table — with no other file knowing it exists.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from console.artifacts import status_table
from domain.plan import Outcome, PlanAction, Stage
from domain.planning import PlanInputs
from domain.stages import ON_ITS_OWN, StageDefinition, register, stage_names, unregister
from engine.apply import apply_plan
from engine.executor import AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.preconditions import StagePreconditions
from engine.rollback import rollback_plan
from engine.stage_run import AccountReport, StageRun, run_one
from flows.apply import resume
from iamc.views.apply import print_status
from state import Store
from tasks.handler import Done, Live

# -- the whole of the example stage --------------------------------------------------------------

NOTED: list[str] = []
UNDONE: list[str] = []


class Note:
    """Notes a user (in this test's list): nothing in AWS is read or changed."""

    PERMISSIONS: tuple[str, ...] = ()

    def probe(self, ctx: Any, action: PlanAction) -> Live:
        return Live(exists=action.target in NOTED)

    def apply(
        self, ctx: Any, action: PlanAction, live: Live, progress: Callable, prior: Any
    ) -> Done:
        if not live.exists:
            NOTED.append(action.target)
        return Done(outcome={"noted": action.target}, undo={"user": action.target})

    def undo(self, ctx: Any, entry: Any) -> dict[str, Any]:
        UNDONE.append(entry.undo["user"])
        return {"unnoted": entry.undo["user"]}


def plan_notes(inputs: PlanInputs) -> list[PlanAction]:
    return [
        PlanAction(
            id=f"example:{u.account_id}:{u.user}:note",
            stage=Stage("example"),
            kind="example-note",
            account_id=u.account_id,
            target=u.user,
            target_fingerprint=u.target_fingerprint,
            params={"user": u.user},
        )
        for u in inputs.users
        if u.outcome in (Outcome.MIGRATE, Outcome.RETIRE)
    ]


def note_account(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    report = AccountReport(account_id)
    for action in actions:
        run_one(rt, action, report)
    return report


EXAMPLE = StageDefinition(
    name="example",
    order=4,
    summary="note each retired user (an example: changes nothing)",
    plan_actions=plan_notes,
    handlers=lambda: {"example-note": Note()},
    per_account=note_account,
    undo_order=("example-note",),
    preconditions=StagePreconditions(per_account=("nothing: it changes nothing",), per_user=()),
    approval=ON_ITS_OWN,
)

# -------------------------------------------------------------------------------------------------


@pytest.fixture
def example_stage() -> Iterator[StageDefinition]:
    NOTED.clear()
    UNDONE.clear()
    register(EXAMPLE)  # the one registration line
    try:
        yield EXAMPLE
    finally:
        unregister(EXAMPLE.name)


def _runs(tmp_path: Path) -> list[Any]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return store.runs.list_runs()


def test_an_example_stage_is_planned_approved_applied_resumed_rolled_back_and_shown(
    clean, retire_kit, tmp_path: Path, example_stage: StageDefinition
):
    world, kit = clean, retire_kit
    assert stage_names()[-1] == "example"
    prefix = f"x{uuid.uuid4().hex[:6]}-"
    a1, a2 = world.accounts
    kit.seed_user(world, a1, f"{prefix}jane", keys=1)
    kit.seed_user(world, a2, f"{prefix}bob", keys=1)
    # Planned, and approved on its own (as the stage declares), beside the runbook's stages.
    spec, plan_id = kit.write_retire_plan(
        world, tmp_path, prefix, approve=("all", "delete", "example")
    )
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        content = store.plans.get_plan(plan_id).content
    notes = [a for a in content["actions"] if a["stage"] == "example"]
    assert sorted(a["target"] for a in notes) == [f"{prefix}bob", f"{prefix}jane"]
    assert content["actions"][-1]["stage"] == "example"  # planned after the others

    # Applied, cut off after the first note's intent, then resumed: each user noted once.
    first = sorted(a["id"] for a in notes)[0]
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, "example", fault=(first, AFTER_INTENT))
    crashed = _runs(tmp_path)[-1]
    assert crashed.params["stage"] == "example"
    summary = resume(str(spec), crashed.id)
    assert summary["succeeded"] + summary["adopted"] == 2 and summary["failed"] == 0
    assert sorted(NOTED) == [f"{prefix}bob", f"{prefix}jane"]

    # Shown in iamc status and in the UI's table, per account.
    out = io.StringIO()
    print_status(Console(file=out, width=200), spec, crashed.id)
    assert "example" in out.getvalue()
    rows, description, _ = Migration.call(status_table, str(spec), crashed.id)
    assert {r["account"].split()[0] for r in rows} >= {a1, a2}
    assert "example" in description

    # Rolled back: every note undone, newest first.
    rolled = rollback_plan(spec, crashed.id)
    assert rolled["stage"] == "example"
    assert sorted(UNDONE) == [f"{prefix}bob", f"{prefix}jane"]


def test_an_unregistered_stage_is_refused_by_name(clean, retire_kit, tmp_path: Path):
    from domain.errors import ApplyRefused

    world, kit = clean, retire_kit
    prefix = f"y{uuid.uuid4().hex[:6]}-"
    kit.seed_user(world, world.accounts[0], f"{prefix}ann", keys=1)
    spec, plan_id = kit.write_retire_plan(world, tmp_path, prefix)
    with pytest.raises(ApplyRefused, match="expected one of provision, replace, disable, delete"):
        apply_plan(spec, plan_id, "example")
