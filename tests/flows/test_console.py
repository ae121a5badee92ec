"""What the Prefect UI tells an operator: deployment names, failure messages, forms, notices."""

from __future__ import annotations

import email
import json
from datetime import date
from pathlib import Path

import pytest

from console.approval import ApprovalInput, _form, form_description
from console.operator import (
    artifact_key,
    deployment_name,
    operator_message,
    ui_next_steps,
)
from domain.errors import ApplyFailed, NoInventoryError
from domain.notices import NoticeContext, notices_from_plan, portal_url, write_notices
from domain.plan import Outcome, Plan, PlanAction, Stage, UserPlan
from domain.records import IdentityUser
from tasks.verify_access import expected_policy_arns, inline_keys, missing_access

A1, A2 = "111111111111", "222222222222"
SPEC = 'name = "acme_Wave.1"\nstate = "sqlite:///state.db"\n'


def _plan() -> Plan:
    users = [
        UserPlan("111111111111", "jdoe", "human", Outcome.MIGRATE, "", "f", "jane", ["Dev"]),
        UserPlan("222222222222", "jane.d", "human", Outcome.MIGRATE, "", "f", "jane", ["Ops"]),
        UserPlan("111111111111", "ci", "workload", Outcome.SKIP_WORKLOAD, "", "f"),
    ]
    actions = [
        PlanAction("delete:1", Stage.DELETE, "delete-user", A1, "jdoe", "f", {}, True),
        PlanAction("delete:2", Stage.DELETE, "delete-user", A2, "jane.d", "f", {}, True),
        PlanAction("disable:1", Stage.DISABLE, "attach-quarantine-policy", A1, "jdoe", "f"),
    ]  # fmt: skip
    return Plan("acme", 1, 1, {}, users, actions, [{"name": "Dev"}, {"name": "Ops"}], [], [], [])


def test_deployments_and_artifact_keys_read_as_the_runbook():
    assert deployment_name("centralize", "acme") == "0 centralize (acme)"
    assert deployment_name("apply", "acme") == "6 apply (acme)"
    assert artifact_key("acme_Wave.1", "apply", "provision") == "acme-wave-1-apply-provision"


def test_errors_name_the_deployment_as_well_as_the_command():
    err = NoInventoryError("no inventory yet for migration 'acme': run 'iamc inventory -c s.toml'")
    message = operator_message(err, "mapping", "acme", "s.toml")
    assert "run the deployment '1 inventory (acme)'" in message
    assert "iamc inventory -c s.toml" in message and "Traceback" not in message
    failed = operator_message(
        ApplyFailed("run 4: 1 failed; fix the cause, then 'iamc resume 4 -c s.toml'"),
        "apply",
        "acme",
        "s.toml",
    )
    assert "press Retry on this flow run" in failed and "iamc resume 4 -c s.toml" in failed
    assert ui_next_steps("run 'iamc map -c x' then 'iamc plan -c x'", "m") == [
        "run the deployment '2 mapping (m)'",
        "run the deployment '4 plan (m)'",
    ]


def test_the_deployments_are_numbered_typed_and_described_for_operators(tmp_path: Path):
    from iamc.serve import deployments, runbook_lines

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    found = {d.name: d for d in deployments(spec)}
    assert sorted(found, key=lambda name: int(name.split()[0])) == [
        "0 centralize (acme_Wave.1)",
        "1 inventory (acme_Wave.1)",
        "2 mapping (acme_Wave.1)",
        "3 key-scan (acme_Wave.1)",
        "4 plan (acme_Wave.1)",
        "5 plan-and-approve (acme_Wave.1)",
        "6 apply (acme_Wave.1)",
        "7 verify (acme_Wave.1)",
        "8 notify (acme_Wave.1)",
        "9 bake-watch (acme_Wave.1)",
        "10 rollback (acme_Wave.1)",
        "11 restore (acme_Wave.1)",
    ]
    for deployment in found.values():
        assert "Args:" not in deployment.description and ":class:" not in deployment.description
    from flows.apply import apply_flow

    schema = apply_flow.parameters.model_dump()
    text = json.dumps(schema)
    assert '"provision"' in text and '"disable"' in text and '"delete"' in text  # a choice
    assert schema["properties"]["plan_id"].get("default") is None  # the latest plan
    lines = "\n".join(runbook_lines(spec))
    assert "0 centralize" in lines and f"iamc status RUN_ID -c {spec}" in lines


def test_the_approval_form_shows_the_hash_irreversible_actions_and_the_plan():
    plan = _plan()
    text = form_description("acme", 3, "ab" * 32, plan, "http://ui/artifacts/artifact/1")
    assert "ab" * 32 in text and "**2 irreversible**" in text
    assert "(http://ui/artifacts/artifact/1)" in text and "2 migrate" in text
    form = _form(text, "provision")
    schema = form.model_json_schema()
    # The reviewer types the hash they read: it is not prefilled (issue 21).
    assert "default" not in schema["properties"]["plan_hash"]
    assert "plan_hash" in schema["required"]
    assert "12+ characters" in schema["properties"]["plan_hash"]["description"]
    assert schema["properties"]["ticket"]["description"]
    assert issubclass(form, ApprovalInput) and form._description == text


@pytest.mark.parametrize("stage", [None, "delete", "all", "provision"])
def test_the_approval_form_prefills_no_hash_and_no_stage_that_approves_delete(stage):
    form = _form("text", stage)
    schema = form.model_json_schema()
    assert "default" not in schema["properties"]["plan_hash"]
    assert "plan_hash" in schema["required"]
    default = schema["properties"]["stage"].get("default")
    assert default != "delete"
    if stage in (None, "delete"):
        # The reviewer chooses the stage: nothing is prefilled, and the form requires it.
        assert default is None and "stage" in schema["required"]
    else:
        assert default == stage
    assert schema["properties"]["deletes"].get("default") is None
    # The base form, as Prefect would draw it, prefills neither.
    base = ApprovalInput.model_json_schema()
    assert "default" not in base["properties"]["stage"]
    assert "default" not in base["properties"]["plan_hash"]


def test_the_approval_form_says_what_delete_means_users_and_cap():
    from domain.spec import Decommission

    text = form_description("acme", 3, "ab" * 32, _plan(), None)
    assert "deletes **2 IAM user(s)** in 2 account(s)" in text
    assert "approved on its own" in text and "type **2** in *deletes*" in text
    assert "more than 50 users, or more than 20 in one account" in text
    assert "over the cap" not in text
    tight = form_description("acme", 3, "ab" * 32, _plan(), None, Decommission(
        max_deletes_per_run=1, max_deletes_per_account=1
    ))  # fmt: skip
    assert (
        "**this plan is over the cap**: would delete 2 users, 1 over max_deletes_per_run" in tight
    )


def test_notices_are_written_per_person_with_the_portal_and_dates(tmp_path: Path):
    identities = [IdentityUser("u-1", "jane", "Jane Doe", ["jane@acme.example"])]
    notices = notices_from_plan(_plan(), identities, {"111111111111": "prod"})
    assert [(n.user_name, sorted(n.accounts)) for n in notices] == [
        ("jane", ["111111111111", "222222222222"])
    ]
    ctx = NoticeContext(
        "acme", portal_url(None, "d-123"), date(2026, 3, 2), date(2026, 3, 16), "iam@acme.example"
    )
    assert ctx.portal_url == "https://d-123.awsapps.com/start"
    rows = write_notices(notices, ctx, tmp_path, date(2026, 2, 23))
    assert rows[0]["email"] == "jane@acme.example" and rows[0]["disable_on"] == "2026-03-02"
    markdown = (tmp_path / "jane.md").read_text()
    assert "https://d-123.awsapps.com/start" in markdown and "111111111111 (prod)" in markdown
    assert "2026-03-16" in markdown and "jane.d" in markdown
    message = email.message_from_bytes((tmp_path / "jane.eml").read_bytes())
    assert message["To"] == "Jane Doe <jane@acme.example>" and "2026-03-02" in message["Subject"]
    assert "Dev" in message.get_payload(decode=True).decode()
    assert (tmp_path / "notices.csv").read_text().startswith("email,name,user_name,portal_url")


def test_less_access_is_found_by_policy_arn_and_by_inline_statement():
    held_doc = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    same = {"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow",
            "Action": ["s3:getobject"], "Resource": ["*"]}]}  # fmt: skip
    assert inline_keys(held_doc) == inline_keys(same)
    held = ({"arn:a", "arn:b"}, inline_keys(held_doc))
    assert missing_access(held, ({"arn:a", "arn:b", "arn:c"}, inline_keys(same))) == ([], 0)
    assert missing_access(held, ({"arn:a"}, set())) == (["arn:b"], 1)
    arns = expected_policy_arns(
        {"aws_managed_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
         "customer_managed_policies": [{"name": "team", "path": "/iamc/"}]}, "111111111111"
    )  # fmt: skip
    assert arns == {
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::111111111111:policy/iamc/team",
    }


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_the_plan_artifact_after_a_decision_says_who_when_and_which_ticket(decision: str):
    from console.approval import decision_markdown

    latest = {"decision": decision, "stage": "provision", "approver": "cab", "ticket": "CHG-1",
              "at": "2026-01-01T10:00:00", "comment": "ok"}  # fmt: skip
    meta = {"plan_id": 1, "hash": "c" * 64, "created": "2026-01-01", "approvals": [latest]}
    text = decision_markdown(_plan(), meta, latest)
    assert text.startswith(f"## {decision.upper()}: stage provision by cab (ticket CHG-1)")
    assert "Resume form" not in text
