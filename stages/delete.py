"""The delete stage: after the bake period, snapshot each user, then delete it in AWS's order.

Irreversible (a re-created user gets a new unique id): approved on its own, quoting how many
IAM users it deletes, and capped per run and per account (``[decommission]``). Before a user's
first change in every run it re-proves, live, that the user is the planned one, not protected,
and ready for deletion (``stages.delete_readiness``); a user already gone passes (its steps find
nothing to remove). ``iamc restore`` re-creates what AWS allows from the snapshots.

The AWS adapters are imported inside the functions that run the stage: listing the stages
imports no AWS SDK (``tests/iamc/test_read_only_imports.py``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from domain.deletion import deletes_in, over_delete_cap, users_to_delete
from domain.errors import ApplyRefused
from domain.plan import PlanAction, Stage
from domain.planning import PlanInputs
from domain.records import User
from domain.stages import ON_ITS_OWN, StageDefinition, register
from domain.teardown import TEARDOWN
from engine.preconditions import IDENTITY, PROTECTION, StagePreconditions, UserCheck
from engine.stage_run import AccountReport, StageRun, UserWork
from stages import retire
from stages.disable import DISABLED_OUTCOMES
from stages.retire import retire_account

if TYPE_CHECKING:
    from tasks.handler import Handler
    from tasks.iam_user_live import LiveUser


def plan_actions(inputs: PlanInputs) -> list[PlanAction]:
    """For every user the disable stage plans: a snapshot, then each teardown step."""
    bake_days = inputs.settings.get("bake_days", 14)
    actions: list[PlanAction] = []
    for user_plan in inputs.users:
        if user_plan.outcome not in DISABLED_OUTCOMES:
            continue
        record = inputs.records[(user_plan.account_id, user_plan.user)]
        actions.extend(
            _delete_actions(user_plan.account_id, record, user_plan.target_fingerprint, bake_days)
        )
    return actions


def _delete_actions(
    account_id: str, user: User, fingerprint: str, bake_days: int
) -> list[PlanAction]:
    base = f"delete:{account_id}:{user.name}"
    snapshot_id = f"{base}:00-snapshot-user"
    actions = [
        PlanAction(
            id=snapshot_id,
            stage=Stage.DELETE,
            kind="snapshot-user",
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={"user": user.name, "not_before_days_after_disable": bake_days},
            depends_on=[f"disable:{account_id}:{user.name}:attach-quarantine-policy"],
        )
    ]
    previous = snapshot_id
    for position, step in enumerate(TEARDOWN, start=1):
        items = step.items(user)
        if not items:
            continue
        action_id = f"{base}:{position:02d}-{step.kind}"
        actions.append(
            PlanAction(
                id=action_id,
                stage=Stage.DELETE,
                kind=step.kind,
                account_id=account_id,
                target=user.name,
                target_fingerprint=fingerprint,
                params={"user": user.name, "items": items},
                irreversible=True,
                depends_on=[previous],
            )
        )
        previous = action_id
    return actions


# -- live preconditions and the run --------------------------------------------------------------


def ready_for_deletion(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """Disabled by this migration at least ``bake_days`` ago and not brought back since, no use
    since (CloudTrail, last-used), no active credential, quarantine unchanged, and no resource
    policy anywhere in scope naming it."""
    from stages.delete_readiness import delete_preconditions  # CloudTrail, resource policies

    return delete_preconditions(rt, work, live)


PRECONDITIONS = StagePreconditions(
    per_account=(),
    per_user=(
        IDENTITY,
        PROTECTION,
        UserCheck(
            "ready-for-deletion",
            "disabled by this migration >= bake_days ago and not rolled back, no use since, "
            "no active credential, quarantine unchanged, no resource policy naming it",
            ready_for_deletion,
        ),
    ),
    gone_is_done=True,
)


def check_delete_cap(rt: StageRun, actions: list[PlanAction]) -> None:
    """The blast-radius cap: refuse a delete run that would delete more users than allowed.

    Counts the stage's users the journal does not have as deleted, in all and per account,
    before any AWS call; users the bake check would still hold are counted too (a bound).

    Raises:
        ApplyRefused: over ``[decommission] max_deletes_per_run`` or
            ``max_deletes_per_account``, saying by how much; nothing was changed.
    """
    done = {
        e.action_id for e in rt.store.journal.journal_entries(rt.plan_id, Stage.DELETE) if e.done
    }
    caps = rt.spec.decommission
    excess = over_delete_cap(
        users_to_delete(actions, done), caps.max_deletes_per_run, caps.max_deletes_per_account
    )
    if excess:
        raise ApplyRefused(
            f"plan {rt.plan_id} stage delete is over the blast-radius cap; nothing was changed, "
            "no user was deleted:\n  " + "\n  ".join(excess) + "\nRaise [decommission] "
            "max_deletes_per_run / max_deletes_per_account in the spec (a reviewed change), or "
            "plan and delete in smaller waves"
        )


def handlers() -> dict[str, Handler]:
    """Action kind -> how it is done and checked (the adapters, on first use)."""
    from tasks.user_teardown import HANDLERS

    return HANDLERS


def _store_snapshot(rt: StageRun, account_id: str, user: str, content: dict[str, Any]) -> None:
    rt.store.retired.save_user_snapshot(
        migration_id=rt.migration_id,
        plan_id=rt.plan_id,
        run_id=rt.executor.run_id,
        account_id=account_id,
        user_name=user,
        user_id=content["user_id"],
        arn=content["arn"],
        taken=rt.clock(),
        content=content,
    )


def per_account(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """Each user's snapshot is stored before its first removal; then as ``stages.retire``."""
    if rt.ctx.snapshot_sink is None:  # every account's task sets the same one
        rt.ctx.snapshot_sink = functools.partial(_store_snapshot, rt)
    return retire_account(rt, account_id, actions, Stage.DELETE)


DELETE = register(
    StageDefinition(
        name=Stage.DELETE,
        order=3,
        summary="after the bake period: snapshot, then delete each user in AWS's order",
        plan_actions=plan_actions,
        handlers=handlers,
        per_account=per_account,
        # Read when the stage runs: the retire bench sets it to its account count.
        accounts_at_once=lambda: retire.RETIRE_ACCOUNT_CONCURRENCY,
        irreversible_hint=(
            "deleted IAM users, which can't be undone (a re-created user gets a new unique id); "
            "nothing was changed. Re-create what AWS allows from the snapshots: "
            "'iamc restore -c {spec} --run {run}' or 'iamc restore -c {spec} ACCOUNT/NAME'"
        ),
        preconditions=PRECONDITIONS,
        before_run=(check_delete_cap,),
        approval=ON_ITS_OWN,
        approval_count=deletes_in,
        takes_access_away=True,
    )
)
