"""The plan: outcomes per user, stable ids, deterministic hash, per-target fingerprints."""

from __future__ import annotations

import copy
import itertools
import json
import random
from datetime import UTC, datetime

from domain.plan import Outcome, Plan, Stage
from domain.plan_render import (
    artifact_markdown,
    render_assignments_csv,
    render_json,
    render_markdown,
)
from domain.planning import build_plan
from domain.records import (
    AccessKey,
    Account,
    AccountInventory,
    AttachedPolicy,
    GroupMapping,
    InlinePolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.synthesis import synthesize

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
A, B = "111111111111", "222222222222"
CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def user(account: str, name: str, klass: UserClass, **kwargs) -> User:
    return User(
        name=name,
        user_id=f"AIDA{account[:3]}{name.upper().replace('.', '')}",
        arn=f"arn:aws:iam::{account}:user/{name}",
        created=CREATED,
        user_class=klass,
        class_reason=f"{klass} by test",
        **kwargs,
    )


def inventories() -> list[AccountInventory]:
    human = dict(
        password_enabled=True,
        attached_policies=[AttachedPolicy(READ_ONLY, "ReadOnlyAccess")],
        inline_policies=[InlinePolicy("s3", S3)],
    )
    policy = ManagedPolicy(READ_ONLY, "ReadOnlyAccess", aws_managed=True, document=S3)
    return [
        AccountInventory(
            account=Account(A, "alpha"),
            users=[
                user(
                    A,
                    "jane.doe",
                    UserClass.HUMAN,
                    **human,
                    access_keys=[AccessKey("AKIAAAAAAAAAAAAAJANE", "Active")],
                ),
                user(A, "breakglass-admin", UserClass.PROTECTED, password_enabled=True),
                user(
                    A,
                    "ci-deployer",
                    UserClass.WORKLOAD,
                    access_keys=[AccessKey("AKIAAAAAAAAAAAAAACID", "Active")],
                ),
                user(A, "old.timer", UserClass.UNUSED, password_enabled=True),
                user(A, "victor.stone", UserClass.HUMAN, **human),
                user(A, "alex.kim", UserClass.HUMAN, **human),
            ],
            managed_policies=[policy],
        ),
        AccountInventory(
            account=Account(B, "beta"),
            users=[user(B, "jane.doe", UserClass.HUMAN, **copy.deepcopy(human))],
            managed_policies=[policy],
        ),
    ]


def mappings() -> list[UserMapping]:
    return [
        UserMapping(
            A, "jane.doe", MatchStatus.MATCHED, "tag:email", "u-jane", "jane.doe@example.com"
        ),
        UserMapping(
            B, "jane.doe", MatchStatus.MATCHED, "username", "u-jane", "jane.doe@example.com"
        ),
        UserMapping(A, "victor.stone", MatchStatus.UNMATCHED, reason="no identity-store user"),
        UserMapping(
            A,
            "alex.kim",
            MatchStatus.AMBIGUOUS,
            "email-localpart",
            candidates=["alex.kim@example.com", "alex.kim@contractors.example.com"],
        ),
    ]


def make_plan(invs=None, maps=None, groups: list[GroupMapping] | None = None) -> Plan:
    invs = invs if invs is not None else inventories()
    maps = maps if maps is not None else mappings()
    groups = groups or []
    return build_plan(
        migration="wave-1",
        inventory_snapshot_id=1,
        mapping_run_id=2,
        inventories=invs,
        user_mappings=maps,
        group_mappings=groups,
        synthesis=synthesize(invs, maps, groups, []),
        settings={"inactive_days": 90, "bake_days": 14},
    )


def test_each_user_gets_one_outcome_with_a_reason():
    plan = make_plan()
    outcomes = {(u.account_id, u.user): u.outcome for u in plan.users}
    assert outcomes == {
        (A, "jane.doe"): Outcome.MIGRATE,
        (B, "jane.doe"): Outcome.MIGRATE,
        (A, "breakglass-admin"): Outcome.SKIP_PROTECTED,
        (A, "ci-deployer"): Outcome.SKIP_WORKLOAD,
        (A, "old.timer"): Outcome.RETIRE,
        (A, "victor.stone"): Outcome.SKIP_UNMATCHED,
        (A, "alex.kim"): Outcome.SKIP_AMBIGUOUS,
    }
    ambiguous = next(u for u in plan.users if u.user == "alex.kim")
    assert "alex.kim@contractors.example.com" in ambiguous.reason


def test_the_same_access_in_two_accounts_shares_one_permission_set():
    plan = make_plan()
    assert len(plan.permission_sets) == 1
    name = plan.permission_sets[0]["name"]
    assert sorted((a["account_id"], a["principal_id"]) for a in plan.assignments) == [
        (A, "u-jane"),
        (B, "u-jane"),
    ]
    kinds = [a.kind for a in plan.actions if a.stage == Stage.PROVISION]
    assert kinds.count("create-permission-set") == 1
    assert kinds.count("provision-permission-set") == 2
    assert kinds.count("create-assignment") == 2
    assert all(name in u.permission_sets for u in plan.users if u.outcome == Outcome.MIGRATE)


def test_protected_and_skipped_users_get_no_actions():
    plan = make_plan()
    touched = {(a.account_id, a.target) for a in plan.actions if a.stage != Stage.PROVISION}
    for skipped in ("breakglass-admin", "ci-deployer", "victor.stone", "alex.kim"):
        assert (A, skipped) not in touched
    assert (A, "old.timer") in touched  # retired: disable and delete without provisioning


def test_disable_waits_for_access_and_delete_follows_aws_order():
    plan = make_plan()
    by_id = {a.id: a for a in plan.actions}
    deactivate = by_id[f"disable:{A}:jane.doe:deactivate-access-key:AKIA…JANE"]
    assert deactivate.params["access_key_id"] == "AKIAAAAAAAAAAAAAJANE"
    assert deactivate.depends_on and all(
        d.startswith("provision:create-assignment") for d in deactivate.depends_on
    )
    assert not deactivate.irreversible
    deletes = [
        a
        for a in plan.actions
        if a.stage == Stage.DELETE and a.target == "jane.doe" and a.account_id == A
    ]
    assert [a.kind for a in deletes] == [
        "snapshot-user",
        "delete-login-profile",
        "delete-access-key",
        "delete-inline-policy",
        "detach-managed-policy",
        "delete-user",
    ]
    assert all(a.irreversible for a in deletes[1:]) and not deletes[0].irreversible
    for earlier, later in itertools.pairwise(deletes):
        assert later.depends_on == [earlier.id]


def test_same_inputs_give_the_same_hash_in_any_order():
    first = make_plan()
    shuffled = inventories()
    random.Random(3).shuffle(shuffled)
    for inventory in shuffled:
        random.Random(5).shuffle(inventory.users)
    maps = mappings()
    random.Random(7).shuffle(maps)
    second = make_plan(shuffled, maps)
    assert second.content_hash() == first.content_hash()
    assert [a.id for a in second.actions] == [a.id for a in first.actions]
    assert len({a.id for a in first.actions}) == len(first.actions)


def test_changing_one_user_changes_only_that_targets_fingerprint():
    before = make_plan()
    changed = inventories()
    old = next(u for u in changed[0].users if u.name == "old.timer")
    old.access_keys.append(AccessKey("AKIAAAAAAAAAAAAAANEW", "Inactive"))
    after = make_plan(changed)
    fingerprints_before = {(u.account_id, u.user): u.target_fingerprint for u in before.users}
    fingerprints_after = {(u.account_id, u.user): u.target_fingerprint for u in after.users}
    differing = {k for k in fingerprints_before if fingerprints_before[k] != fingerprints_after[k]}
    assert differing == {(A, "old.timer")}
    assert after.content_hash() != before.content_hash()
    # Last-used dates move daily without changing what the plan does: not in fingerprints.
    dated = inventories()
    dated[0].users[0].access_keys[0].last_used_date = datetime(2026, 11, 27, tzinfo=UTC)
    assert make_plan(dated).content_hash() == before.content_hash()


def test_plan_round_trips_through_json():
    plan = make_plan()
    restored = Plan.from_content(json.loads(json.dumps(plan.content(), default=str)))
    assert restored.content_hash() == plan.content_hash()


def test_markdown_puts_the_summary_first_and_counts_irreversible_actions():
    plan = make_plan()
    markdown = render_markdown(plan, {"plan_id": 7, "hash": plan.content_hash()})
    summary_at = markdown.index("## Summary")
    assert summary_at < markdown.index("## Risks") < markdown.index("## Per account")
    irreversible = sum(1 for a in plan.actions if a.irreversible)
    assert f"| **{irreversible}** |" in markdown
    assert "victor.stone" in markdown and "skipped: no identity matches" in markdown
    text = render_json(plan, {"plan_id": 7})
    # No whole access key id leaves the state DB: files show AKIA…WXYZ.
    for rendered in (text, markdown):
        assert "AKIAAAAAAAAAAAAAJANE" not in rendered and "AKIAAAAAAAAAAAAAACID" not in rendered
    assert "AKIA…JANE" in text
    data = json.loads(text)
    assert data["plan_id"] == 7 and len(data["actions"]) == len(plan.actions)
    csv_lines = render_assignments_csv(plan).splitlines()
    assert csv_lines[0].startswith("account_id,permission_set_name,principal_type")
    assert len(csv_lines) == 1 + len(plan.assignments)


def test_a_blocking_quota_error_blocks_its_users_and_the_plan():
    invs = inventories()
    jane = invs[1].users[0]
    jane.attached_policies = [
        AttachedPolicy(f"arn:aws:iam::aws:policy/P{n}", f"P{n}") for n in range(11)
    ]
    invs[1].managed_policies += [
        ManagedPolicy(f"arn:aws:iam::aws:policy/P{n}", f"P{n}", aws_managed=True, document=S3)
        for n in range(11)
    ]
    plan = make_plan(invs)
    assert plan.blocking
    assert any("11" in f.message and "10" in f.message for f in plan.blocking)
    outcome = next(u for u in plan.users if u.account_id == B)
    assert outcome.outcome == Outcome.SKIP_BLOCKED


def test_key_ids_are_masked_in_one_pass_at_scale():
    """20,000 keys in a 10 MB text: one pass, not a str.replace per key over the whole text."""
    import random
    import time

    from domain.keys import mask_key_id
    from domain.plan_render import mask_key_ids

    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    keys = {"AKIA" + "".join(rng.choices(alphabet, k=16)) for _ in range(20_000)}
    filler = '"target_fingerprint": "' + "ab" * 32 + '", '
    parts = []
    for key in sorted(keys):
        parts.append(f'{{"access_key_id": "{key}", {filler * 6}"user": "u"}}')
    text = "[" + ",\n".join(parts) + "]"
    assert len(text) > 10_000_000

    started = time.perf_counter()
    masked = mask_key_ids(text, keys)
    elapsed = time.perf_counter() - started

    assert elapsed < 10, f"{elapsed:.1f} s"
    sample = sorted(keys)[123]
    assert sample not in masked and f'"{mask_key_id(sample)}"' in masked
    assert not any(key in masked for key in list(keys)[:500])
    assert masked.count("ab" * 32) == text.count("ab" * 32)  # other words untouched


def test_masking_matches_the_old_replacement_on_a_plan_text():
    from domain.keys import mask_key_id
    from domain.plan_render import mask_key_ids

    keys = {"AKIAAAAAAAAAAAAAAAAA", "ASIABBBBBBBBBBBBBBBBBBBB", "AKIA2345234523452345"}
    text = (
        '{"access_key_id": "AKIAAAAAAAAAAAAAAAAA", "items": ["ASIABBBBBBBBBBBBBBBBBBBB", '
        '"AKIA2345234523452345"]}\n| `AKIA2345234523452345` | key AKIAAAAAAAAAAAAAAAAA, '
        "AKIANOTAKEYOFTHEPLAN0 |"
    )
    expected = text
    for key in sorted(keys, key=len, reverse=True):
        expected = expected.replace(key, mask_key_id(key))
    assert mask_key_ids(text, keys) == expected


def test_the_ui_artifact_is_the_whole_plan_or_cut_before_an_account_saying_where_the_rest_is():
    plan = make_plan()
    markdown = render_markdown(plan, {"plan_id": 7, "hash": plan.content_hash()})
    assert artifact_markdown(markdown, "/plans/7/plan.md", 7) == markdown
    accounts = markdown.count("\n### Account ")
    assert accounts >= 2
    second = markdown.index("\n### Account ", markdown.index("\n### Account ") + 1)
    # Room for the first account's table and the note, not for the second account's table.
    max_bytes = len(markdown[: second + 20].encode()) + 200
    assert len(markdown.encode()) > max_bytes
    cut = artifact_markdown(markdown, "/plans/7/plan.md", 7, max_bytes=max_bytes)
    assert len(cut.encode()) <= max_bytes
    assert cut.startswith(markdown[:second])
    assert cut.count("\n### Account ") == 1
    assert f"Not shown here: {accounts - 1} more account(s)" in cut
    assert "`/plans/7/plan.md`" in cut and "iamc plan show 7" in cut
    assert "## Summary" in cut and "## Risks" in cut
