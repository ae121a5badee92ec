"""The delete stage's own approval, its size, and the blast-radius cap on one run.

Deleting a user can't be undone, so the delete stage is approved on its own, quoting how many
users it deletes, and a run stops before its first deletion when it would delete more than
the spec allows, in all or in one account (cloud-custodian's ``max-resources``). Nothing here
talks to AWS.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from domain.plan import Plan, PlanAction, Stage


def users_to_delete(
    actions: Iterable[PlanAction], done_action_ids: Collection[str] = ()
) -> dict[str, list[str]]:
    """Account id -> the user names these delete-stage actions delete, not yet deleted.

    A user's delete actions all name it (target) and its account; the user counts as deleted
    once every one of them is done, so a user cut off half way through counts as to delete.

    Args:
        actions: Plan actions; those of other stages are ignored.
        done_action_ids: The ids the journal records as done (none: the whole stage).
    """
    pending: dict[str, set[str]] = {}
    for action in actions:
        if action.stage != Stage.DELETE or not action.account_id:
            continue
        users = pending.setdefault(action.account_id, set())
        if action.id not in done_action_ids:
            users.add(action.target)
    return {account: sorted(users) for account, users in sorted(pending.items()) if users}


def deletes_in(plan: Plan) -> int:
    """How many IAM users the plan's delete stage deletes (what its approval quotes)."""
    return sum(len(users) for users in users_to_delete(plan.actions).values())


def over_delete_cap(
    to_delete: dict[str, list[str]], max_per_run: int, max_per_account: int
) -> list[str]:
    """What exceeds the blast-radius cap, one message each; empty when within it.

    Args:
        to_delete: Account id -> users to delete (:func:`users_to_delete`).
        max_per_run: ``[decommission] max_deletes_per_run``.
        max_per_account: ``[decommission] max_deletes_per_account``.
    """
    excess = []
    total = sum(len(users) for users in to_delete.values())
    if total > max_per_run:
        excess.append(
            f"would delete {total} users, {total - max_per_run} over max_deletes_per_run = "
            f"{max_per_run}"
        )
    for account_id, users in to_delete.items():
        if len(users) > max_per_account:
            excess.append(
                f"account {account_id}: would delete {len(users)} users, "
                f"{len(users) - max_per_account} over max_deletes_per_account = {max_per_account}"
            )
    return excess
