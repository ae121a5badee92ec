"""The CloudFormation writer: templates per account, every resource retained, logical ids valid
and stable, an import file naming each type's primary identifier, and cfn-lint clean."""

from __future__ import annotations

import json
import re
from typing import Any

from cfnlint.api import lint_all
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from domain.cloudformation_export import (
    CfnResource,
    assign_logical_ids,
    cloudformation_files,
    logical_id,
)
from domain.export_records import (
    AssignmentRecord,
    ExportRecords,
    InstanceProfileRecord,
    OidcProviderRecord,
    PermissionSetRecord,
    RoleAttachmentRecord,
    RolePolicyRecord,
    RoleRecord,
)

INSTANCE = "arn:aws:sso:::instance/ssoins-1234567890abcdef"
A1, A2 = "111122223333", "444455556666"
DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
VALID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,254}$")


def _principal(n: int) -> str:
    """An identity store id as AWS writes them (the schema's PrincipalId pattern)."""
    return f"9067a1b2c3-{n:08x}-2222-3333-4444-555555555555"


def _arn(n: int) -> str:
    return f"{INSTANCE}/ps-{n:016x}"


def records() -> ExportRecords:
    sets = [
        PermissionSetRecord(
            name="Readers",
            arn=_arn(1),
            description="read access",
            session_duration="PT4H",
            relay_state="https://console.aws.amazon.com/s3",
            inline_policy=DOC,
            aws_managed_policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",),
            customer_managed_policies=({"name": "team-read", "path": "/iamc/"},),
            permissions_boundary={
                "customer_managed_policy_reference": {"name": "guard", "path": "/"}
            },
            tags={"owner": "platform", "cost-centre": "42"},
        ),
        PermissionSetRecord(
            name="Admins",
            arn=_arn(2),
            description="",
            session_duration="PT1H",
            relay_state=None,
            inline_policy=None,
            permissions_boundary={"managed_policy_arn": "arn:aws:iam::aws:policy/PowerUserAccess"},
        ),
    ]
    assignments = [
        AssignmentRecord(A1, "Readers", _arn(1), "USER", _principal(1), "a.b@example.com"),
        # Its name cleans to the same words as the one above: both get a digest.
        AssignmentRecord(A1, "Readers", _arn(1), "USER", _principal(2), "a-b@example.com"),
        AssignmentRecord(A2, "Admins", _arn(2), "GROUP", _principal(3), "devs"),
    ]
    workloads = [
        OidcProviderRecord(
            A1,
            f"arn:aws:iam::{A1}:oidc-provider/token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com",
            ("sts.amazonaws.com",),
            ("a" * 40,),
            {"iamc:migration": "wave-1"},
        ),
        RoleRecord(
            A1,
            "box",
            "/iamc/",
            f"arn:aws:iam::{A1}:role/iamc/box",
            TRUST,
            "",
            3600,
            None,
            {"iamc:user": "box"},
        ),
        RolePolicyRecord(A1, "box", "from-user", DOC),
        RoleAttachmentRecord(A1, "box", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
        InstanceProfileRecord(A1, "box", "/iamc/", ("box",), {"iamc:user": "box"}),
        RolePolicyRecord(A1, "not-ours", "x", DOC),  # its role is not the migration's
        RoleRecord(
            A2, "deploy", "/iamc/", f"arn:aws:iam::{A2}:role/iamc/deploy", TRUST, "d", 7200, None
        ),
    ]
    return ExportRecords(
        migration="wave-1",
        instance_arn=INSTANCE,
        region="us-east-1",
        member_role="OrganizationAccountAccessRole",
        permission_sets=sets,
        assignments=assignments,
        workloads=workloads,
        workload_notes=[(A2, "OIDC provider X was there before the migration (adopted)")],
    )


def _templates(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        name: json.loads(text)
        for name, text in files.items()
        if name.endswith(".json") and not name.endswith(".import.json")
    }


def test_one_template_for_identity_center_and_one_per_member_account() -> None:
    files, counts = cloudformation_files(records())
    assert set(files) == {
        "identity-center.json",
        "identity-center.import.json",
        f"member-{A1}.json",
        f"member-{A1}.import.json",
        f"member-{A2}.json",
        f"member-{A2}.import.json",
        "README.md",
    }
    templates = _templates(files)
    types = {n: sorted(r["Type"] for r in t["Resources"].values()) for n, t in templates.items()}
    assert types == {
        "identity-center.json": ["AWS::SSO::Assignment"] * 3 + ["AWS::SSO::PermissionSet"] * 2,
        f"member-{A1}.json": [
            "AWS::IAM::InstanceProfile",
            "AWS::IAM::OIDCProvider",
            "AWS::IAM::Role",
        ],
        f"member-{A2}.json": ["AWS::IAM::Role"],
    }
    assert counts == {
        "AWS::SSO::PermissionSet": 2,
        "AWS::SSO::Assignment": 3,
        "AWS::IAM::Role": 2,
        "AWS::IAM::InstanceProfile": 1,
        "AWS::IAM::OIDCProvider": 1,
    }
    for template in templates.values():
        for resource in template["Resources"].values():
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_properties_carry_every_attribute() -> None:
    templates = _templates(cloudformation_files(records())[0])
    ic = templates["identity-center.json"]["Resources"]
    assert ic["PermissionSetReaders"]["Properties"] == {
        "InstanceArn": INSTANCE,
        "Name": "Readers",
        "Description": "read access",
        "SessionDuration": "PT4H",
        "RelayStateType": "https://console.aws.amazon.com/s3",
        "InlinePolicy": DOC,  # an object, not a JSON string
        "ManagedPolicies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "CustomerManagedPolicyReferences": [{"Name": "team-read", "Path": "/iamc/"}],
        "PermissionsBoundary": {"CustomerManagedPolicyReference": {"Name": "guard", "Path": "/"}},
        "Tags": [{"Key": "cost-centre", "Value": "42"}, {"Key": "owner", "Value": "platform"}],
    }
    assert ic["PermissionSetAdmins"]["Properties"] == {
        "InstanceArn": INSTANCE,
        "Name": "Admins",
        "SessionDuration": "PT1H",
        "PermissionsBoundary": {"ManagedPolicyArn": "arn:aws:iam::aws:policy/PowerUserAccess"},
    }
    group = ic[f"AssignmentAdmins{A2}GROUPDevs"]["Properties"]
    assert group == {
        "InstanceArn": INSTANCE,
        "PermissionSetArn": {"Fn::GetAtt": ["PermissionSetAdmins", "PermissionSetArn"]},
        "PrincipalType": "GROUP",
        "PrincipalId": _principal(3),
        "TargetType": "AWS_ACCOUNT",
        "TargetId": A2,
    }
    member = templates[f"member-{A1}.json"]
    assert member["Resources"]["RoleBox"]["Properties"] == {
        "RoleName": "box",
        "Path": "/iamc/",
        "AssumeRolePolicyDocument": TRUST,
        "MaxSessionDuration": 3600,
        "Policies": [{"PolicyName": "from-user", "PolicyDocument": DOC}],
        "ManagedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "Tags": [{"Key": "iamc:user", "Value": "box"}],
    }
    assert member["Resources"]["InstanceProfileBox"]["Properties"] == {
        "InstanceProfileName": "box",
        "Path": "/iamc/",
        "Roles": [{"Ref": "RoleBox"}],
    }
    # What a template can't hold is said in it, not dropped silently.
    notes = " ".join(member["Metadata"]["iamc"]["notes"])
    assert "not-ours" in notes and "instance profile box keeps its tags" in notes
    assert "adopted" in json.dumps(templates[f"member-{A2}.json"]["Metadata"])


def test_import_files_name_each_resource_by_its_primary_identifier() -> None:
    files, _ = cloudformation_files(records())
    for name, template in _templates(files).items():
        imports = json.loads(files[name.removesuffix(".json") + ".import.json"])
        assert [i["LogicalResourceId"] for i in imports] == list(template["Resources"])
        for entry in imports:
            resource = template["Resources"][entry["LogicalResourceId"]]
            assert entry["ResourceType"] == resource["Type"]
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource["Type"])
            primary = [p.removeprefix("/properties/") for p in schema.schema["primaryIdentifier"]]
            assert sorted(entry["ResourceIdentifier"]) == sorted(primary), entry
            for key, value in entry["ResourceIdentifier"].items():
                # Written properties equal the identifier; read-only ones (ARNs) are not written.
                if key in resource["Properties"] and key != "PermissionSetArn":
                    assert resource["Properties"][key] == value
    ic = json.loads(files["identity-center.import.json"])
    readers = next(i for i in ic if i["LogicalResourceId"] == "PermissionSetReaders")
    assert readers["ResourceIdentifier"] == {"InstanceArn": INSTANCE, "PermissionSetArn": _arn(1)}
    assert "--resources-to-import file://identity-center.import.json" in files["README.md"]


def test_logical_ids_are_valid_unique_and_stable() -> None:
    first, _ = cloudformation_files(records())
    assert cloudformation_files(records())[0] == first
    for template in _templates(first).values():
        for logical in template["Resources"]:
            assert VALID_ID.match(logical), logical
    ids = list(_templates(first)["identity-center.json"]["Resources"])
    clashing = [i for i in ids if i.startswith(f"AssignmentReaders{A1}USERAB")]
    assert len(clashing) == 2 and len(set(clashing)) == 2
    # One resource fewer changes no other resource's id.
    fewer = records()
    fewer.assignments = fewer.assignments[1:]
    again = list(_templates(cloudformation_files(fewer)[0])["identity-center.json"]["Resources"])
    assert set(again) - set(ids) == {f"AssignmentReaders{A1}USERABExampleCom"}
    assert len(set(ids) - set(again)) == 2
    assert logical_id("Role", "9-lives") == "Role9Lives"
    assert VALID_ID.match(logical_id("***"))
    long = assign_logical_ids([CfnResource(("Role", "x" * 300), "AWS::IAM::Role", {}, {})])
    assert len(long[0].logical_id) == 255 and VALID_ID.match(long[0].logical_id)


def test_templates_pass_cfn_lint() -> None:
    files, _ = cloudformation_files(records())
    for name, template in _templates(files).items():
        found = [m for m in lint_all(json.dumps(template)) if m.rule.id[0] in "EW"]
        assert found == [], (name, [str(m) for m in found])
