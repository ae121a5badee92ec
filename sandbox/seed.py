"""Seed a sandbox with an organization that looks like a real company's, deterministically."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.errors import SandboxError
from sandbox.seed_central import seed_central_account
from sandbox.seed_context import Seeding
from sandbox.seed_iam_users import HUMAN_KINDS, KIND_CYCLE, seed_account_users
from sandbox.seed_identity_center import EMAIL_DOMAIN, company_people, seed_identity_store
from sandbox.seed_manifest import SeededAccount, SeedManifest
from sandbox.seed_planted_keys import plant_aws_keys
from sandbox.seed_samples import write_samples

log = logging.getLogger(__name__)

_ACCOUNT_PLAN: tuple[tuple[str, str], ...] = (
    ("prod-app", "Workloads/Prod"),
    ("dev-app", "Workloads/Dev"),
    ("security-tooling", "Security"),
    ("log-archive", "Security"),
    ("prod-data", "Workloads/Prod"),
    ("dev-data", "Workloads/Dev"),
    ("sandbox-research", "Sandbox"),
)
_OUS = ("Workloads", "Workloads/Prod", "Workloads/Dev", "Security", "Sandbox")
_SUSPENDED_ACCOUNT = ("sandbox-retired", "Sandbox")


def seed_organization(
    session: boto3.Session,
    *,
    accounts: int = 6,
    users_per_account: int = 12,
    seed: int = 7,
    empty: bool = False,
    samples_dir: Path | None = None,
    endpoint_url: str | None = None,
    central: bool = False,
) -> SeedManifest:
    """Create an organization, Identity Center users and IAM users of every kind.

    Must run in the process that hosts the sandbox (it edits moto's backends for dates), on a
    fresh sandbox whose random source was seeded with ``seed`` for stable ids.

    Args:
        session: A session in the management account (dummy credentials).
        accounts: Member accounts with IAM users; one more, SUSPENDED, is added when >= 2.
        users_per_account: IAM users per active member account, cycling through KIND_CYCLE.
        seed: Drives every choice (people, dates) so a seed gives the same organization.
        empty: Only the organization (OUs, up to two member accounts without users) and the
            Identity Center instance.
        samples_dir: Where to write sample code with a planted key, and seed-manifest.json.
        endpoint_url: The sandbox URL; None uses the session's configuration (AWS_ENDPOINT_URL).
        central: Also an identity account for the ``central-roles`` target (a member named
            "identity", ``manifest.central_account``) whose IAM users are the people, one per
            identity-store user, each with a virtual MFA device (``manifest.central_users``);
            made last, so everything else is as without it.

    Returns:
        The manifest of what was made and the class an inventory should give each user.

    Raises:
        SandboxError: A call failed, or the organization already exists.
    """
    try:
        seeding = Seeding(session, seed, endpoint_url)
        manifest = _create_organization(seeding, accounts, empty)
        if not empty:
            _populate(seeding, manifest, users_per_account, samples_dir)
        if central:
            seed_central_account(seeding, manifest, people=not empty)
        return _finish(manifest, samples_dir)
    except ClientError as err:
        raise SandboxError(f"seeding the sandbox failed: {err}") from err


def _create_organization(seeding: Seeding, accounts: int, empty: bool) -> SeedManifest:
    """The organization, its OUs and member accounts (one SUSPENDED when there are >= 2)."""
    org = seeding.client("organizations")
    try:
        organization = org.create_organization(FeatureSet="ALL")["Organization"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "AlreadyInOrganizationException":
            raise SandboxError(
                "the sandbox already holds an organization: seed a fresh sandbox"
            ) from err
        raise
    management_id = organization["MasterAccountId"]
    root_id = org.list_roots()["Roots"][0]["Id"]
    ou_ids = _create_ous(org, root_id)

    sso = seeding.client("sso-admin")
    instance = sso.list_instances()["Instances"][0]
    manifest = SeedManifest(
        seed=seeding.seed,
        management_account_id=management_id,
        organization_id=organization["Id"],
        instance_arn=instance["InstanceArn"],
        identity_store_id=instance["IdentityStoreId"],
    )
    active = min(accounts, 2) if empty else accounts
    plan = [_account_plan(i) for i in range(active)]
    for name, ou in plan:
        account_id = _create_account(org, name, root_id, ou_ids[ou])
        manifest.accounts.append(SeededAccount(account_id, f"acme-{name}", ou, "ACTIVE"))
    if not empty and accounts >= 2:
        name, ou = _SUSPENDED_ACCOUNT
        account_id = _create_account(org, name, root_id, ou_ids[ou])
        # CloseAccount leaves the account SUSPENDED in the organization for 90 days
        # (Organizations API reference, CloseAccount).
        org.close_account(AccountId=account_id)
        manifest.accounts.append(SeededAccount(account_id, f"acme-{name}", ou, "SUSPENDED"))
    return manifest


def _populate(
    seeding: Seeding, manifest: SeedManifest, users_per_account: int, samples_dir: Path | None
) -> None:
    """Identity Center users, the active accounts' IAM users, and the keys planted for scans."""
    humans_per_account = sum(
        1 for i in range(users_per_account) if KIND_CYCLE[i % len(KIND_CYCLE)] in HUMAN_KINDS
    )
    # Four more people than any account's human slots, so every account can pick its own.
    people = company_people(humans_per_account + 4)
    seed_identity_store(seeding, manifest, people)
    first = True
    for account in manifest.accounts:
        if account.status != "ACTIVE":
            continue
        seed_account_users(seeding, manifest, account, users_per_account, people, first)
        first = False
    plant_aws_keys(seeding, manifest)
    if samples_dir is not None and manifest.sample_key_id:
        write_samples(seeding, manifest, samples_dir)


def _finish(manifest: SeedManifest, samples_dir: Path | None) -> SeedManifest:
    if samples_dir is not None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        (samples_dir / "seed-manifest.json").write_text(
            json.dumps(manifest.to_dict(), indent=2) + "\n"
        )
    log.info(
        "seeded %d accounts, %d IAM users",
        len(manifest.accounts),
        sum(len(a.users) for a in manifest.accounts),
    )
    return manifest


def _create_ous(org: Any, root_id: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    for path in _OUS:
        parent, _, name = path.rpartition("/")
        parent_id = ids[parent] if parent else root_id
        ids[path] = org.create_organizational_unit(ParentId=parent_id, Name=name)[
            "OrganizationalUnit"
        ]["Id"]
    return ids


def _account_plan(index: int) -> tuple[str, str]:
    name, ou = _ACCOUNT_PLAN[index % len(_ACCOUNT_PLAN)]
    round_ = index // len(_ACCOUNT_PLAN)
    return (f"{name}-{round_ + 1}" if round_ else name), ou


def _create_account(org: Any, name: str, root_id: str, ou_id: str) -> str:
    status = org.create_account(Email=f"aws+{name}@{EMAIL_DOMAIN}", AccountName=f"acme-{name}")[
        "CreateAccountStatus"
    ]
    # moto completes CreateAccount at once; AWS would need DescribeCreateAccountStatus polls.
    account_id = status["AccountId"]
    org.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_id)
    return account_id
