"""The central identity account of the ``central-roles`` target: the company's people as its
IAM users, each with a virtual MFA device, where they sign in before switching into member
accounts' roles (CIS 1.21's "central IAM account")."""

from __future__ import annotations

from typing import Any

from sandbox.seed_context import Seeding
from sandbox.seed_identity_center import EMAIL_DOMAIN
from sandbox.seed_manifest import SeedManifest

CENTRAL_ACCOUNT_NAME = "identity"
CENTRAL_OU = "Security"
PEOPLE_TAG = "email"  # domain.central_spec.Central.people_tag's default


def seed_central_account(seeding: Seeding, manifest: SeedManifest, *, people: bool) -> None:
    """Create the identity account (a member named "identity", in the Security OU) and, with
    ``people``, one IAM user per identity-store user: the same user name (the e-mail
    address, as an IdP sync leaves it), tag ``email`` = that address, and an enabled virtual
    MFA device. Nothing else of the seed lives there.

    Runs after the rest of the seed, so the member accounts and their users get the ids a
    seed without the central account gives them.
    """
    org = seeding.client("organizations")
    root_id = org.list_roots()["Roots"][0]["Id"]
    status = org.create_account(
        Email=f"aws+{CENTRAL_ACCOUNT_NAME}@{EMAIL_DOMAIN}", AccountName=CENTRAL_ACCOUNT_NAME
    )["CreateAccountStatus"]
    account_id = status["AccountId"]  # moto completes CreateAccount at once
    org.move_account(
        AccountId=account_id, SourceParentId=root_id, DestinationParentId=_ou_id(org, root_id)
    )
    manifest.central_account = account_id
    if not people:
        return
    iam = seeding.member_client(account_id, "iam")
    for identity in manifest.identity_users:
        name = identity["user_name"]
        user = iam.create_user(UserName=name, Tags=[{"Key": PEOPLE_TAG, "Value": name}])["User"]
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
            "SerialNumber"
        ]
        # A virtual device is enabled with two consecutive codes; moto takes any.
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        manifest.central_users.append(
            {"user_name": name, "email": name, "arn": user["Arn"], "mfa_serial": serial}
        )


def _ou_id(org: Any, root_id: str) -> str:
    for page in org.get_paginator("list_organizational_units_for_parent").paginate(
        ParentId=root_id
    ):
        for unit in page["OrganizationalUnits"]:
            if unit["Name"] == CENTRAL_OU:
                return str(unit["Id"])
    return root_id
