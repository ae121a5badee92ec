"""The delete stage's per-user work: preconditions right before the first delete action.

A user is deleted only if, checked live at that moment: this migration disabled it (journal)
at least ``bake_days`` ago, nothing shows it was used or tried since (CloudTrail and key
last-used dates, looked up again now, plus what the bake watch recorded) unless a person
recorded a decision after the newest evidence, it is still quarantined with no active
credential, and no resource policy of its account names it. Otherwise the user is refused
with the reasons and the other users go on.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from domain.plan import PlanAction, Stage
from domain.retire import BakeState, bake_status
from state.journal import DONE_STATUSES, ROLLED_BACK
from tasks.cloudtrail import GLOBAL_EVENTS_REGION, collect_evidence
from tasks.resource_policies import AccountPolicies, read_account_policies
from tasks.user_disable import AttachQuarantinePolicy, unplanned_credentials

if TYPE_CHECKING:
    from flows.apply import AccountReport, _Runtime
    from flows.retire import UserWork

_POLICY_LOCK = threading.Lock()


def _irreversible_started(rt: _Runtime, work: UserWork) -> bool:
    for action in work.actions:
        if not action.irreversible:
            continue
        if rt.store.journal_entry(rt.plan_id, action.id) is not None:
            return True
    return False


def account_policies(rt: _Runtime, account_id: str) -> AccountPolicies:
    """The account's resource policies, read once per run (shared by its users' checks)."""
    with _POLICY_LOCK:
        locks = rt.ctx.shared.setdefault("policy-locks", {})
        lock = locks.setdefault(account_id, threading.Lock())
    with lock:
        cache = rt.ctx.shared.setdefault("policies", {})
        if account_id not in cache:
            cache[account_id] = read_account_policies(
                rt.ctx.member(account_id), account_id, rt.spec.region
            )
        return cache[account_id]


def _disable_actions(rt: _Runtime, work: UserWork) -> list[PlanAction]:
    return [
        a
        for a in rt.plan.actions
        if a.stage == Stage.DISABLE and a.account_id == work.account_id and a.target == work.user
    ]


def _bake_days(rt: _Runtime, work: UserWork) -> int:
    planned = max(
        (int(a.params.get("not_before_days_after_disable", 0)) for a in work.actions),
        default=0,
    )
    # The longer of what the change board approved and what the spec says now.
    return max(planned, rt.spec.decommission.bake_days)


def delete_preconditions(rt: _Runtime, work: UserWork) -> list[str]:
    """Why this user may not be deleted now; empty when it may.

    Reads live: CloudTrail and key last-used (recorded as evidence), the user's credentials
    and quarantine, and the account's resource policies.
    """
    disable = _disable_actions(rt, work)
    entries = {a.id: rt.store.journal_entry(rt.plan_id, a.id) for a in disable}
    quarantine = next((a for a in disable if a.kind == "attach-quarantine-policy"), None)
    entry = entries.get(quarantine.id) if quarantine else None
    if quarantine is None or entry is None or entry.status not in DONE_STATUSES:
        if entry is not None and entry.status == ROLLED_BACK:
            return ["re-enabled: its disable was rolled back; disable it again first"]
        return ["not disabled by this migration yet: apply the disable stage first"]
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
    rt.store.add_use_evidence(rt.migration_id, fresh)
    verdict = bake_status(
        account_id=account_id,
        user_name=user,
        plan_id=rt.plan_id,
        disabled_at=disabled_at,
        bake_days=_bake_days(rt, work),
        evidence=rt.store.use_evidence(rt.migration_id, account_id, user),
        decisions=rt.store.bake_decisions(rt.migration_id, account_id, user),
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
    if not AttachQuarantinePolicy().probe(rt.ctx, quarantine).exists:
        problems.append("its quarantine policy was removed outside iamc")
    live = iam.get_user(UserName=user)["User"]
    policies = account_policies(rt, account_id)
    for reference in policies.references_to(live["Arn"], live["UserId"]):
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


def delete_user(rt: _Runtime, work: UserWork, report: AccountReport) -> bool:
    """Check the preconditions (before the first delete action only), then delete in order.

    Once an irreversible step has been attempted the user is half-deleted: a resume finishes
    it without checking again.
    """
    from flows.retire import _refuse, _run_user

    if rt.store.restore_rows(rt.plan_id, work.account_id, work.user) and not all(
        (e := rt.store.journal_entry(rt.plan_id, a.id)) and e.done for a in work.actions
    ):
        # 'iamc restore' rebuilt it after its deletion stopped half-way: finishing undoes that.
        _refuse(report, work, "restored while its deletion was unfinished; plan it again")
        return False
    if not _irreversible_started(rt, work):
        problems = delete_preconditions(rt, work)
        if problems:
            _refuse(report, work, "; ".join(problems))
            return False
    return _run_user(rt, work, report)
