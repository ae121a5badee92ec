"""`iamc export terraform --format cloudformation` in the in-process sandbox: after provision
and replace are applied, the templates parse, every resource is retained and named in its
import file, and each matches the live state property for property, for exactly what the
journal says the migration made."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from engine.apply import apply_plan
from iamc.cli import app
from state import Store

HOST = "token.actions.githubusercontent.com"  # the GitHub OIDC provider export_plans makes


def _doc(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _tags(tags: list[dict[str, str]]) -> dict[str, Any]:
    return {"Tags": sorted(tags, key=lambda t: t["Key"])} if tags else {}


def _read(out: Path) -> dict[tuple[str, frozenset], tuple[dict[str, Any], str]]:
    """(type, import identifier) -> (properties with references resolved, template name).

    A reference is resolved through the import file: ``Fn::GetAtt [X, PermissionSetArn]`` to
    X's PermissionSetArn identifier, ``Ref`` of a role to its RoleName."""
    found: dict[tuple[str, frozenset], tuple[dict[str, Any], str]] = {}
    names = sorted(p.name for p in out.glob("*.json") if not p.name.endswith(".import.json"))
    for name in names:
        template = json.loads((out / name).read_text())
        imports = json.loads((out / name.replace(".json", ".import.json")).read_text())
        ids = {i["LogicalResourceId"]: i["ResourceIdentifier"] for i in imports}
        assert list(ids) == list(template["Resources"])  # each resource imported once

        def resolve(value: Any, ids: dict[str, dict[str, str]] = ids) -> Any:
            if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
                logical, attribute = value["Fn::GetAtt"]
                return ids[logical][attribute]
            if isinstance(value, dict) and set(value) == {"Ref"}:
                return ids[value["Ref"]]["RoleName"]
            if isinstance(value, list):
                return [resolve(v) for v in value]
            return value

        for logical, resource in template["Resources"].items():
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
            properties = {k: resolve(v) for k, v in resource["Properties"].items()}
            key = (resource["Type"], frozenset(ids[logical].items()))
            assert key not in found
            found[key] = (properties, name)
    return found


def test_cloudformation_matches_the_live_sandbox_and_the_journal(
    clean, retire_kit, tmp_path: Path
) -> None:
    world, prefix = clean, f"c{uuid.uuid4().hex[:5]}-"
    spec, provision, retire = retire_kit.export_plans(world, tmp_path, prefix)

    assert apply_plan(spec, provision, "provision", poll=retire_kit.QUICK)["failed"] == 0
    assert apply_plan(spec, retire, "replace", poll=retire_kit.QUICK)["failed"] == 0
    retire_kit.tag_permission_set(world, "Readers")  # tagged by hand: the import keeps them

    out = tmp_path / "cfn"
    ran = CliRunner().invoke(
        app,
        ["export", "terraform", "-c", str(spec), "--format", "cloudformation", "--out", str(out)],
    )
    assert ran.exit_code == 0, ran.output
    assert "2  AWS::SSO::PermissionSet" in ran.output
    a1, a2 = world.accounts
    assert {p.name for p in out.iterdir()} == {
        "identity-center.json",
        "identity-center.import.json",
        f"member-{a1}.json",
        f"member-{a1}.import.json",
        f"member-{a2}.json",
        f"member-{a2}.import.json",
        "README.md",
    }
    found = _read(out)
    expected = _expected(world, tmp_path, (provision, retire))
    assert set(found) == set(expected)
    for key, (properties, template) in found.items():
        assert (properties, template) == expected[key], key
    tagged = [p for (kind, _), (p, _) in found.items() if p.get("Name") == "Readers"]
    assert tagged[0]["Tags"] == [
        {"Key": "cost-centre", "Value": "42"},
        {"Key": "owner", "Value": "platform"},
    ]
    # The adopted OIDC provider (account 2's) is someone else's: said, not imported.
    assert "(adopted)" in (out / f"member-{a2}.json").read_text()

    # The other spelling writes the same files.
    again = CliRunner().invoke(
        app, ["export", "cloudformation", "-c", str(spec), "--out", str(tmp_path / "again")]
    )
    assert again.exit_code == 0, again.output
    for path in out.iterdir():
        assert (tmp_path / "again" / path.name).read_text() == path.read_text(), path.name


def _done(tmp_path: Path, stage: str, plans: tuple[int, ...]) -> list[Any]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [
            e
            for plan_id in plans
            for e in store.journal.journal_entries(plan_id, stage)
            if e.done and not e.action_id.startswith("rollback:")
        ]


def _expected(world: Any, tmp_path: Path, plans: tuple[int, ...]) -> dict:
    """(type, import identifier) -> (properties as AWS has them now, template), for what the
    journal says the migration created or adopted; read with plain boto3 calls."""
    expected: dict[tuple[str, frozenset], tuple[dict[str, Any], str]] = {}
    sso, instance = world.client("sso-admin"), world.instance_arn
    arns = {}
    for arn in sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]:
        ps = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        arns[ps["PermissionSet"]["Name"]] = (arn, ps["PermissionSet"])
    provisioned = _done(tmp_path, "provision", plans)
    ic = "identity-center.json"
    for name in {e.intent["action"]["target"] for e in provisioned if "permission-set" in e.kind}:
        arn, described = arns[name]
        ids = {"InstanceArn": instance, "PermissionSetArn": arn}
        properties: dict[str, Any] = {"InstanceArn": instance, "Name": name}
        for key, field in (
            ("Description", "Description"),
            ("SessionDuration", "SessionDuration"),
            ("RelayStateType", "RelayState"),
        ):
            if described.get(field):
                properties[key] = described[field]
        inline = sso.get_inline_policy_for_permission_set(**ids).get("InlinePolicy")
        if inline:
            properties["InlinePolicy"] = json.loads(inline)
        managed = sso.list_managed_policies_in_permission_set(**ids)["AttachedManagedPolicies"]
        if managed:
            properties["ManagedPolicies"] = sorted(p["Arn"] for p in managed)
        refs = sso.list_customer_managed_policy_references_in_permission_set(**ids)[
            "CustomerManagedPolicyReferences"
        ]
        if refs:
            properties["CustomerManagedPolicyReferences"] = [
                {"Name": r["Name"], "Path": r.get("Path", "/")} for r in refs
            ]
        properties |= _tags(
            sso.list_tags_for_resource(InstanceArn=instance, ResourceArn=arn)["Tags"]
        )
        expected["AWS::SSO::PermissionSet", frozenset(ids.items())] = (properties, ic)
    for entry in provisioned:
        if entry.kind != "create-assignment":
            continue
        p = entry.intent["action"]["params"]
        arn = arns[p["permission_set_name"]][0]
        live = sso.list_account_assignments(
            InstanceArn=instance, AccountId=p["account_id"], PermissionSetArn=arn
        )["AccountAssignments"]
        assert {
            "AccountId": p["account_id"],
            "PermissionSetArn": arn,
            "PrincipalType": p["principal_type"],
            "PrincipalId": p["principal_id"],
        } in live
        properties = {
            "InstanceArn": instance,
            "PermissionSetArn": arn,
            "PrincipalType": p["principal_type"],
            "PrincipalId": p["principal_id"],
            "TargetType": "AWS_ACCOUNT",
            "TargetId": p["account_id"],
        }
        expected["AWS::SSO::Assignment", frozenset(properties.items())] = (properties, ic)
    for entry in _done(tmp_path, "replace", plans):
        account, p = entry.account_id, entry.intent["action"]["params"]
        iam, template = world.member_iam(account), f"member-{account}.json"
        for key, properties in _expected_iam(iam, account, entry.kind, entry.status, p).items():
            expected[key] = (properties, template)
    return expected


def _expected_iam(iam: Any, account: str, kind: str, status: str, p: dict[str, Any]) -> dict:
    """A role holds its inline policies and attachments (the journal's separate actions)."""
    if kind == "ensure-oidc-provider":
        if status == "adopted":
            return {}
        arn = f"arn:aws:iam::{account}:oidc-provider/{HOST}"
        found = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        properties = {
            "Url": f"https://{HOST}",
            "ClientIdList": found["ClientIDList"],
            "ThumbprintList": found["ThumbprintList"],
            **_tags(found.get("Tags", [])),
        }
        return {("AWS::IAM::OIDCProvider", frozenset({("Arn", arn)})): properties}
    if kind == "create-workload-role":
        role = p["role_name"]
        live = iam.get_role(RoleName=role)["Role"]
        properties = {
            "RoleName": role,
            "Path": live["Path"],
            "AssumeRolePolicyDocument": _doc(live["AssumeRolePolicyDocument"]),
            "MaxSessionDuration": live["MaxSessionDuration"],
        }
        if live.get("Description"):
            properties["Description"] = live["Description"]
        if live.get("PermissionsBoundary"):
            properties["PermissionsBoundary"] = live["PermissionsBoundary"][
                "PermissionsBoundaryArn"
            ]
        policies = sorted(iam.list_role_policies(RoleName=role)["PolicyNames"])
        if policies:
            properties["Policies"] = [
                {
                    "PolicyName": name,
                    "PolicyDocument": _doc(
                        iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                    ),
                }
                for name in policies
            ]
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        if attached:
            properties["ManagedPolicyArns"] = sorted(a["PolicyArn"] for a in attached)
        properties |= _tags(iam.list_role_tags(RoleName=role)["Tags"])
        return {("AWS::IAM::Role", frozenset({("RoleName", role)})): properties}
    if kind == "create-instance-profile":
        name = p["instance_profile_name"]
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        properties = {
            "InstanceProfileName": name,
            "Path": profile["Path"],
            "Roles": [r["RoleName"] for r in profile["Roles"]],
        }
        return {
            ("AWS::IAM::InstanceProfile", frozenset({("InstanceProfileName", name)})): properties
        }
    assert kind in ("put-role-policy", "attach-role-policy"), kind  # inside the role
    return {}
