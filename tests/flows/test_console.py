"""What the Prefect UI tells an operator: deployment names, failure messages, forms, notices."""

from __future__ import annotations

import email
import json
from datetime import date
from pathlib import Path
from typing import Any

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
    assert deployment_name("centralize", "acme") == "00 centralize (acme)"
    assert deployment_name("apply", "acme") == "08 apply (acme)"
    assert artifact_key("acme_Wave.1", "apply", "provision") == "acme-wave-1-apply-provision"


def test_errors_name_the_deployment_as_well_as_the_command():
    err = NoInventoryError("no inventory yet for migration 'acme': run 'iamc inventory -c s.toml'")
    message = operator_message(err, "mapping", "acme", "s.toml")
    assert "run the deployment '01 inventory (acme)'" in message
    assert "iamc inventory -c s.toml" in message and "Traceback" not in message
    failed = operator_message(
        ApplyFailed("run 4: 1 failed; fix the cause, then 'iamc resume 4 -c s.toml'"),
        "apply",
        "acme",
        "s.toml",
    )
    assert "press Retry on this flow run" in failed and "iamc resume 4 -c s.toml" in failed
    assert ui_next_steps("run 'iamc map -c x' then 'iamc plan -c x'", "m") == [
        "run the deployment '02 mapping (m)'",
        "run the deployment '06 plan (m)'",
    ]


def test_the_deployments_are_numbered_typed_and_described_for_operators(tmp_path: Path):
    from iamc.serve import deployments, runbook_lines

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    found = {d.name: d for d in deployments(spec)}
    # Sorted as text, as the UI lists them: the runbook's order.
    assert sorted(found) == [
        "00 centralize (acme_Wave.1)",
        "01 inventory (acme_Wave.1)",
        "02 mapping (acme_Wave.1)",
        "03 key-scan (acme_Wave.1)",
        "04 workloads (acme_Wave.1)",
        "05 usage (acme_Wave.1)",
        "06 plan (acme_Wave.1)",
        "07 plan-and-approve (acme_Wave.1)",
        "08 apply (acme_Wave.1)",
        "09 verify (acme_Wave.1)",
        "10 notify (acme_Wave.1)",
        "11 bake-watch (acme_Wave.1)",
        "12 rollback (acme_Wave.1)",
        "13 restore (acme_Wave.1)",
        "14 drift (acme_Wave.1)",
    ]
    for deployment in found.values():
        assert "Args:" not in deployment.description and ":class:" not in deployment.description
    from flows.apply import apply_flow

    schema = apply_flow.parameters.model_dump()
    text = json.dumps(schema)
    assert '"provision"' in text and '"disable"' in text and '"delete"' in text  # a choice
    assert schema["properties"]["plan_id"].get("default") is None  # the latest plan
    lines = "\n".join(runbook_lines(spec))
    assert "00 centralize" in lines and f"iamc status RUN_ID -c {spec}" in lines


def test_the_approval_form_shows_the_hash_irreversible_actions_and_the_plan():
    plan = _plan()
    text = form_description("acme", 3, "ab" * 32, plan, "http://ui/artifacts/artifact/1")
    assert "**2 irreversible**" in text
    assert "(http://ui/artifacts/artifact/1)" in text and "2 migrate" in text
    form = _form(text, "provision")
    schema = form.model_json_schema()
    # The reviewer types the hash they read: it is not prefilled (issue 21).
    assert "default" not in schema["properties"]["plan_hash"]
    assert "plan_hash" in schema["required"]
    assert "at least its first 12" in schema["properties"]["plan_hash"]["description"]
    assert schema["properties"]["ticket"]["description"]
    assert issubclass(form, ApprovalInput) and form._description == text


def test_the_whole_hash_is_shown_in_lines_a_dialog_does_not_clip():
    plan_hash = "0123456789abcdef" * 4
    text = form_description("acme", 3, plan_hash, _plan(), None, stage="disable")
    assert text.startswith("### Approve plan 3 of acme (stage disable)?")
    # Prefect's Resume dialog clips one 64-character line: the hash is a code block of 16s.
    block = text.split("```text\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert block == ["0123456789abcdef"] * 4
    assert plan_hash not in text.replace("```text", "")  # never one long unbreakable line


def test_the_form_wants_one_line_names_and_a_typed_hash_and_the_server_checks_them():
    import jsonschema
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    form = _form("text", "provision")
    schema = create_v2_schema(form.__name__, model_base=form)  # what pause_flow_run saves
    assert {"approver", "ticket", "plan_hash", "decision"} <= set(schema["required"])
    good = {"approver": "Ann Lee", "ticket": "CHG-1", "decision": "approve",
            "stage": "provision", "plan_hash": "0123456789ab cdef\n01"}  # fmt: skip
    jsonschema.validate(good, schema)  # a hash pasted over lines is accepted
    assert form(**good).plan_hash == "0123456789abcdef01"
    # The server refuses these at Resume (the run stays paused); the form model too.
    for bad in ({"approver": "Ann\nLee"}, {"ticket": "CHG-1\nCHG-2"}, {"plan_hash": "xyz"},
                {"plan_hash": "0123456789a"}, {"approver": "  "}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, **bad}, schema)
        with pytest.raises(ValueError):
            form(**{**good, **bad})


def test_plan_and_approve_presets_the_stage_it_is_run_for():
    from flows.plan import plan_and_approve

    schema = plan_and_approve.parameters.model_dump()
    assert schema["properties"]["stage"]["default"] == "provision"


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


def test_a_failed_runs_message_says_retry_once():
    message = operator_message(
        ApplyFailed("run 4: 1 failed, 0 pending of 9 actions; fix the cause, then "
                    "'iamc resume 4 -c s.toml':\n  x: y FAILED: Quota exceeded"),
        "apply", "acme", "s.toml",
    )  # fmt: skip
    assert message.count("press Retry") == 1 and message.count("done work is not repeated") == 1
    assert "Quota exceeded" in message and "iamc resume 4 -c s.toml" in message


def test_progress_counts_failed_and_pending_actions_never_a_full_bar_on_failure():
    from console.progress import ProgressArtifact, ProgressEvents

    events = ProgressEvents("apply-start", "actions", "action-done", "actions")
    bar = ProgressArtifact("k", "apply of acme", events)
    bar.on_event("apply-start", {"actions": 42})
    for n in range(30):
        bar.on_event("action-done", {"action_id": f"a{n}", "status": "succeeded"})
    bar.on_event("action-done", {"action_id": "f1", "status": "failed"})
    bar.on_event("action-done", {"action_id": "f2", "status": "failed"})
    assert bar.description() == "apply of acme: 30 done, 2 failed, 10 pending of 42 actions"
    assert bar.percent() == 71.4
    bar.finish("the run failed")  # no artifact yet: nothing is sent
    assert bar.description().endswith("10 pending of 42 actions; the run failed")
    # A Retry that finds an action done and re-does a failed one counts each action once.
    bar.on_event("action-done", {"action_id": "f1", "status": "succeeded"})
    assert bar.done == 31 and bar.failed == 1
    done = ProgressArtifact("k", "apply of acme", events)
    done.on_event("apply-start", {"actions": 2})
    for n in range(2):
        done.on_event("action-done", {"action_id": f"a{n}", "status": "adopted"})
    done.finish(None)
    assert done.description() == "apply of acme: 2 of 2 actions done" and done.percent() == 100


def test_long_cells_are_cut_and_written_whole_in_the_description():
    from console.tables import CELL_LIMIT, fitted_table

    reason = (
        "AccessDenied: User: arn:aws:sts::111111111111:assumed-role/iamc/s is not authorized "
        "to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/"
        "OrganizationAccountAccessRole"
    )
    rows = [{"account": A2, "name": "prod", "state": "FAILED", "reasons": reason, "done": 3},
            {"account": A1, "name": "dev", "state": "done", "reasons": "", "done": 4}]  # fmt: skip
    table, description = fitted_table(rows, "**Run 4** failed.")
    cell = table[0]["reasons"]
    assert len(cell) <= CELL_LIMIT and cell.startswith("AccessDenied: User:")
    assert cell.endswith("… [1]") and table[1] == rows[1] and table[0]["done"] == 3
    assert description.startswith("**Run 4** failed.")
    assert f"[1] {A2} prod, reasons: {reason}" in description


def test_every_artifact_key_is_made_by_artifact_key():
    """``<migration>-<step>[-<wave>]`` everywhere: no key built by hand (``plan-acme``)."""
    import ast

    assert artifact_key("acme", "plan", "Wave 1") == "acme-plan-wave-1"
    assert artifact_key("acme", "bake-watch") == "acme-bake-watch"
    root = Path(__file__).resolve().parents[2]
    publishers = {"publish_table", "publish_markdown"}
    creators = {"create_table_artifact", "create_markdown_artifact", "create_progress_artifact"}
    hand_made = []
    for package in ("flows", "console", "stages", "engine", "iamc"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                key = None
                if name in publishers and node.args:
                    key = node.args[0]
                elif name in creators:
                    key = next((k.value for k in node.keywords if k.arg == "key"), None)
                if isinstance(key, ast.JoinedStr | ast.Constant | ast.BinOp | ast.Call) and not (
                    isinstance(key, ast.Call) and getattr(key.func, "id", "") == "artifact_key"
                ):
                    hand_made.append(f"{path.relative_to(root)}:{node.lineno}")
    assert hand_made == []


def test_flow_runs_are_named_by_what_they_do():
    from console.run_names import opened_name, start_name

    assert start_name("apply", {"stage": "provision", "plan_id": None}) == (
        "apply provision · latest plan"
    )
    assert start_name("rollback", {"run_id": 11, "dry_run": True}) == (
        "rollback · undoes run 11 · dry run"
    )
    assert start_name("plan", {"wave": "wave-2", "out_dir": None}) == "plan · wave wave-2"
    opened = {"run_id": 11, "kind": "apply", "plan_id": 1, "stage": "provision"}
    assert opened_name(opened) == "apply provision · plan 1 · run 11"


def _artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        return {a.key: a for a in found}


def test_a_failed_apply_run_tells_the_truth_in_its_name_message_progress_and_table(
    clean, kit, tmp_path: Path
):
    from prefect.client.orchestration import get_client

    from engine.apply import apply_plan
    from engine.executor import AFTER_INTENT, InjectedCrash
    from engine.migration import Migration
    from engine.reports import load_plan
    from engine.runs import list_runs
    from flows.apply import apply_flow
    from tasks.permission_sets import permission_set_names

    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    a1 = clean.accounts[0]
    first = next(
        a for a in plan.actions if a.kind == "provision-permission-set" and a.account_id == a1
    )
    with pytest.raises(InjectedCrash):  # the sets exist: the sandbox's fault can aim at one
        apply_plan(spec, plan_id, fault=(first.id, AFTER_INTENT), poll=kit.QUICK)
    readers = permission_set_names(clean.client("sso-admin"), clean.instance_arn)["Readers"]
    clean.control.fail_next_assignment(a1, readers, "Quota exceeded for account assignments")

    state = apply_flow(str(spec), None, "provision", return_state=True)

    assert state.is_failed()
    assert state.message.count("press Retry") == 1, state.message
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    run_id = Migration.call(list_runs, spec)[-1]["id"]
    # Named at the start from its parameters, renamed once the state DB's run opened.
    assert flow_run.name == f"apply provision · plan {plan_id} · run {run_id}", flow_run.name
    artifacts = _artifacts_of(flow_run.id)
    progress = artifacts["wave-1-apply-provision-progress"]
    assert progress.data < 100 and "8 done, 1 failed, 0 pending of 9 actions" in (
        progress.description
    ), (progress.data, progress.description)
    table = artifacts["wave-1-apply-provision"]
    assert "**failed**" in table.description and "Quota exceeded" in str(table.data)
    assert "wave-1-waves" in artifacts


def test_the_waves_table_names_a_failed_disable_run_not_the_next_stage(
    clean, retire_kit, tmp_path: Path
):
    import uuid

    from domain.errors import ApplyFailed
    from engine.apply import apply_plan
    from engine.migration import Migration
    from engine.reports import waves_report
    from engine.runs import list_runs

    kit, prefix = retire_kit, f"w{uuid.uuid4().hex[:6]}-"
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "provision")
    # A key created since the plan: bob is refused, so the disable run fails part-way.
    clean.member_iam(a2).create_access_key(UserName=f"{prefix}bob")
    with pytest.raises(ApplyFailed):
        apply_plan(spec, plan_id, "disable")

    (row,) = Migration.call(waves_report, spec)[0]
    run_id = Migration.call(list_runs, spec)[-1]["id"]
    assert row["pending"].startswith(f"disable run {run_id} failed: "), row["pending"]
    assert " actions done, 0 failed, 2 pending" in row["pending"] and "Retry" in row["pending"]
    assert f"iamc resume {run_id} -c {spec}" in row["pending"]
