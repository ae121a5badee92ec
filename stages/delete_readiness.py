"""The delete stage's readiness check, re-proved live before a user's first change in every run.

A user is deleted only if, checked live at that moment (``engine.preconditions`` runs this after
the identity and protection checks, in a first run, a resume and a Retry alike): this migration
disabled it (journal) at least ``bake_days`` ago and no rollback brought it back since, nothing
shows it was used or tried since (CloudTrail and key last-used dates, looked up again now, plus
what the bake watch recorded) unless a person recorded a decision after the newest evidence, it
has no active credential, its quarantine policy is the planned one (until this stage's own
teardown removes it), and no resource policy names it. Otherwise the user is refused with the
reasons and the other users go on.
"""

from __future__ import annotations

import json
import threading

from domain.plan import PlanAction, Stage
from domain.retire import BakeState, bake_status
from engine.stage_run import StageRun, UserWork
from state.journal import DONE_STATUSES, ROLLBACK_PREFIX, ROLLED_BACK
from tasks.cloudtrail import GLOBAL_EVENTS_REGION, collect_evidence
from tasks.iam_user_live import LiveUser
from tasks.resource_policies import OrgPolicies
from tasks.user_disable import AttachQuarantinePolicy, unplanned_credentials

_POLICY_LOCK = threading.Lock()


def org_policies(rt: StageRun) -> OrgPolicies:
    """The resource policies and KMS grants of every in-scope account (the plan's inventory
    covers the whole scope) in every enabled region, or ``[decommission] reference_regions``:
    any account may name any user. One per run, read on the first user's check."""
    with _POLICY_LOCK:
        found = rt.ctx.shared.get("org-policies")
        if found is None:
            found = rt.ctx.shared["org-policies"] = OrgPolicies(
                lambda: [
                    inventory.account.account_id
                    for inventory in rt.store.snapshots.load_snapshot(
                        rt.plan.inventory_snapshot_id, policies=False
                    )
                ],
                rt.ctx.member,
                regions=rt.spec.decommission.reference_regions,
            )
        return found


def _disable_actions(rt: StageRun, work: UserWork) -> list[PlanAction]:
    return [
        a
        for a in rt.plan.actions
        if a.stage == Stage.DISABLE and a.account_id == work.account_id and a.target == work.user
    ]


def _bake_days(rt: StageRun, work: UserWork) -> int:
    planned = max(
        (int(a.params.get("not_before_days_after_disable", 0)) for a in work.actions),
        default=0,
    )
    # The longer of what the change board approved and what the spec says now.
    return max(planned, rt.spec.decommission.bake_days)


def _quarantine_removed_by_us(rt: StageRun, work: UserWork) -> bool:
    """Whether this stage's own teardown has begun removing the user's inline policies."""
    return any(
        rt.store.journal.journal_entry(rt.plan_id, a.id) is not None
        for a in work.actions
        if a.kind == "delete-inline-policy"
    )


def delete_preconditions(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """Why this user may not be deleted now; empty when it may.

    Reads live: CloudTrail and key last-used (recorded as evidence), the user's credentials
    and quarantine, and the resource policies that could name it.
    """
    if rt.store.retired.restore_rows(rt.plan_id, work.account_id, work.user):
        # 'iamc restore' rebuilt it after its deletion stopped half-way: finishing undoes that.
        return ["restored while its deletion was unfinished; plan it again"]
    disable = _disable_actions(rt, work)
    entries = {a.id: rt.store.journal.journal_entry(rt.plan_id, a.id) for a in disable}
    quarantine = next((a for a in disable if a.kind == "attach-quarantine-policy"), None)
    entry = entries.get(quarantine.id) if quarantine else None
    if quarantine is None or entry is None or entry.status not in DONE_STATUSES:
        if entry is not None and entry.status == ROLLED_BACK:
            return ["re-enabled: its disable was rolled back; disable it again first"]
        return ["not disabled by this migration yet: apply the disable stage first"]
    undoing = [
        a.kind
        for a in disable
        if rt.store.journal.journal_entry(rt.plan_id, ROLLBACK_PREFIX + a.id)
    ]
    if undoing:
        return [
            f"a rollback of its disable began ({', '.join(undoing)}) and did not finish: "
            "resume that rollback run (iamc runs shows it), then disable it again"
        ]
    unfinished = [a.kind for a in disable if (e := entries[a.id]) is None or not e.done]
    if unfinished:
        return [f"its disable is not finished ({', '.join(unfinished)}): resume the disable run"]
    disabled_at = entry.finished
    assert disabled_at is not None
    problems: list[str] = []
    account_id, user = work.account_id, work.user
    session = rt.ctx.member(account_id)
    keys = tuple(a.params["access_key_id"] for a in disable if "access_key_id" in a.params)
    fresh = collect_evidence(
        session,
        account_id,
        user,
        disabled_at,
        regions=(GLOBAL_EVENTS_REGION, rt.spec.region),
        access_key_ids=keys,
    )
    rt.store.retired.add_use_evidence(rt.migration_id, fresh)
    verdict = bake_status(
        account_id=account_id,
        user_name=user,
        plan_id=rt.plan_id,
        disabled_at=disabled_at,
        bake_days=_bake_days(rt, work),
        evidence=rt.store.retired.use_evidence(rt.migration_id, account_id, user),
        decisions=rt.store.retired.bake_decisions(rt.migration_id, account_id, user),
        now=rt.clock(),
    )
    if verdict.state != BakeState.READY:
        problems.append(f"{verdict.state}: {verdict.reason}")
    iam = rt.ctx.iam(account_id)
    active = unplanned_credentials(iam, user, set())
    if active is None:
        return problems  # already gone: the teardown steps will find nothing to remove
    if active:
        problems.append(f"re-enabled outside iamc: active {', '.join(active)}")
    if not _quarantine_removed_by_us(rt, work):
        found = AttachQuarantinePolicy().probe(rt.ctx, quarantine)
        if not found.exists:
            problems.append("its quarantine policy was removed outside iamc")
        elif found.difference:
            problems.append(f"its quarantine policy was changed outside iamc ({found.difference})")
    problems.extend(_named_in_resource_policies(rt, live))
    return problems


def _named_in_resource_policies(rt: StageRun, live: LiveUser) -> list[str]:
    """Resource policies anywhere in scope that name the user, and those that can't be read."""
    problems: list[str] = []
    policies = org_policies(rt)
    for reference in policies.references_to(live.arn, live.user_id):
        problems.append(
            f"named in {reference.describe()}: {json.dumps(reference.statement, sort_keys=True)}"
            " (AWS would leave a dangling unique id there; remove the grant first)"
        )
    if policies.gaps:
        problems.append(
            "resource policies that could not be read (a reference can't be ruled out): "
            + "; ".join(policies.gaps[:5])
            + (f" and {len(policies.gaps) - 5} more" if len(policies.gaps) > 5 else "")
        )
    return problems
