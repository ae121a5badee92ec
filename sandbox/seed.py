"""Seed a sandbox with an organization that looks like a real company's, deterministically.

Everything is made through the AWS API against the sandbox, except what the API cannot express:
how long ago users were created and credentials last used. Those dates are written straight
into moto's backends (the seeding runs in the process that hosts the sandbox), because AWS sets
them only from real sign-ins and requests and moto stamps "now" on everything.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import logging
import os
import random
import shutil
import subprocess
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.errors import SandboxError

log = logging.getLogger(__name__)

MEMBER_ROLE = "OrganizationAccountAccessRole"
EMAIL_DOMAIN = "example.com"
PROTECTED_GLOBS = ("breakglass-*",)  # what the demo spec protects by name
PROTECTED_TAG = ("iamc:protected", "true")
INACTIVE_DAYS = 90
# A documentation key id every scanner must ignore (AWS's own example key).
FALSE_POSITIVE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
# …and its example secret (published by AWS, not a credential).
FALSE_POSITIVE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105
# Users whose access keys are seeded into workload configuration and the sample repository.
WORKLOAD_KINDS = ("workload", "workload-two-keys", "workload-policies")
# Marks a samples directory's .git as ours, so a re-seed may replace it (never anyone else's).
SAMPLES_GIT_MARKER = "iamc-sandbox-samples"

# The kinds of IAM user each member account cycles through, in this order. The order puts the
# special kinds early so that the first account holds every one of them whenever M >= 10.
KIND_CYCLE: tuple[str, ...] = (
    "breakglass",
    "console-mfa",
    "console-no-mfa",
    "workload",
    "workload-two-keys",
    "stale",
    "no-credentials",
    "protected-tag",
    "ssh-key",
    "signing-cert",
    "group-member",
    "workload-policies",
)
HUMAN_KINDS = frozenset({"console-mfa", "console-no-mfa", "group-member", "stale"})

# Names of non-human users, per kind; a later cycle appends "-2", "-3", ...
_SERVICE_NAMES: dict[str, tuple[str, ...]] = {
    "workload": ("ci-deployer", "metrics-exporter", "backup-agent", "log-shipper"),
    "workload-two-keys": ("terraform-runner", "jenkins", "datadog-integration"),
    "workload-policies": ("etl-loader", "report-generator", "media-transcoder"),
    "no-credentials": ("onboarding-test", "old-app-user", "placeholder-svc"),
    "protected-tag": ("svc-payments-legacy", "svc-mainframe-bridge"),
    "ssh-key": ("sftp-ingest", "git-mirror"),
    "signing-cert": ("soap-signer", "ec2-bundle-signer"),
}

# The people of the company: IAM user "first.last", identity-store user "first.last@example.com".
_PEOPLE: tuple[tuple[str, str], ...] = (
    ("Jane", "Doe"),
    ("John", "Smith"),
    ("Priya", "Patel"),
    ("Li", "Wei"),
    ("Carlos", "Garcia"),
    ("Fatima", "Khan"),
    ("Oliver", "Brown"),
    ("Sofia", "Rossi"),
    ("Ahmed", "Hassan"),
    ("Emma", "Wilson"),
    ("Lucas", "Martin"),
    ("Yuki", "Tanaka"),
    ("Noah", "Johnson"),
    ("Mia", "Schmidt"),
    ("Olga", "Ivanova"),
    ("Kwame", "Mensah"),
)
_MORE_FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gita", "Hugo", "Ines", "Jonas")
_MORE_LAST = ("Novak", "Okafor", "Silva", "Berg", "Moreau", "Haddad", "Kowalski", "Lind")

# An IAM human with no identity-store user: the inventory must report him unmatched.
UNMATCHED_HUMAN = ("Victor", "Stone")
# IAM user "alex.kim" carries no email tag, and two identity-store users share the display
# name "Alex Kim" and the local part "alex.kim": matching him must be reported ambiguous.
AMBIGUOUS_IAM_USER = "alex.kim"
AMBIGUOUS_IDENTITIES = ("alex.kim@example.com", "alex.kim@contractors.example.com")

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
_IDC_GROUPS = ("platform-admins", "developers", "security-auditors", "data-analysts")

_ALLOW_S3_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
    ],
}
_DENY_BILLING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": ["aws-portal:*", "billing:*"], "Resource": "*"}],
}


@dataclass
class SeededUser:
    name: str
    kind: str
    expected_class: str  # protected | unused | human | workload (see expected_class())
    email: str | None = None  # the person's address, for humans
    note: str = ""


@dataclass
class SeededAccount:
    account_id: str
    name: str
    ou: str
    status: str  # ACTIVE | SUSPENDED
    users: list[SeededUser] = field(default_factory=list)

    def counts_by_class(self) -> dict[str, int]:
        return dict(sorted(Counter(u.expected_class for u in self.users).items()))

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(u.kind for u in self.users).items()))


@dataclass
class SeedManifest:
    """What the seeding made, and what an inventory should conclude about each user."""

    seed: int
    management_account_id: str
    organization_id: str
    instance_arn: str
    identity_store_id: str
    accounts: list[SeededAccount] = field(default_factory=list)
    identity_users: list[dict[str, str]] = field(default_factory=list)
    identity_groups: dict[str, list[str]] = field(default_factory=dict)  # group -> user names
    unmatched_humans: list[str] = field(default_factory=list)
    ambiguous_humans: dict[str, list[str]] = field(default_factory=dict)
    sample_key_id: str | None = None  # the access key id planted in the sample code
    sample_key_user: str | None = None
    sample_key_account: str | None = None
    # Every access key planted for the key scan to find (AWS-side and in the samples), with
    # where it must be found: {"key_id", "user", "account_id", "source", "where",
    # "with_secret", "history_only"}; "where" is the start of the scanner's location string.
    planted_keys: list[dict[str, Any]] = field(default_factory=list)
    # Look-alikes in the samples that a scan must not report as keys: {"where", "kind", "why"}.
    decoys: list[dict[str, str]] = field(default_factory=list)

    def counts_by_class(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for account in self.accounts:
            total.update(account.counts_by_class())
        return dict(sorted(total.items()))

    def counts_by_kind(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for account in self.accounts:
            total.update(account.counts_by_kind())
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for account, raw in zip(self.accounts, data["accounts"], strict=True):
            raw["counts_by_class"] = account.counts_by_class()
        data["counts_by_class"] = self.counts_by_class()
        data["counts_by_kind"] = self.counts_by_kind()
        data["inactive_days"] = INACTIVE_DAYS
        data["protected_globs"] = list(PROTECTED_GLOBS)
        return data


def expected_class(
    name: str,
    tags: dict[str, str],
    *,
    has_password: bool,
    has_mfa: bool,
    has_other_credentials: bool,
    last_activity: datetime | None,
    created: datetime,
    now: datetime,
) -> str:
    """The class an inventory must give a user (the rules the inventory implements).

    protected: name matches a protected glob, or tag iamc:protected=true; else unused: no
    credential at all, or none used within 90 days (never used: the creation date counts);
    else human: console password or MFA device; else workload.
    """
    if any(fnmatch.fnmatchcase(name, glob) for glob in PROTECTED_GLOBS):
        return "protected"
    if tags.get(PROTECTED_TAG[0]) == PROTECTED_TAG[1]:
        return "protected"
    if not (has_password or has_mfa or has_other_credentials):
        return "unused"
    activity = last_activity or created
    if now - activity > timedelta(days=INACTIVE_DAYS):
        return "unused"
    if has_password or has_mfa:
        return "human"
    return "workload"


@dataclass
class _Person:
    first: str
    last: str

    @property
    def login(self) -> str:
        return f"{self.first}.{self.last}".lower()

    @property
    def email(self) -> str:
        return f"{self.login}@{EMAIL_DOMAIN}"

    @property
    def display(self) -> str:
        return f"{self.first} {self.last}"


def _people(count: int) -> list[_Person]:
    people = [_Person(f, last) for f, last in _PEOPLE]
    for first in _MORE_FIRST:
        for last in _MORE_LAST:
            if len(people) >= count:
                return people
            people.append(_Person(first, last))
    n = 2
    while len(people) < count:  # very large sandboxes: numbered people
        people.append(_Person("User", f"Number{n:05d}"))
        n += 1
    return people


def seed_organization(
    session: boto3.Session,
    *,
    accounts: int = 6,
    users_per_account: int = 12,
    seed: int = 7,
    empty: bool = False,
    samples_dir: Path | None = None,
    endpoint_url: str | None = None,
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

    Returns:
        The manifest of what was made and the class an inventory should give each user.

    Raises:
        SandboxError: A call failed, or the organization already exists.
    """
    try:
        return _Seeder(session, seed, endpoint_url).run(
            accounts, users_per_account, empty, samples_dir
        )
    except ClientError as err:
        raise SandboxError(f"seeding the sandbox failed: {err}") from err


class _Seeder:
    def __init__(self, session: boto3.Session, seed: int, endpoint_url: str | None):
        self.session = session
        self.seed = seed
        self.endpoint_url = endpoint_url
        self.rng = random.Random(seed)
        # All dates are relative to now, so "recent" stays recent whenever the sandbox starts.
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.region = session.region_name or "us-east-1"
        self._sample_secret: str | None = None
        # (account id, user, active key id) of workload users, in creation order.
        self._workload_keys: list[tuple[str, str, str]] = []
        # Planting draws from its own source so the users' random draws stay as they were.
        self.plant_rng = random.Random(f"{seed}-planted-keys")
        self._member_credentials: dict[str, dict[str, Any]] = {}

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    # -- organization -----------------------------------------------------------------------

    def run(
        self, accounts: int, users_per_account: int, empty: bool, samples_dir: Path | None
    ) -> SeedManifest:
        org = self.client("organizations")
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
        ou_ids = self._create_ous(org, root_id)

        sso = self.client("sso-admin")
        instance = sso.list_instances()["Instances"][0]
        manifest = SeedManifest(
            seed=self.seed,
            management_account_id=management_id,
            organization_id=organization["Id"],
            instance_arn=instance["InstanceArn"],
            identity_store_id=instance["IdentityStoreId"],
        )
        active = min(accounts, 2) if empty else accounts
        plan = [self._account_plan(i) for i in range(active)]
        for name, ou in plan:
            account_id = self._create_account(org, name, root_id, ou_ids[ou])
            manifest.accounts.append(SeededAccount(account_id, f"acme-{name}", ou, "ACTIVE"))
        if not empty and accounts >= 2:
            name, ou = _SUSPENDED_ACCOUNT
            account_id = self._create_account(org, name, root_id, ou_ids[ou])
            # CloseAccount leaves the account SUSPENDED in the organization for 90 days
            # (Organizations API reference, CloseAccount).
            org.close_account(AccountId=account_id)
            manifest.accounts.append(SeededAccount(account_id, f"acme-{name}", ou, "SUSPENDED"))
        if empty:
            return self._finish(manifest, samples_dir)

        humans_per_account = sum(
            1 for i in range(users_per_account) if KIND_CYCLE[i % len(KIND_CYCLE)] in HUMAN_KINDS
        )
        people = _people(max(len(_PEOPLE), humans_per_account + 4))
        self._seed_identity_store(manifest, people)
        first = True
        for account in manifest.accounts:
            if account.status != "ACTIVE":
                continue
            self._seed_account(manifest, account, users_per_account, people, first)
            first = False
        self._plant_aws_keys(manifest)
        if samples_dir is not None and manifest.sample_key_id:
            self._write_samples(manifest, samples_dir)
        return self._finish(manifest, samples_dir)

    def _finish(self, manifest: SeedManifest, samples_dir: Path | None) -> SeedManifest:
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

    def _create_ous(self, org: Any, root_id: str) -> dict[str, str]:
        ids: dict[str, str] = {}
        for path in _OUS:
            parent, _, name = path.rpartition("/")
            parent_id = ids[parent] if parent else root_id
            ids[path] = org.create_organizational_unit(ParentId=parent_id, Name=name)[
                "OrganizationalUnit"
            ]["Id"]
        return ids

    @staticmethod
    def _account_plan(index: int) -> tuple[str, str]:
        name, ou = _ACCOUNT_PLAN[index % len(_ACCOUNT_PLAN)]
        round_ = index // len(_ACCOUNT_PLAN)
        return (f"{name}-{round_ + 1}" if round_ else name), ou

    def _create_account(self, org: Any, name: str, root_id: str, ou_id: str) -> str:
        status = org.create_account(Email=f"aws+{name}@{EMAIL_DOMAIN}", AccountName=f"acme-{name}")[
            "CreateAccountStatus"
        ]
        # moto completes CreateAccount at once; AWS would need DescribeCreateAccountStatus polls.
        account_id = status["AccountId"]
        org.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_id)
        return account_id

    # -- Identity Center --------------------------------------------------------------------

    def _seed_identity_store(self, manifest: SeedManifest, people: list[_Person]) -> None:
        store = self.client("identitystore")
        sid = manifest.identity_store_id
        identities: list[tuple[str, str, str, str]] = [
            (p.email, p.display, p.first, p.last) for p in people
        ]
        identities += [(email, "Alex Kim", "Alex", "Kim") for email in AMBIGUOUS_IDENTITIES]
        user_ids: dict[str, str] = {}
        for user_name, display, given, family in identities:
            # As an IdP (SCIM) sync leaves them: UserName is the email address.
            user_id = store.create_user(
                IdentityStoreId=sid,
                UserName=user_name,
                DisplayName=display,
                Name={"GivenName": given, "FamilyName": family, "Formatted": display},
                Emails=[{"Value": user_name, "Type": "work", "Primary": True}],
            )["UserId"]
            user_ids[user_name] = user_id
            manifest.identity_users.append(
                {"user_name": user_name, "display_name": display, "user_id": user_id}
            )
        names = sorted(user_ids)
        for group in _IDC_GROUPS:
            group_id = store.create_group(
                IdentityStoreId=sid, DisplayName=group, Description=f"IdP group {group}"
            )["GroupId"]
            members = sorted(self.rng.sample(names, k=max(1, len(names) // 3)))
            for member in members:
                store.create_group_membership(
                    IdentityStoreId=sid, GroupId=group_id, MemberId={"UserId": user_ids[member]}
                )
            manifest.identity_groups[group] = members
        manifest.unmatched_humans = [f"{UNMATCHED_HUMAN[0]}.{UNMATCHED_HUMAN[1]}".lower()]
        manifest.ambiguous_humans = {AMBIGUOUS_IAM_USER: list(AMBIGUOUS_IDENTITIES)}

    # -- member accounts --------------------------------------------------------------------

    def _seed_account(
        self,
        manifest: SeedManifest,
        account: SeededAccount,
        count: int,
        people: list[_Person],
        first: bool,
    ) -> None:
        iam = self._member_client(account.account_id, "iam")
        customer_policy_arn = iam.create_policy(
            PolicyName="acme-app-s3-access",
            PolicyDocument=json.dumps(_ALLOW_S3_READ),
            Description="Customer-managed: read the app buckets",
        )["Policy"]["Arn"]
        aws_policy = "arn:aws:iam::aws:policy/{}".format
        iam.create_group(GroupName="developers")
        iam.attach_group_policy(GroupName="developers", PolicyArn=aws_policy("ReadOnlyAccess"))
        iam.put_group_policy(
            GroupName="developers",
            PolicyName="deny-billing",
            PolicyDocument=json.dumps(_DENY_BILLING),
        )
        iam.create_group(GroupName="platform-admins")
        iam.attach_group_policy(
            GroupName="platform-admins", PolicyArn=aws_policy("AdministratorAccess")
        )
        iam.create_group(GroupName="auditors")
        iam.attach_group_policy(GroupName="auditors", PolicyArn=aws_policy("SecurityAudit"))
        iam.attach_group_policy(GroupName="auditors", PolicyArn=customer_policy_arn)

        pool = list(people)
        self.rng.shuffle(pool)
        specials: list[_Person | str] = []
        if first:
            # The unmatched and the ambiguous human live in the first account's first two
            # human slots (console-mfa, console-no-mfa).
            specials = [AMBIGUOUS_IAM_USER, _Person(*UNMATCHED_HUMAN)]
        used_names: Counter[str] = Counter()
        dates: dict[str, dict[str, Any]] = {}
        for index in range(count):
            kind = KIND_CYCLE[index % len(KIND_CYCLE)]
            round_ = index // len(KIND_CYCLE)
            person: _Person | str | None = None
            if kind in HUMAN_KINDS:
                if specials and kind in ("console-mfa", "console-no-mfa"):
                    person = specials.pop(0)
                else:
                    person = pool.pop()
                name = person if isinstance(person, str) else person.login
            elif kind == "breakglass":
                name = "breakglass-admin" if round_ == 0 else f"breakglass-admin-{round_ + 1}"
            else:
                options = _SERVICE_NAMES[kind]
                base = options[(round_ + manifest.accounts.index(account)) % len(options)]
                used_names[base] += 1
                name = base if used_names[base] == 1 else f"{base}-{used_names[base]}"
            user, user_dates = self._create_user(
                iam, account, name, kind, person, customer_policy_arn, manifest
            )
            account.users.append(user)
            dates[name] = user_dates
        self._backdate(account.account_id, dates)

    def _create_user(
        self,
        iam: Any,
        account: SeededAccount,
        name: str,
        kind: str,
        person: _Person | str | None,
        customer_policy_arn: str,
        manifest: SeedManifest,
    ) -> tuple[SeededUser, dict[str, Any]]:
        tags = [{"Key": "team", "Value": self.rng.choice(("platform", "data", "app", "sec"))}]
        email = None
        note = ""
        if isinstance(person, _Person):
            email = person.email
            tags.append({"Key": "email", "Value": email})
            if person.login == manifest.unmatched_humans[0]:
                note = "unmatched: no identity-store user"
        elif isinstance(person, str):
            note = "ambiguous: two identity-store users named Alex Kim, no email tag"
        if kind == "protected-tag":
            tags.append({"Key": PROTECTED_TAG[0], "Value": PROTECTED_TAG[1]})
        iam.create_user(UserName=name, Tags=tags)

        recent = self.now - timedelta(days=self.rng.randint(0, 4), hours=self.rng.randint(1, 20))
        old = self.now - timedelta(days=self.rng.randint(210, 400))
        created = self.now - timedelta(days=self.rng.randint(200, 900))
        plan: dict[str, Any] = {"created": created, "password_last_used": None, "keys": []}
        has_password = has_mfa = has_other = False

        if kind in ("console-mfa", "console-no-mfa", "group-member", "stale", "breakglass"):
            iam.create_login_profile(UserName=name, Password=self._password())
            has_password = True
            plan["password_last_used"] = recent
        if kind in ("console-mfa", "breakglass"):
            serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
                "SerialNumber"
            ]
            iam.enable_mfa_device(
                UserName=name,
                SerialNumber=serial,
                AuthenticationCode1="123456",
                AuthenticationCode2="654321",
            )
            has_mfa = True
        if kind in ("workload", "workload-two-keys", "workload-policies", "protected-tag", "stale"):
            if kind == "workload-two-keys":
                # The rotated-out key: kept, inactive, last used long ago.
                old_key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
                iam.update_access_key(UserName=name, AccessKeyId=old_key, Status="Inactive")
                plan["keys"].append((old_key, old))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            plan["keys"].append((key["AccessKeyId"], recent))
            has_other = True
            if kind in WORKLOAD_KINDS:
                self._workload_keys.append((account.account_id, name, key["AccessKeyId"]))
            if kind == "workload" and manifest.sample_key_id is None:
                manifest.sample_key_id = key["AccessKeyId"]
                manifest.sample_key_user = name
                manifest.sample_key_account = account.account_id
                self._sample_secret = key["SecretAccessKey"]
        if kind == "breakglass":
            iam.attach_user_policy(
                UserName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
            )
            plan["password_last_used"] = None  # break-glass: never used
        elif kind == "console-mfa":
            iam.add_user_to_group(UserName=name, GroupName="platform-admins")
        elif kind == "console-no-mfa":
            iam.attach_user_policy(
                UserName=name, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess"
            )
        elif kind == "group-member":
            iam.add_user_to_group(UserName=name, GroupName="developers")
            iam.add_user_to_group(UserName=name, GroupName="auditors")
        elif kind == "workload":
            iam.put_user_policy(
                UserName=name,
                PolicyName="s3-read",
                PolicyDocument=json.dumps(_ALLOW_S3_READ),
            )
        elif kind == "workload-policies":
            iam.put_user_policy(
                UserName=name, PolicyName="deny-billing", PolicyDocument=json.dumps(_DENY_BILLING)
            )
            iam.attach_user_policy(
                UserName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
            )
            iam.attach_user_policy(UserName=name, PolicyArn=customer_policy_arn)
        elif kind == "stale":
            # Left the company long ago: created, last signed in and last used a key > 200 days.
            iam.add_user_to_group(UserName=name, GroupName="developers")
            plan["created"] = self.now - timedelta(days=self.rng.randint(400, 800))
            plan["password_last_used"] = old
            plan["keys"] = [(key_id, old) for key_id, _ in plan["keys"]]
        elif kind == "no-credentials":
            plan["created"] = self.now - timedelta(days=self.rng.randint(100, 500))
        elif kind == "ssh-key":
            iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=self._ssh_key(name))
            has_other = True
            # No password or access key: the creation date is its last activity, so recent.
            plan["created"] = self.now - timedelta(days=self.rng.randint(10, 60))
        elif kind == "signing-cert":
            iam.upload_signing_certificate(UserName=name, CertificateBody=_signing_certificate())
            has_other = True
            plan["created"] = self.now - timedelta(days=self.rng.randint(10, 60))

        key_uses = [used for _, used in plan["keys"]]
        last = max([d for d in [plan["password_last_used"], *key_uses] if d], default=None)
        cls = expected_class(
            name,
            {t["Key"]: t["Value"] for t in tags},
            has_password=has_password,
            has_mfa=has_mfa,
            has_other_credentials=has_other,
            last_activity=last,
            created=plan["created"],
            now=self.now,
        )
        return SeededUser(name, kind, cls, email, note), plan

    def _password(self) -> str:
        alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        return "".join(self.rng.choice(alphabet) for _ in range(20)) + "!9a"

    def _ssh_key(self, name: str) -> str:
        # ssh-ed25519 wire format: string "ssh-ed25519", string <32-byte key>.
        key_type = b"ssh-ed25519"
        raw = bytes(self.rng.getrandbits(8) for _ in range(32))
        blob = len(key_type).to_bytes(4, "big") + key_type + len(raw).to_bytes(4, "big") + raw
        return f"ssh-ed25519 {base64.b64encode(blob).decode()} {name}@build-host"

    def _backdate(self, account_id: str, dates: dict[str, dict[str, Any]]) -> None:
        """Write creation and last-used dates into moto; the API cannot set them (see module)."""
        from moto.iam.models import AccessKeyLastUsed, iam_backends
        from moto.utilities.utils import get_partition

        backend = iam_backends[account_id][get_partition(self.region)]
        for name, plan in dates.items():
            user = backend.users.get(name)
            if user is None:
                raise SandboxError(
                    f"user {name} is not in this process's moto: seed from the sandbox's process"
                )
            # moto keeps naive UTC datetimes (moto.core.utils.utcnow).
            user.create_date = _naive(plan["created"])
            if plan["password_last_used"] is not None:
                user.password_last_used = _naive(plan["password_last_used"])
            used_by_key = dict(plan["keys"])
            for key in user.access_keys:
                key.create_date = _naive(plan["created"] + timedelta(days=1))
                used = used_by_key.get(key.access_key_id)
                if used is not None:
                    key.last_used = AccessKeyLastUsed(
                        timestamp=_naive(used), service="s3", region=self.region
                    )
            for device in user.mfa_devices.values():
                device.enable_date = _naive(plan["created"] + timedelta(days=1))

    # -- keys written down in workload configuration ----------------------------------------

    def _fake_secret(self) -> str:
        """40 secret-access-key characters that are nobody's secret (planted next to real ids)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(self.plant_rng.choice(alphabet) for _ in range(40))

    def _workload_key(self, index: int, account_id: str) -> tuple[str, str, str]:
        """The index-th workload key of an account (of any account if it has none)."""
        keys = [k for k in self._workload_keys if k[0] == account_id] or self._workload_keys
        return keys[index % len(keys)]

    def _plant(
        self,
        manifest: SeedManifest,
        key: tuple[str, str, str],
        source: str,
        where: str,
        *,
        with_secret: bool = True,
        history_only: bool = False,
    ) -> None:
        manifest.planted_keys.append(
            {
                "key_id": key[2],
                "user": key[1],
                "account_id": key[0],
                "source": source,
                "where": where,
                "with_secret": with_secret,
                "history_only": history_only,
            }
        )

    def _member_client(self, account_id: str, service: str) -> Any:
        """A member-account client made from the management session: it reuses that session's
        loaded service models (a fresh Session re-reads EC2's large model, ~0.5 s)."""
        if account_id not in self._member_credentials:
            self._member_credentials[account_id] = self.client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE}",
                RoleSessionName="iamc-sandbox-seed",
            )["Credentials"]
        credentials = self._member_credentials[account_id]
        return self.session.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def _workload_role(self, account_id: str) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["lambda.amazonaws.com", "codebuild.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        return self._member_client(account_id, "iam").create_role(
            RoleName="acme-workload-runner", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]

    def _plant_aws_keys(self, manifest: SeedManifest) -> None:
        """Workload users' key ids (with fake secrets) where teams paste them: Lambda, SSM, EC2
        launch templates, CodeBuild; spread over the first two active accounts."""
        active = [a.account_id for a in manifest.accounts if a.status == "ACTIVE"]
        if not self._workload_keys or not active:
            return
        warning = "SANDBOX ONLY: planted for the key scan; the secret is fake"
        first, second = active[0], active[1 % len(active)]
        where = f"{first} / {self.region} /"
        role_arn = self._workload_role(first)

        key = self._workload_key(1, first)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as bundle:
            bundle.writestr("handler.py", "def handler(event, context):\n    return {}\n")
        self._member_client(first, "lambda").create_function(
            FunctionName="acme-report-uploader",
            Runtime="python3.12",
            Role=role_arn,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
            Description=warning,
            Environment={
                "Variables": {
                    "AWS_ACCESS_KEY_ID": key[2],
                    "AWS_SECRET_ACCESS_KEY": self._fake_secret(),
                    "REPORT_BUCKET": "acme-reports",
                }
            },
        )
        self._plant(
            manifest,
            key,
            "lambda",
            f"{where} Lambda function acme-report-uploader (env AWS_ACCESS_KEY_ID)",
        )

        key = self._workload_key(2, first)
        ssm = self._member_client(first, "ssm")
        for name, value in (("aws_access_key_id", key[2]), ("region", self.region)):
            ssm.put_parameter(
                Name=f"/acme/exporter/{name}", Value=value, Type="String", Description=warning
            )
        self._plant(
            manifest,
            key,
            "ssm",
            f"{where} SSM parameter /acme/exporter/aws_access_key_id",
            with_secret=False,
        )

        where = f"{second} / {self.region} /"
        role_arn = role_arn if second == first else self._workload_role(second)
        key = self._workload_key(0, second)
        user_data = (
            "#!/bin/bash\n"
            f"# {warning}\n"
            "cat > /etc/acme/aws.env <<'EOF'\n"
            f"AWS_ACCESS_KEY_ID={key[2]}\n"
            f"AWS_SECRET_ACCESS_KEY={self._fake_secret()}\n"
            "EOF\n"
        )
        self._member_client(second, "ec2").create_launch_template(
            LaunchTemplateName="acme-batch-worker",
            LaunchTemplateData={
                "InstanceType": "t3.micro",
                "UserData": base64.b64encode(user_data.encode()).decode(),
            },
        )
        self._plant(
            manifest,
            key,
            "ec2-launch-template",
            f"{where} EC2 launch template acme-batch-worker version 1 (user data line 4)",
        )

        key = self._workload_key(1, second)
        self._member_client(second, "codebuild").create_project(
            name="acme-nightly-build",
            description=warning,
            source={"type": "S3", "location": "acme-build-sources/app.zip"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": key[2], "type": "PLAINTEXT"},
                    {
                        "name": "AWS_SECRET_ACCESS_KEY",
                        "value": self._fake_secret(),
                        "type": "PLAINTEXT",
                    },
                ],
            },
            serviceRole=role_arn,
        )
        self._plant(
            manifest,
            key,
            "codebuild",
            f"{where} CodeBuild project acme-nightly-build (env AWS_ACCESS_KEY_ID)",
        )

    # -- samples ----------------------------------------------------------------------------

    def _write_samples(self, manifest: SeedManifest, samples_dir: Path) -> None:
        """Sample code with a hard-coded key, for the key scanner to find (on purpose)."""
        samples_dir.mkdir(parents=True, exist_ok=True)
        key_id = manifest.sample_key_id
        secret = self._sample_secret
        warning = (
            "SANDBOX ONLY: a deliberately planted, fake moto credential of IAM user "
            f"{manifest.sample_key_user} in sandbox account {manifest.sample_key_account}."
        )
        (samples_dir / "upload_reports.py").write_text(
            f'"""Uploads nightly reports. {warning}"""\n\n'
            "import boto3\n\n"
            f'AWS_ACCESS_KEY_ID = "{key_id}"\n'
            f'AWS_SECRET_ACCESS_KEY = "{secret}"  # planted sandbox secret, not real\n'
            "# From the AWS docs, a known false positive:\n"
            f'EXAMPLE_KEY_ID = "{FALSE_POSITIVE_KEY_ID}"\n\n'
            "s3 = boto3.client(\n"
            '    "s3", aws_access_key_id=AWS_ACCESS_KEY_ID, '
            "aws_secret_access_key=AWS_SECRET_ACCESS_KEY\n"
            ")\n"
        )
        (samples_dir / ".env").write_text(
            f"# {warning}\nAWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
            "AWS_DEFAULT_REGION=us-east-1\n"
        )
        (samples_dir / "main.tf").write_text(
            f"# {warning}\n"
            'provider "aws" {\n'
            '  region     = "us-east-1"\n'
            f'  access_key = "{key_id}"\n'
            f'  secret_key = "{secret}"\n'
            "}\n\n"
            "# Documentation example, not a real key:\n"
            f'# access_key = "{FALSE_POSITIVE_KEY_ID}"\n'
        )
        (samples_dir / "README.txt").write_text(
            f"{warning}\nThe key ids in these files are meant to be found by `iamc` key scans; "
            f"{FALSE_POSITIVE_KEY_ID} is AWS's documentation example and must be ignored.\n"
        )
        sample = (manifest.sample_key_account or "", manifest.sample_key_user or "", key_id or "")
        for name in ("upload_reports.py", ".env", "main.tf"):
            self._plant(
                manifest,
                sample,
                "working-tree",
                _where(samples_dir, samples_dir / name, key_id or ""),
            )
        self._sample_decoys(manifest, samples_dir)
        self._sample_bundle(manifest, samples_dir, warning)
        self._sample_repository(manifest, samples_dir, warning)

    def _sample_decoys(self, manifest: SeedManifest, samples_dir: Path) -> None:
        """Look-alikes a scanner must not report: documentation examples, placeholders, a key
        id inside a longer word, a git SHA where a secret would be."""
        tail = "".join(self.plant_rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        sha = "".join(self.plant_rng.choice("0123456789abcdef") for _ in range(40))
        docs = samples_dir / "docs"
        docs.mkdir(exist_ok=True)
        path = docs / "aws-setup.md"
        path.write_text(
            "# Setting up AWS credentials\n\n"
            "Never commit a key. The AWS documentation's example profile looks like this:\n\n"
            "    [default]\n"
            f"    aws_access_key_id = {FALSE_POSITIVE_KEY_ID}\n"
            f"    aws_secret_access_key = {FALSE_POSITIVE_SECRET}\n\n"
            "Templates use a placeholder: `AKIAXXXXXXXXXXXXXXXX` or `<AWS_ACCESS_KEY_ID>`.\n"
            f"A build tag is not a key: BUILDAKIA{tail}X\n"
            f'secret_commit = "{sha}"  # the release commit, not a secret\n'
        )
        for value, kind, why in (
            (FALSE_POSITIVE_KEY_ID, "key-id", "aws-documentation-example"),
            (FALSE_POSITIVE_SECRET, "secret", "aws-documentation-example"),
            ("AKIAXXXXXXXXXXXXXXXX", "key-id", "low-entropy"),
            (f"AKIA{tail}", "key-id", "inside-a-longer-word"),
            (sha, "secret", "40-hex-git-sha"),
        ):
            manifest.decoys.append(
                {"where": _where(samples_dir, path, value), "kind": kind, "why": why}
            )

    def _sample_bundle(self, manifest: SeedManifest, samples_dir: Path, warning: str) -> None:
        """A deploy bundle (zip) with a key in a properties file."""
        key = self._workload_key(3, manifest.sample_key_account or "")
        member = "config/credentials.properties"
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
            # A fixed date keeps the zip's bytes, and so the seed, deterministic.
            info = zipfile.ZipInfo(member, date_time=(2024, 1, 2, 3, 4, 5))
            archive.writestr(
                info,
                f"# {warning}\naws.accessKeyId={key[2]}\naws.secretKey={self._fake_secret()}\n",
            )
            archive.writestr(zipfile.ZipInfo("app.js", (2024, 1, 2, 3, 4, 5)), "main();\n")
        (samples_dir / "build").mkdir(exist_ok=True)
        (samples_dir / "build" / "deploy-bundle.zip").write_bytes(bundle.getvalue())
        self._plant(manifest, key, "archive", f"build/deploy-bundle.zip!{member}:2")

    def _sample_repository(self, manifest: SeedManifest, samples_dir: Path, warning: str) -> None:
        """Make the samples a git repository whose history holds a key removed since, with the
        ``.env`` git-ignored (a scan must read it anyway)."""
        git_dir = samples_dir / ".git"
        if git_dir.exists():
            if not (git_dir / SAMPLES_GIT_MARKER).exists():
                log.warning("%s is not the sandbox's repository: no sample history", git_dir)
                return
            shutil.rmtree(git_dir)
        key = self._workload_key(2, manifest.accounts[-1].account_id)
        settings = samples_dir / "config" / "settings.py"
        settings.parent.mkdir(exist_ok=True)
        (samples_dir / ".gitignore").write_text(".env\nseed-manifest.json\n")
        settings.write_text(
            f'"""Exporter settings. {warning}."""\n\n'
            f'AWS_ACCESS_KEY_ID = "{key[2]}"\n'
            f'AWS_SECRET_ACCESS_KEY = "{self._fake_secret()}"\n'
        )
        where = _where(samples_dir, settings, key[2])
        try:
            self._git(samples_dir, "init", "--quiet", "--initial-branch=main")
            (git_dir / SAMPLES_GIT_MARKER).write_text("written by iamc sandbox seeding\n")
            self._git(samples_dir, "add", "--all")
            self._git(samples_dir, "commit", "--quiet", "-m", "Add the report exporter", day=1)
            settings.write_text(
                '"""Exporter settings: credentials come from the environment (role)."""\n\n'
                "import os\n\n"
                'AWS_REGION = os.environ.get("AWS_REGION", "us-east-1")\n'
            )
            self._git(samples_dir, "commit", "--quiet", "--all", "-m", "Drop the key", day=2)
        except (OSError, subprocess.CalledProcessError) as err:
            log.warning("no sample git history (git failed: %s)", err)
            return
        self._plant(manifest, key, "git-history", where, history_only=True)

    def _git(self, cwd: Path, *args: str, day: int = 0) -> None:
        # Fixed identity and dates, no user or system config: the same seed, the same commits.
        date = f"2024-01-{day + 1:02d}T09:00:00+00:00"
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "ACME Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "ACME Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": date,
        }
        subprocess.run(  # noqa: S603 - git with fixed arguments
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )


def _where(root: Path, path: Path, needle: str) -> str:
    """``relative/path:line`` of the first line of a written sample that holds ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return f"{path.relative_to(root).as_posix()}:{number}"
    raise SandboxError(f"{needle!r} is not in {path}")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


@lru_cache(maxsize=1)
def _signing_certificate() -> str:
    """A self-signed X.509 certificate (moto parses the PEM), made once per process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(0x1A2B3C4D5E6F, ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iamc-sandbox-signer")])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1001)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
