"""Least privilege from use: services granted, the conservative trim, sharing, losses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.least_privilege import PolicyIndex, access_grants, trim_access
from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    Group,
    GroupMapping,
    IdentityGroup,
    InlinePolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserMapping,
)
from domain.synthesis import synthesize
from domain.usage import UsageRead, UserUsage

A1 = "111111111111"
S3_FULL = "arn:aws:iam::aws:policy/AmazonS3FullAccess"
EC2_FULL = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
GUARD = f"arn:aws:iam::{A1}:policy/NoDeletes"
WHEN = "2026-11-30T12:00:00Z"
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # plan time: the read is a day old


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": "*", **extra}


POLICIES = [
    ManagedPolicy(S3_FULL, "AmazonS3FullAccess", aws_managed=True, document=doc(allow("s3:*"))),
    ManagedPolicy(
        EC2_FULL,
        "AmazonEC2FullAccess",
        aws_managed=True,
        document=doc(allow(["ec2:*", "elasticloadbalancing:*", "cloudwatch:*"])),
    ),
    ManagedPolicy(ADMIN, "AdministratorAccess", aws_managed=True, document=doc(allow("*"))),
    ManagedPolicy(
        GUARD,
        "NoDeletes",
        document=doc({"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}),
    ),
]


def person(name: str, *managed: str, inline: dict | None = None, groups=()) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:aws:iam::{A1}:user/{name}",
        attached_policies=[AttachedPolicy(a, a.rsplit("/", 1)[-1]) for a in managed],
        inline_policies=[InlinePolicy("own", inline)] if inline else [],
        groups=list(groups),
    )


def mapped(*names: str) -> list[UserMapping]:
    return [
        UserMapping(A1, n, MatchStatus.MATCHED, "username", f"id-{n}", f"{n}@example.com")
        for n in names
    ]


def read(users: dict[str, dict[str, str]], actions=None, unread=None) -> UsageRead:
    return UsageRead(
        id=7,
        snapshot_id=1,
        window_days=90,
        read_at=WHEN,
        users={
            (A1, name): UserUsage(A1, name, services, dict((actions or {}).get(name, {})))
            for name, services in users.items()
        },
        unread=unread or {},
    )


def inventory(*users: User, groups=()) -> list[AccountInventory]:
    return [AccountInventory(Account(A1, "one"), list(users), list(groups), list(POLICIES))]


def plan_sets(users, usage, mode="trim", groups=(), group_mappings=(), idp_groups=()):
    return synthesize(
        inventory(*users, groups=groups),
        mapped(*(u.name for u in users)),
        list(group_mappings),
        list(idp_groups),
        usage=usage,
        least_privilege_mode=mode,
        now=NOW,
    )


def test_managed_policy_with_no_used_service_is_dropped_and_used_one_narrowed_inline():
    ana = person("ana", S3_FULL, EC2_FULL)
    result = plan_sets([ana], read({"ana": {"ec2": WHEN}}))
    [definition] = result.permission_sets
    # AmazonEC2FullAccess grants three services, one used: its statement, narrowed to ec2,
    # replaces it inline (an AWS-managed document can't be edited).
    assert definition.aws_managed_policy_arns == []
    assert [s["Action"] for s in definition.inline_policy["Statement"]] == [["ec2:*"]]
    [loss] = result.least_privilege["losses"]
    assert (loss["user"], loss["policies_dropped"]) == ("ana", ["AmazonS3FullAccess"])
    assert loss["services_removed"] == ["cloudwatch", "elasticloadbalancing", "s3"]
    assert loss["policies_narrowed"] == {"AmazonEC2FullAccess": 2}
    assert loss["kept_whole"] == {}


def test_report_mode_changes_no_set_and_reports_granted_used_never_used():
    ana = person("ana", S3_FULL, EC2_FULL)
    usage = read({"ana": {"ec2": WHEN}})
    unchanged = plan_sets([ana], None).permission_sets
    assert plan_sets([ana], usage, "report").permission_sets == unchanged
    report = plan_sets([ana], usage, "report").least_privilege
    [entry] = report["sets"].values()
    assert entry["granted"] == ["cloudwatch", "ec2", "elasticloadbalancing", "s3"]
    assert entry["used"] == {"ec2": {"last": WHEN, "by": [f"{A1}/ana"]}}
    assert entry["never_used"] == ["cloudwatch", "elasticloadbalancing", "s3"]
    assert report["losses"] == [] and report["usage_hash"] == usage.content_hash()


def test_inline_statements_narrowed_by_service_deny_kept_notaction_flagged():
    policy = doc(
        allow(["s3:GetObject", "dynamodb:Query", "sqs:SendMessage"]),
        allow("*", Condition={"Bool": {"aws:SecureTransport": "true"}}),
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    )
    ana = person("ana", inline=policy)
    # CloudTrail saw dynamodb:Query only; s3 is known at service level.
    usage = read({"ana": {"s3": WHEN}}, actions={"ana": {"dynamodb:Query": WHEN}})
    result = plan_sets([ana], usage)
    statements = result.permission_sets[0].inline_policy["Statement"]
    actions = [s.get("Action") for s in statements]
    assert ["dynamodb:Query", "s3:GetObject"] in actions  # sqs gone, by service
    # "*" became the used services, and iam:PassRole (permission-only: never seen used).
    assert ["dynamodb:*", "iam:PassRole", "s3:*"] in actions
    assert {"Effect": "Deny", "Action": ["iam:*"], "Resource": ["*"]} in statements
    assert any("NotAction" in s for s in statements)
    [loss] = result.least_privilege["losses"]
    assert loss["not_narrowable"] == 1 and loss["statements_narrowed"] == 2
    # The NotAction Allow still grants everything: "*" narrowed counts no loss of services.
    assert loss["services_removed"] == [] and loss["all_other_services"] is False


def test_star_narrowed_reports_all_other_services():
    ana = person("ana", inline=doc(allow("*")))
    result = plan_sets([ana], read({"ana": {"s3": WHEN}}))
    actions = result.permission_sets[0].inline_policy["Statement"][0]["Action"]
    assert actions == ["iam:PassRole", "s3:*"]
    assert result.least_privilege["losses"][0]["all_other_services"] is True


def test_guardrail_and_admin_policies():
    ana = person("ana", ADMIN, GUARD)
    usage = read({"ana": {"s3": WHEN}})
    definition = plan_sets([ana], usage, "report").permission_sets[0]
    assert (
        plan_sets([ana], usage, "report").least_privilege["sets"][definition.name]["granted"]
        == "all services"
    )
    result = plan_sets([ana], usage)
    definition = result.permission_sets[0]
    # A Deny-holding policy is never dropped nor narrowed; "*" becomes the used services
    # (and iam:PassRole, whose use no log shows).
    assert definition.aws_managed_policy_arns == []
    assert definition.customer_managed_policies == [{"name": "NoDeletes", "path": "/"}]
    statements = definition.inline_policy["Statement"]
    assert [s["Action"] for s in statements] == [["iam:PassRole", "s3:*"]]
    [loss] = result.least_privilege["losses"]
    assert loss["policies_narrowed"] == {"AdministratorAccess": 0}
    assert loss["all_other_services"] is True


def test_unread_user_is_not_trimmed_and_the_plan_says_why():
    ana, bob = person("ana", S3_FULL, EC2_FULL), person("bob", S3_FULL, EC2_FULL)
    usage = read({"ana": {"ec2": WHEN}}, unread={(A1, "bob"): "job FAILED"})
    result = plan_sets([ana, bob], usage)
    by_arns = sorted(d.aws_managed_policy_arns for d in result.permission_sets)
    assert by_arns == [[], [EC2_FULL, S3_FULL]]  # ana's narrowed inline, bob's untouched
    [unread] = result.least_privilege["unread"]
    assert unread["holder"] == "user bob" and "job FAILED" in unread["reason"]
    assert [x["user"] for x in result.least_privilege["losses"]] == ["ana"]


def test_a_user_missing_from_the_read_is_unread_not_unused():
    ana = person("ana", S3_FULL)
    result = plan_sets([ana], read({}))
    assert result.permission_sets[0].aws_managed_policy_arns == [S3_FULL]
    assert result.least_privilege["losses"] == []


def test_identical_trimmed_access_shares_one_set():
    # Different IAM access, same use: the same trimmed access, one set for both.
    ana = person("ana", S3_FULL, EC2_FULL)
    bob = person("bob", S3_FULL)
    result = plan_sets([ana, bob], read({"ana": {"s3": WHEN}, "bob": {"s3": WHEN}}))
    assert [d.aws_managed_policy_arns for d in result.permission_sets] == [[S3_FULL]]
    assert {a.principal_name for a in result.assignments} == {
        "ana@example.com",
        "bob@example.com",
    }


def test_group_trims_by_its_members_union_and_not_with_an_unread_member():
    team = Group("team", "AGPATEAM", f"arn:aws:iam::{A1}:group/team")
    team.attached_policies = [
        AttachedPolicy(S3_FULL, "AmazonS3FullAccess"),
        AttachedPolicy(EC2_FULL, "AmazonEC2FullAccess"),
    ]
    ana, bob = person("ana", groups=["team"]), person("bob", groups=["team"])
    mapping = [GroupMapping(A1, "team", MatchStatus.MATCHED, "name", "g-team", "team")]
    idp = [IdentityGroup("g-team", "team", ["id-ana", "id-bob"])]
    usage = read({"ana": {"s3": WHEN}, "bob": {"sqs": WHEN}})
    result = plan_sets([ana, bob], usage, groups=[team], group_mappings=mapping, idp_groups=idp)
    assert [d.aws_managed_policy_arns for d in result.permission_sets] == [[S3_FULL]]
    losses = result.least_privilege["losses"]
    assert [(x["user"], x["via"]) for x in losses] == [("ana", "group team"), ("bob", "group team")]
    usage.unread[(A1, "bob")] = "account unreachable"
    result = plan_sets([ana, bob], usage, groups=[team], group_mappings=mapping, idp_groups=idp)
    assert [d.aws_managed_policy_arns for d in result.permission_sets] == [[EC2_FULL, S3_FULL]]
    assert "member bob" in result.least_privilege["unread"][0]["reason"]


def test_granted_services_and_trim_are_pure():
    from domain.fingerprinted_access import build_access
    from domain.policy_documents import statement_pairs

    access = build_access([], statement_pairs(doc(allow(["s3:Get*", "ec2:Describe*"]))), None, [])
    index = PolicyIndex({})
    assert access_grants(access, index).as_json() == ["ec2", "s3"]
    trim = trim_access(access, index, {"ec2"})
    assert access_grants(trim.access, index).as_json() == ["ec2"]
    assert trim.access.fingerprint != access.fingerprint and trim.services_removed == ["s3"]


def test_plan_md_and_json_show_the_section():
    import json

    from domain.plan import Plan
    from domain.plan_render import render_json, render_markdown

    ana, bob = person("ana", S3_FULL, EC2_FULL), person("bob", S3_FULL)
    usage = read({"ana": {"ec2": WHEN}}, unread={(A1, "bob"): "job FAILED"})
    section = plan_sets([ana, bob], usage).least_privilege
    plan = Plan(
        migration="m",
        inventory_snapshot_id=1,
        mapping_run_id=2,
        settings={},
        users=[],
        actions=[],
        permission_sets=[],
        assignments=[],
        required_customer_policies=[],
        findings=[],
        least_privilege=section,
        usage_read_id=usage.id,
    )
    markdown = render_markdown(plan, {"hash": "h"})
    assert "## Least privilege" in markdown and "usage read 7" in markdown
    assert "| 111111111111 | `ana` | own access |" in markdown
    assert "AmazonS3FullAccess" in markdown and "job FAILED" in markdown
    content = json.loads(render_json(plan, {}))
    assert content["least_privilege"]["losses"][0]["services_removed"] == [
        "cloudwatch",
        "elasticloadbalancing",
        "s3",
    ]
    assert content["usage_read_id"] == 7
    # In the hash: a different read is a different plan; the read's id is provenance only.
    other = Plan.from_content({**plan.content(), "usage_read_id": 8})
    assert other.content_hash() == plan.content_hash()
    changed = {**section, "usage_hash": "x"}
    assert Plan.from_content({**plan.content(), "least_privilege": changed}).content_hash() != (
        plan.content_hash()
    )


def test_a_newer_read_with_other_use_makes_the_plan_stale():
    from domain.least_privilege_report import usage_staleness

    usage = read({"ana": {"ec2": WHEN}})
    section = plan_sets([person("ana", S3_FULL, EC2_FULL)], usage).least_privilege
    assert usage_staleness(None, usage) is None
    assert usage_staleness(section, usage) is None
    # Only when each service was last used moved: the same use, not stale.
    later = read({"ana": {"ec2": "2026-12-01T00:00:00Z"}})
    assert usage_staleness(section, later) is None
    newer = read({"ana": {"ec2": WHEN, "s3": WHEN}})
    message = usage_staleness(section, newer)
    assert message is not None and "re-plan" in message
    assert "no longer stored" in (usage_staleness(section, None) or "")


PASS_ROLE = f"arn:aws:iam::{A1}:policy/PassToEc2"
ROLE = f"arn:aws:iam::{A1}:role/app"


def test_pass_role_is_kept_whenever_a_service_was_used():
    # iam:PassRole is a permission check only (no CloudTrail event, no last-accessed entry):
    # ana ran instances with a role, so only ec2 shows used.
    inline = doc(
        allow(["ec2:RunInstances", "iam:PassRole"], Resource=ROLE),
        allow("iam:Pass*", Resource=ROLE, Condition={"StringEquals": {"iam:PassedToService": "x"}}),
        allow("iam:*"),
        allow("sqs:*"),
    )
    pass_only = ManagedPolicy(
        PASS_ROLE, "PassToEc2", document=doc(allow("iam:PassRole", Resource=ROLE))
    )
    ana = person("ana", PASS_ROLE, inline=inline)
    result = synthesize(
        [AccountInventory(Account(A1, "one"), [ana], [], [*POLICIES, pass_only])],
        mapped("ana"),
        [],
        [],
        usage=read({"ana": {"ec2": WHEN}}),
        least_privilege_mode="trim",
        now=NOW,
    )
    [definition] = result.permission_sets
    statements = definition.inline_policy["Statement"]
    kept = {(tuple(s["Action"]), tuple(s["Resource"])) for s in statements}
    # Same Resource (and Condition); sqs gone; "iam:*" narrowed to PassRole.
    assert (("ec2:RunInstances", "iam:PassRole"), (ROLE,)) in kept
    assert (("iam:PassRole",), ("*",)) in kept
    # "iam:Pass*" (iam unseen) keeps only PassRole, with its Condition.
    assert any(s["Action"] == ["iam:PassRole"] and "Condition" in s for s in statements)
    assert not any("sqs:*" in s["Action"] for s in statements)
    # A policy granting only PassRole (its service, iam, unseen) is narrowed, not dropped.
    [loss] = result.least_privilege["losses"]
    assert loss["policies_dropped"] == [] and "PassToEc2" in loss["policies_narrowed"]
    assert (("iam:PassRole",), (ROLE,)) in kept
    # Nothing used: nothing kept, PassRole neither.
    bare = trim_access(_access_of(inline), PolicyIndex({}), set())
    assert not bare.access.grants_anything


def _access_of(document: dict[str, Any]):
    from domain.fingerprinted_access import build_access
    from domain.policy_documents import statement_pairs

    return build_access([], statement_pairs(document), None, [])


def test_never_used_is_unknown_when_no_holder_of_the_set_was_read():
    ana, bob = person("ana", S3_FULL), person("bob", S3_FULL)
    usage = read({}, unread={(A1, "ana"): "job FAILED", (A1, "bob"): "job FAILED"})
    result = plan_sets([ana, bob], usage, "report")
    [entry] = result.least_privilege["sets"].values()
    assert entry["never_used"] is None and entry["holders_unread"] == 2
    from domain.least_privilege_render import least_privilege_markdown

    assert "unknown: no holder's use was read" in "\n".join(
        least_privilege_markdown(result.least_privilege)
    )
    # One read holder: never used is what the read ones didn't use.
    usage = read({"ana": {"ec2": WHEN}}, unread={(A1, "bob"): "job FAILED"})
    [entry] = plan_sets([ana, bob], usage, "report").least_privilege["sets"].values()
    assert entry["never_used"] == ["s3"]


def test_a_read_shorter_than_the_window_trims_nobody_and_blocks():
    ana = person("ana", S3_FULL, EC2_FULL)
    usage = read({"ana": {"ec2": WHEN}})
    usage.window_days = 30
    result = synthesize(
        inventory(ana),
        mapped("ana"),
        [],
        [],
        usage=usage,
        least_privilege_mode="trim",
        window_days=90,
        now=NOW,
    )
    [finding] = [f for f in result.findings if f.kind == "usage-window-short"]
    assert finding.severity == "blocking" and finding.subject is None
    assert "iamc usage" in finding.message
    assert result.permission_sets[0].aws_managed_policy_arns == [EC2_FULL, S3_FULL]
    assert result.least_privilege["losses"] == []


def test_an_old_read_blocks_and_no_read_warns_in_trim_mode():
    ana = person("ana", S3_FULL)
    old = datetime(2026, 12, 8, tzinfo=UTC)  # the read is 8 days old
    result = synthesize(
        inventory(ana),
        mapped("ana"),
        [],
        [],
        usage=read({"ana": {"s3": WHEN}}),
        least_privilege_mode="trim",
        now=old,
    )
    assert [(f.kind, f.severity) for f in result.findings if f.kind.startswith("usage")] == [
        ("usage-read-old", "blocking")
    ]
    assert not [f for f in plan_sets([ana], read({"ana": {"s3": WHEN}})).findings]
    result = synthesize(inventory(ana), mapped("ana"), [], [], least_privilege_mode="trim")
    assert [(f.kind, f.severity) for f in result.findings] == [("usage-not-read", "warning")]
    report = synthesize(inventory(ana), mapped("ana"), [], [], least_privilege_mode="report")
    assert report.findings == []


def test_losses_carry_the_arns_of_the_policies_removed():
    ana = person("ana", S3_FULL, EC2_FULL)
    [loss] = plan_sets([ana], read({"ana": {"ec2": WHEN}})).least_privilege["losses"]
    assert loss["policy_arns_removed"] == [EC2_FULL, S3_FULL]


def test_permission_free_calls_need_no_permission():
    from domain.usage_events import needs_permission

    assert not needs_permission("sts:GetCallerIdentity")
    assert needs_permission("sts:AssumeRole") and needs_permission("s3:GetObject")


def test_a_deny_of_a_whole_service_is_recognised():
    from domain.least_privilege import denies_service

    deny = doc({"Effect": "Deny", "Action": "s3:*", "Resource": "*"})
    assert denies_service([deny], "s3") and not denies_service([deny], "ec2")
    scoped = doc({"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b"})
    partial = doc({"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"})
    assert not denies_service([scoped, partial, None], "s3")
    assert denies_service([doc({"Effect": "Deny", "Action": "*", "Resource": "*"})], "sqs")


def test_plan_md_says_nobody_was_trimmed_when_the_read_is_short():
    from domain.least_privilege_render import least_privilege_markdown

    usage = read({"ana": {"ec2": WHEN}})
    usage.window_days = 30
    section = plan_sets([person("ana", S3_FULL)], usage).least_privilege
    assert section["trimmed"] is False
    assert "Nobody was trimmed" in "\n".join(least_privilege_markdown(section))


def test_a_person_active_in_the_window_with_no_use_recorded_is_not_trimmed():
    # Signed in two days before the read, yet no service use was recorded: the evidence
    # disagrees, so nothing is taken (trimming would take everything).
    ana = person("ana", ADMIN)
    ana.password_last_used = datetime(2026, 11, 28, tzinfo=UTC)
    result = plan_sets([ana], read({"ana": {}}))
    assert result.permission_sets[0].aws_managed_policy_arns == [ADMIN]
    assert result.least_privilege["losses"] == []
    [unread] = result.least_privilege["unread"]
    assert "within the window" in unread["reason"] and "not trimmed" in unread["reason"]
    # Not seen since long before the window: the silence is believed, and the set goes.
    ana.password_last_used = datetime(2025, 1, 1, tzinfo=UTC)
    gone = plan_sets([ana], read({"ana": {}}))
    assert gone.permission_sets == [] and gone.least_privilege["losses"][0]["user"] == "ana"


def test_a_narrowed_set_is_named_by_the_services_it_keeps():
    ana = person("ana", ADMIN)
    [definition] = plan_sets([ana], read({"ana": {"s3": WHEN, "ec2": WHEN}})).permission_sets
    # AdministratorAccess narrowed to the used services (and iam:PassRole): named by them.
    assert definition.name.startswith("ec2-iam-s3-"), definition.name
