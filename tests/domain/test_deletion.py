"""The delete stage's size and the blast-radius cap, as data."""

from __future__ import annotations

from domain.deletion import deletes_in, over_delete_cap, users_to_delete
from domain.plan import Plan, PlanAction, Stage

A1, A2 = "111111111111", "222222222222"


def _deletes(account_id: str, user: str) -> list[PlanAction]:
    base = f"delete:{account_id}:{user}"
    return [
        PlanAction(f"{base}:00-snapshot-user", Stage.DELETE, "snapshot-user", account_id, user,
                   "f"),
        PlanAction(f"{base}:01-delete-access-key", Stage.DELETE, "delete-access-key", account_id,
                   user, "f", {}, True),
        PlanAction(f"{base}:09-delete-user", Stage.DELETE, "delete-user", account_id, user, "f",
                   {}, True),
    ]  # fmt: skip


ACTIONS = [
    *_deletes(A1, "jane"),
    *_deletes(A1, "bob"),
    *_deletes(A2, "ci"),
    PlanAction(f"disable:{A2}:ops:x", Stage.DISABLE, "attach-quarantine-policy", A2, "ops", "f"),
]


def test_users_are_counted_once_per_account_and_only_the_delete_stage():
    assert users_to_delete(ACTIONS) == {A1: ["bob", "jane"], A2: ["ci"]}
    plan = Plan("m", 1, None, {}, [], ACTIONS, [], [], [], [])
    assert deletes_in(plan) == 3


def test_plan_md_states_the_number_its_delete_approval_quotes_and_which_approval_counts():
    from domain.plan_render import render_markdown

    plan = Plan("m", 1, None, {"bake_days": 14}, [], ACTIONS, [], [], [], [])
    old_all = {
        "stage": "all",
        "decision": "approved",
        "approver": "cab",
        "ticket": "T-1",
        "at": "x",
    }
    runs = [{"id": 7, "kind": "apply", "stage": "delete", "status": "failed"}]
    text = render_markdown(plan, {"hash": "ab" * 32, "approvals": [old_all], "runs": runs})
    assert "| **IAM users the `delete` stage deletes** (approved on its own" in text
    assert "`--stage delete --deletes N`) | **3** |" in text
    # An approval of "all" is not shown as the delete stage's approval.
    assert "- **Stage `delete`:** no approval on record; applied by run 7" in text


def test_a_user_is_deleted_only_once_all_its_actions_are_done():
    jane = {a.id for a in _deletes(A1, "jane")}
    half_bob = {f"delete:{A1}:bob:00-snapshot-user", f"delete:{A1}:bob:01-delete-access-key"}
    assert users_to_delete(ACTIONS, jane | half_bob) == {A1: ["bob"], A2: ["ci"]}
    everything = {a.id for a in ACTIONS}
    assert users_to_delete(ACTIONS, everything) == {}


def test_the_cap_says_by_how_much_a_run_and_an_account_are_over():
    to_delete = users_to_delete(ACTIONS)
    assert over_delete_cap(to_delete, 3, 2) == []
    assert over_delete_cap(to_delete, 2, 1) == [
        "would delete 3 users, 1 over max_deletes_per_run = 2",
        f"account {A1}: would delete 2 users, 1 over max_deletes_per_account = 1",
    ]
    # What the journal has as deleted no longer counts: a resumed run fits again.
    done = {a.id for a in _deletes(A1, "jane")}
    assert over_delete_cap(users_to_delete(ACTIONS, done), 2, 1) == []
