"""`iamc export terraform` in the in-process sandbox: after provision and replace are applied,
every exported resource parses, matches the live state attribute for attribute, carries the
provider's documented import id, and the set of resources is what the journal says was made."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import hcl2
import pytest

from domain.errors import NothingToExport
from domain.waves import owned
from engine.apply import apply_plan
from engine.export import export_terraform
from engine.migration import Migration
from state import Store

HOST = "token.actions.githubusercontent.com"  # the GitHub OIDC provider export_plans makes
OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
# [permission_sets] boundary: the customer-managed one on workload roles and the Readers set
# (the world has /iamc/team-read in both accounts), an AWS-managed one on the Admins set.
BOUNDARY = {"customer_managed_policy_reference": {"name": "team-read", "path": "/iamc/"}}
MANAGED_BOUNDARY = {"managed_policy_arn": "arn:aws:iam::aws:policy/PowerUserAccess"}


def _text(parsed: Any) -> Any:
    return parsed.replace("$${", "${").replace("%%{", "%{") if isinstance(parsed, str) else parsed


def _document(parsed: str) -> Any:
    assert parsed.startswith("${jsonencode(") and parsed.endswith(")}"), parsed
    inner = hcl2.loads(f"v = {parsed[len('${jsonencode(') : -2]}\n", serialization_options=OPTIONS)
    return json.loads(_text(json.dumps(inner["v"])))


def _read(out: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str], list]:
    """Resources by address, import ids by address, their import providers, providers."""
    resources: dict[str, dict[str, Any]] = {}
    imports: dict[str, str] = {}
    import_providers: dict[str, str] = {}
    for name in ("permission_sets.tf", "assignments.tf", "workload_roles.tf"):
        parsed = hcl2.loads((out / name).read_text(), serialization_options=OPTIONS)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for rname, body in named.items():
                    assert NAME.match(rname), rname
                    address = f"{kind}.{rname}"
                    assert address not in resources
                    resources[address] = body
        for block in parsed.get("import", []):
            address = block["to"].removeprefix("${").removesuffix("}")
            imports[address] = _text(block["id"])
            if "provider" in block:
                import_providers[address] = block["provider"]
    providers = hcl2.loads((out / "providers.tf").read_text(), serialization_options=OPTIONS)
    return resources, imports, import_providers, providers["provider"]


def test_nothing_applied_is_refused_with_exit_2(clean, kit, tmp_path: Path) -> None:
    spec, _ = kit.write_approved_plan(clean, tmp_path)
    with Migration.open(spec) as mig, pytest.raises(NothingToExport) as refused:
        export_terraform(mig, tmp_path / "tf")
    assert refused.value.exit_code == 2 and "applied nothing" in str(refused.value)
    assert not (tmp_path / "tf").exists()


@pytest.mark.parametrize("boundary", [False, True], ids=["no-boundary", "boundary"])
def test_export_matches_the_live_sandbox_and_the_journal(
    clean, retire_kit, tmp_path: Path, boundary: bool
) -> None:
    world, prefix = clean, f"t{uuid.uuid4().hex[:5]}-"
    spec, provision, retire = retire_kit.export_plans(
        world, tmp_path, prefix, (BOUNDARY, MANAGED_BOUNDARY) if boundary else None
    )
    assert apply_plan(spec, provision, "provision", poll=retire_kit.QUICK)["failed"] == 0
    assert apply_plan(spec, retire, "replace", poll=retire_kit.QUICK)["failed"] == 0
    retire_kit.tag_permission_set(world, "Readers")  # tagged by hand: the import keeps them

    with Migration.open(spec) as mig:
        result = export_terraform(mig)
    out = tmp_path / ".iamc" / "wave-1" / "terraform"
    assert result.out_dir == out and result.notes == []
    resources, imports, import_providers, providers = _read(out)
    assert set(imports) == set(resources)  # every resource has its import block

    expected = _expected(world, tmp_path, (provision, retire))
    # Matched by the documented import id, so the comparison doesn't lean on the names.
    by_id = {(a.split(".")[0], i): a for a, i in imports.items()}
    assert len(by_id) == len(imports)
    assert set(by_id) == set(expected)
    for key, (attributes, account) in expected.items():
        address = by_id[key]
        body = resources[address]
        got = {
            k: _document(v) if isinstance(v, str) and v.startswith("${jsonencode(") else _text(v)
            for k, v in body.items()
            if k != "provider"
        }
        assert got == attributes, address
        # Roles live in member accounts: their resources and imports go through its provider.
        if account is None:
            assert "provider" not in body and address not in import_providers
        else:
            assert body["provider"] == import_providers[address] == f"${{aws.acct_{account}}}"
    aws = [p["aws"] for p in providers]
    assert [p for p in aws if "alias" not in p] == [{"region": "us-east-1"}]
    aliases = {p["alias"]: p["assume_role"][0]["role_arn"] for p in aws if "alias" in p}
    assert aliases == {
        f"acct_{a}": f"arn:aws:iam::{a}:role/OrganizationAccountAccessRole" for a in world.accounts
    }
    counts = {}
    for kind, _ in expected:
        counts[kind] = counts.get(kind, 0) + 1
    assert result.counts == counts
    assert counts["aws_ssoadmin_permission_set"] == 2
    assert counts["aws_ssoadmin_account_assignment"] == 4
    assert counts["aws_iam_openid_connect_provider"] == 1  # account 1's: created
    assert counts["aws_iam_role"] == 4 and counts["aws_iam_instance_profile"] == 1
    assert counts.get("aws_ssoadmin_permissions_boundary_attachment", 0) == (2 if boundary else 0)
    roles = [a for (kind, _), (a, _) in expected.items() if kind == "aws_iam_role"]
    assert all(("permissions_boundary" in r) == boundary for r in roles)
    # The adopted OIDC provider (account 2's) is someone else's: a comment, not a resource.
    text = (out / "workload_roles.tf").read_text()
    assert f"oidc-provider/{HOST} was there before the migration (adopted)" in text
    assert f"arn:aws:iam::{world.accounts[1]}:oidc-provider" in text


def _done(tmp_path: Path, stage: str, plans: tuple[int, ...]) -> list[Any]:
    """The journal's done forward rows of a stage, in the plans given."""
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [
            e
            for plan_id in plans
            for e in store.journal.journal_entries(plan_id, stage)
            if e.done and not e.action_id.startswith("rollback:")
        ]


def _expected(
    world: Any, tmp_path: Path, plans: tuple[int, ...]
) -> dict[tuple[str, str], tuple[dict[str, Any], Any]]:
    """(type, import id) -> (attributes as AWS has them now, member account or None), for
    what the journal says the migration created or adopted."""
    expected: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}
    sso, instance = world.client("sso-admin"), world.instance_arn
    arns = {}
    for arn in sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]:
        ps = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        arns[ps["PermissionSet"]["Name"]] = (arn, ps["PermissionSet"])
    provisioned = _done(tmp_path, "provision", plans)
    for name in sorted(
        {e.intent["action"]["target"] for e in provisioned if "permission-set" in e.kind}
    ):
        arn, described = arns[name]
        ids = {"InstanceArn": instance, "PermissionSetArn": arn}
        both = f"{arn},{instance}"
        attributes = {
            "name": name,
            "session_duration": described["SessionDuration"],
            "instance_arn": instance,
            **_tags(sso.list_tags_for_resource(InstanceArn=instance, ResourceArn=arn)["Tags"]),
        }
        for key, field in (("description", "Description"), ("relay_state", "RelayState")):
            if described.get(field):
                attributes[key] = described[field]
        expected["aws_ssoadmin_permission_set", both] = (attributes, None)
        inline = sso.get_inline_policy_for_permission_set(**ids).get("InlinePolicy")
        if inline:
            expected["aws_ssoadmin_permission_set_inline_policy", both] = (
                {
                    "inline_policy": json.loads(inline),
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                },
                None,
            )
        for policy in sso.list_managed_policies_in_permission_set(**ids)["AttachedManagedPolicies"]:
            expected["aws_ssoadmin_managed_policy_attachment", f"{policy['Arn']},{both}"] = (
                {
                    "instance_arn": instance,
                    "managed_policy_arn": policy["Arn"],
                    "permission_set_arn": arn,
                },
                None,
            )
        refs = sso.list_customer_managed_policy_references_in_permission_set(**ids)
        for ref in refs["CustomerManagedPolicyReferences"]:
            path = ref.get("Path", "/")
            expected[
                "aws_ssoadmin_customer_managed_policy_attachment", f"{ref['Name']},{path},{both}"
            ] = (
                {
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                    "customer_managed_policy_reference": [{"name": ref["Name"], "path": path}],
                },
                None,
            )
        try:
            live = sso.get_permissions_boundary_for_permission_set(**ids)["PermissionsBoundary"]
        except sso.exceptions.ResourceNotFoundException:
            live = None
        if live is not None:
            ref = live.get("CustomerManagedPolicyReference")
            block = (
                {"customer_managed_policy_reference": [{"name": ref["Name"], "path": ref["Path"]}]}
                if ref
                else {"managed_policy_arn": live["ManagedPolicyArn"]}
            )
            expected["aws_ssoadmin_permissions_boundary_attachment", both] = (
                {
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                    "permissions_boundary": [block],
                },
                None,
            )
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
        principal = f"{p['principal_id']},{p['principal_type']}"
        key = f"{principal},{p['account_id']},AWS_ACCOUNT,{arn},{instance}"
        expected["aws_ssoadmin_account_assignment", key] = (
            {
                "instance_arn": instance,
                "permission_set_arn": arn,
                "principal_id": p["principal_id"],
                "principal_type": p["principal_type"],
                "target_id": p["account_id"],
                "target_type": "AWS_ACCOUNT",
            },
            None,
        )
    for entry in _done(tmp_path, "replace", plans):
        account, p = entry.account_id, entry.intent["action"]["params"]
        iam = world.member_iam(account)
        expected.update(_expected_iam(iam, account, entry.kind, entry.status, p))
    return expected


def _tags(tags: list[dict[str, str]]) -> dict[str, Any]:
    """The live tags as the export writes them (none: no attribute)."""
    return {"tags": {t["Key"]: t["Value"] for t in tags}} if tags else {}


def _expected_iam(iam: Any, account: str, kind: str, status: str, p: dict[str, Any]) -> dict:
    if kind == "ensure-oidc-provider":
        if status == "adopted":
            return {}
        arn = f"arn:aws:iam::{account}:oidc-provider/{HOST}"
        found = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        return {
            ("aws_iam_openid_connect_provider", arn): (
                {
                    "url": f"https://{HOST}",
                    "client_id_list": found["ClientIDList"],
                    "thumbprint_list": found["ThumbprintList"],
                    **_tags(found.get("Tags", [])),
                },
                account,
            )
        }
    role = p["role_name"]
    if kind == "create-workload-role":
        live = iam.get_role(RoleName=role)["Role"]
        trust = live["AssumeRolePolicyDocument"]
        attributes = {
            "name": role,
            "path": live["Path"],
            "assume_role_policy": json.loads(trust) if isinstance(trust, str) else trust,
            "max_session_duration": live["MaxSessionDuration"],
            **_tags(iam.list_role_tags(RoleName=role)["Tags"]),
        }
        if live.get("Description"):
            attributes["description"] = live["Description"]
        if live.get("PermissionsBoundary"):
            attributes["permissions_boundary"] = live["PermissionsBoundary"][
                "PermissionsBoundaryArn"
            ]
        return {("aws_iam_role", role): (attributes, account)}
    if kind == "put-role-policy":
        doc = iam.get_role_policy(RoleName=role, PolicyName=p["policy_name"])["PolicyDocument"]
        return {
            ("aws_iam_role_policy", f"{role}:{p['policy_name']}"): (
                {
                    "name": p["policy_name"],
                    "role": role,
                    "policy": json.loads(doc) if isinstance(doc, str) else doc,
                },
                account,
            )
        }
    if kind == "attach-role-policy":
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert p["policy_arn"] in [a["PolicyArn"] for a in attached]
        return {
            ("aws_iam_role_policy_attachment", f"{role}/{p['policy_arn']}"): (
                {"role": role, "policy_arn": p["policy_arn"]},
                account,
            )
        }
    assert kind == "create-instance-profile", kind
    name = p["instance_profile_name"]
    profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    return {
        ("aws_iam_instance_profile", name): (
            {
                "name": name,
                "path": profile["Path"],
                "role": profile["Roles"][0]["RoleName"],
                **_tags(profile.get("Tags", [])),
            },
            account,
        )
    }


def test_each_sets_assignments_are_listed_once_per_account(clean, kit, tmp_path: Path) -> None:
    """ListAccountAssignments is a full pagination: once per (account, set), not per
    assignment (a set with 500 people in an account would otherwise list it 500 times)."""
    world = clean
    spec, plan_id = kit.write_approved_plan(world, tmp_path, approve="provision")
    assert apply_plan(spec, plan_id, "provision", poll=kit.QUICK)["failed"] == 0
    with Migration.open(spec) as mig:
        ours = owned(mig.store.waves.journal_uses(mig.store.migrations.find_migration("wave-1")))
    pairs = {(key[0], key[1]) for key in ours.assignments}
    assert len(ours.assignments) > len(pairs)  # some set has several people in an account
    world.control.reset_calls()
    with Migration.open(spec) as mig:
        export_terraform(mig, tmp_path / "tf")
    assert kit.calls(world)("ListAccountAssignments") == len(pairs)
